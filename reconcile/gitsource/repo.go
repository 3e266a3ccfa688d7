package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Repo keeps a checkout of a remote repository in a cache directory and
// brings it up to date on every Fetch: clone once, then fetch and reset to
// the ref. Nothing outside the cache directory is written. A Repo is not
// safe for concurrent Fetches; the reconcile loop calls it from one
// goroutine.
type Repo struct {
	URL string
	// Ref is a branch, tag or commit; "" is the remote's default branch.
	Ref string
	// Dir is the cache directory for the checkout.
	Dir string
	// Auth is used for fetches; nil: the URL's credentials, if any (see
	// NewRemote, which also keeps them out of the cache's .git/config).
	Auth transport.AuthMethod
	// OnError, if set, is called for every failed fetch (metrics).
	OnError func(error)
	// TrustedKeys, if set, is an armored OpenPGP public keyring: a
	// revision whose commit is not signed by one of its keys is refused
	// (a *SignatureError) and never checked out.
	TrustedKeys string
}

// SignatureError refuses a revision whose signature is missing or not
// trusted.
type SignatureError struct {
	Revision string
	Reason   string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("revision %s refused: %s", e.Revision, e.Reason)
}

// Fetch updates the checkout and returns its directory and commit.
func (r *Repo) Fetch(ctx context.Context) (dir, revision string, err error) {
	defer func() {
		if err != nil && r.OnError != nil {
			r.OnError(err)
		}
	}()
	rem, err := NewRemote(r.URL, r.Auth)
	if err != nil {
		return "", "", err
	}
	repo, err := git.PlainOpen(r.Dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(filepath.Dir(r.Dir), 0o755); err != nil {
			return "", "", err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(r.Dir), ".clone-*")
		if err != nil {
			return "", "", err
		}
		defer os.RemoveAll(tmp)
		if _, err := git.PlainCloneContext(ctx, tmp, false, &git.CloneOptions{URL: rem.URL, Auth: rem.Auth, Tags: git.AllTags}); err != nil {
			return "", "", fmt.Errorf("clone %s: %w", Redact(r.URL), err)
		}
		// A clone that dies half-way must not look like a cache.
		if err := os.Rename(tmp, r.Dir); err != nil {
			return "", "", err
		}
		if repo, err = git.PlainOpen(r.Dir); err != nil {
			return "", "", err
		}
	} else if err != nil {
		return "", "", fmt.Errorf("open cache %s: %w", r.Dir, err)
	} else {
		if err := scrubOrigin(repo, rem.URL); err != nil {
			return "", "", fmt.Errorf("cache %s: %w", r.Dir, err)
		}
		err := repo.FetchContext(ctx, &git.FetchOptions{
			Auth: rem.Auth, Tags: git.AllTags, Force: true, Prune: true,
			RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return "", "", fmt.Errorf("fetch %s: %w", Redact(r.URL), err)
		}
	}
	hash, err := r.target(repo)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", Redact(r.URL), err)
	}
	if r.TrustedKeys != "" {
		if err := verify(repo, hash, r.TrustedKeys); err != nil {
			return "", "", err
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", "", err
	}
	if err := wt.Reset(&git.ResetOptions{Commit: hash, Mode: git.HardReset}); err != nil {
		return "", "", fmt.Errorf("check out %s: %w", hash, err)
	}
	return r.Dir, hash.String(), nil
}

// target is the commit Ref names now: for the default branch, the remote
// HEAD's branch as last fetched.
func (r *Repo) target(repo *git.Repository) (plumbing.Hash, error) {
	if r.Ref != "" {
		return resolve(repo, r.Ref)
	}
	if ref, err := repo.Reference(plumbing.NewRemoteHEADReferenceName("origin"), true); err == nil {
		return ref.Hash(), nil
	}
	head, err := repo.Head()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	// The clone's local branch tracks the default branch; follow its
	// remote counterpart so that fetches move it.
	if head.Name().IsBranch() {
		if ref, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", head.Name().Short()), true); err == nil {
			return ref.Hash(), nil
		}
	}
	return head.Hash(), nil
}

// RemoteURL is the repository's URL without credentials: what a build
// Job clones, with credentials of its own.
func (r *Repo) RemoteURL() string {
	rem, err := NewRemote(r.URL, nil)
	if err != nil {
		return Redact(r.URL)
	}
	return rem.URL
}

// verify checks the commit's OpenPGP signature against the trusted keys.
func verify(repo *git.Repository, hash plumbing.Hash, keys string) error {
	c, err := repo.CommitObject(hash)
	if err != nil {
		return err
	}
	if c.PGPSignature == "" {
		return &SignatureError{Revision: hash.String(), Reason: "the commit is not signed, and only signed revisions are applied"}
	}
	if _, err := c.Verify(keys); err != nil {
		return &SignatureError{Revision: hash.String(), Reason: "its signature is not from a trusted key: " + err.Error()}
	}
	return nil
}
