package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/gantry-dev/gantry/reconcile/gitsource"
	"github.com/gantry-dev/gantry/spec"
)

// sourceFlags are the flags every command that reads specs takes.
type sourceFlags struct {
	ref  string
	vars []string
}

// isGitURL reports whether arg names a remote repository rather than a
// directory.
func isGitURL(arg string) bool {
	for _, p := range []string{"https://", "http://", "ssh://", "git@", "file://"} {
		if strings.HasPrefix(arg, p) {
			return true
		}
	}
	return strings.HasSuffix(arg, ".git") && !isDir(arg)
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}

// load reads the specs from a directory or a Git URL, prints diagnostics
// to stderr, and fails when there are errors. The cleanup removes any
// checkout it made.
func (a *app) load(ctx context.Context, arg string, f sourceFlags) (*spec.Config, func(), error) {
	cleanup := func() {}
	root, revision := arg, ""
	if isGitURL(arg) {
		dir, err := os.MkdirTemp("", "gantry-src-")
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		rev, err := gitsource.Checkout(ctx, arg, f.ref, dir)
		if err != nil {
			cleanup()
			return nil, func() {}, err
		}
		root, revision = dir, rev
	} else if f.ref != "" {
		return nil, cleanup, fmt.Errorf("--ref applies only to a Git URL; %s is a directory", arg)
	}
	uncommitted := false
	if root == arg {
		if rev, err := gitsource.Head(ctx, arg); err == nil {
			revision = rev // a local working copy: report its HEAD
			uncommitted, _ = gitsource.Uncommitted(ctx, arg)
		}
	}
	vars := map[string]string{}
	for _, kv := range f.vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			cleanup()
			return nil, func() {}, fmt.Errorf("-var %q: want NAME=VALUE", kv)
		}
		vars[k] = v
	}
	cfg, diags := spec.Load(ctx, root, spec.LoadOptions{Vars: vars})
	cfg.Revision, cfg.Uncommitted = revision, uncommitted
	a.printDiags(cfg.Files, diags)
	if diags.HasErrors() {
		cleanup()
		return nil, func() {}, exitError{1}
	}
	return cfg, cleanup, nil
}

func (a *app) printDiags(files map[string]*hcl.File, diags hcl.Diagnostics) {
	if len(diags) == 0 {
		return
	}
	if err := spec.WriteDiagnostics(a.stderr, files, diags, 100, a.errColor); err != nil {
		fmt.Fprintf(a.stderr, "Error: print diagnostics: %s\n", err)
	}
}
