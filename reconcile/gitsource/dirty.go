package gitsource

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
)

// Uncommitted reports whether the working copy that holds dir has changes
// below dir that HEAD does not: modified, added, deleted or untracked
// (and not ignored) files. A plan made from such a directory is not the
// plan of its revision, and says so. Changes elsewhere in the repository
// (dir may be a subdirectory) and in hidden directories, which the specs
// loader skips too (a .gantry state dir), do not count. An error means dir is not in a
// working copy.
func Uncommitted(ctx context.Context, dir string) (bool, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return false, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	st, err := wt.Status()
	if err != nil {
		return false, fmt.Errorf("%s: status: %w", dir, err)
	}
	root, err := filepath.Abs(wt.Filesystem.Root())
	if err != nil {
		return false, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if a, err := filepath.EvalSymlinks(abs); err == nil {
		abs = a
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return false, err
	}
	prefix := filepath.ToSlash(rel) + "/"
	if rel == "." {
		prefix = ""
	}
	for path, s := range st {
		if !strings.HasPrefix(path, prefix) || inHiddenDir(strings.TrimPrefix(path, prefix)) {
			continue
		}
		if s.Worktree != git.Unmodified || s.Staging != git.Unmodified {
			return true, nil
		}
	}
	return false, nil
}

func inHiddenDir(rel string) bool {
	parts := strings.Split(rel, "/")
	for _, p := range parts[:len(parts)-1] {
		if strings.HasPrefix(p, ".") {
			return true
		}
	}
	return false
}
