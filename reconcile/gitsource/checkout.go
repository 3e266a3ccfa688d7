package gitsource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Checkout clones url into dir (which must be empty) and checks out ref:
// a branch, a tag, or a commit hash; "" means the remote's default branch.
// It returns the commit hash checked out.
func Checkout(ctx context.Context, url, ref, dir string) (string, error) {
	rem, err := NewRemote(url, nil)
	if err != nil {
		return "", err
	}
	opts := &git.CloneOptions{URL: rem.URL, Auth: rem.Auth, Tags: git.AllTags}
	repo, err := git.PlainCloneContext(ctx, dir, false, opts)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", Redact(url), err)
	}
	if ref == "" {
		head, err := repo.Head()
		if err != nil {
			return "", fmt.Errorf("clone %s: read HEAD: %w", Redact(url), err)
		}
		return head.Hash().String(), nil
	}
	hash, err := resolve(repo, ref)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", Redact(url), err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return "", fmt.Errorf("checkout %s: %w", ref, err)
	}
	return hash.String(), nil
}

// hasScheme reports whether raw is a URL with a scheme, as go-git decides
// it: anything else is an scp-like address or a local path.
func hasScheme(raw string) bool {
	i := strings.Index(raw, "://")
	return i > 0 && !strings.Contains(raw[:i], ":")
}

// resolve finds ref as a remote branch, a tag, or a (possibly short) hash.
// A full branch name (refs/heads/NAME) is looked up among the remote
// branches: a clone has a local branch only for the remote's HEAD.
func resolve(repo *git.Repository, ref string) (plumbing.Hash, error) {
	names := []plumbing.ReferenceName{
		plumbing.NewRemoteReferenceName("origin", ref),
		plumbing.NewTagReferenceName(ref),
		plumbing.ReferenceName(ref),
	}
	if branch, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		names = append([]plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", branch)}, names...)
	}
	for _, name := range names {
		if h, err := repo.ResolveRevision(plumbing.Revision(name)); err == nil {
			return *h, nil
		}
	}
	if h, err := repo.ResolveRevision(plumbing.Revision(ref)); err == nil {
		return *h, nil
	}
	return plumbing.ZeroHash, fmt.Errorf("ref %q is not a branch, tag or commit of the repository", ref)
}

// Head returns the HEAD commit of the working copy that contains dir.
func Head(ctx context.Context, dir string) (string, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", err
	}
	head, err := repo.Head()
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return "", fmt.Errorf("%s: no commits yet", dir)
		}
		return "", err
	}
	return head.Hash().String(), nil
}
