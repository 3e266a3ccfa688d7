package main

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/reconcile/gitsource"
)

// watchSpecs calls changed when a file the specs read changes below dir:
// any *.hcl file, or a model path the last reconcile's specs named
// (models). Everything else, a log file written into the tree, the state
// dir, an editor's backup, does not count: a daemon that wakes itself up
// reconciles forever.
func watchSpecs(ctx context.Context, dir, state string, models func() []string, changed func()) error {
	relevant := func(p string) bool {
		if strings.HasSuffix(p, ".hcl") {
			return true
		}
		for _, m := range models() {
			if gitsource.Within(p, m) {
				return true
			}
		}
		return false
	}
	return gitsource.Watch(ctx, dir, 300*time.Millisecond, relevant, []string{filepath.Clean(state)}, changed)
}
