package gitsource

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Checkout clones url into dir (which must be empty) and checks out ref:
// a branch, a tag, or a commit hash; "" means the remote's default branch.
// It returns the commit hash checked out.
func Checkout(ctx context.Context, url, ref, dir string) (string, error) {
	opts := &git.CloneOptions{URL: url, Tags: git.AllTags}
	repo, err := git.PlainCloneContext(ctx, dir, false, opts)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", redactURL(url), err)
	}
	if ref == "" {
		head, err := repo.Head()
		if err != nil {
			return "", fmt.Errorf("clone %s: read HEAD: %w", redactURL(url), err)
		}
		return head.Hash().String(), nil
	}
	hash, err := resolve(repo, ref)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", redactURL(url), err)
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

// resolve finds ref as a remote branch, a tag, or a (possibly short) hash.
func resolve(repo *git.Repository, ref string) (plumbing.Hash, error) {
	for _, name := range []plumbing.ReferenceName{
		plumbing.NewRemoteReferenceName("origin", ref),
		plumbing.NewTagReferenceName(ref),
		plumbing.ReferenceName(ref),
	} {
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
