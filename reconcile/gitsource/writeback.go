package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/gantry-dev/gantry/spec"
)

// Write-back modes (the write_back block's mode).
const (
	ModePush   = "push"   // commit to the tracked branch
	ModeBranch = "branch" // push gantry/adjust-<release> for a pull request
)

// DefaultBranchPrefix names the branches of ModeBranch.
const DefaultBranchPrefix = "gantry/adjust-"

// WriteBack turns decisions into commits in a repository of specs. It
// keeps its own working clone in Dir (not the reconcile cache, which the
// engine resets on every fetch) and pushes over the same transport.
//
// A push can race with a person's. Gantry never forces over the tracked
// branch: when the push is not a fast-forward it fetches, resets to the
// new head, decides again on it (the person may have changed the same
// release, or made the decision moot), re-applies the edits and pushes
// again, up to Attempts times with jittered, growing waits. So a human
// commit is never overwritten or lost, and when the decision equals what
// Git already says nothing is committed.
type WriteBack struct {
	URL string
	// Branch is the tracked branch ("" : the remote's default branch).
	Branch string
	Dir    string
	// Auth, if set, wins over credentials in URL; neither is ever
	// stored in the clone (NewRemote).
	Auth transport.AuthMethod

	Mode string // ModePush (default) or ModeBranch
	// BranchPrefix names ModeBranch's branches; default DefaultBranchPrefix.
	BranchPrefix string
	AuthorName   string
	AuthorEmail  string
	// SignKey, if set, signs every commit (LoadSigningKey).
	SignKey *openpgp.Entity

	// Attempts bounds the push retries; default 5. Backoff is the first
	// wait, doubled each time up to 5s, ±50% jitter; default 200ms.
	Attempts int
	Backoff  time.Duration
	// BeforePush, if set, runs just before each push (tests use it to
	// race a human commit in).
	BeforePush func(attempt int)
	Log        *slog.Logger
}

// Change is one decision to commit.
type Change struct {
	Release string
	Kind    string // "scale", "rollback", "promote" or "abort"
	// Replicas is the new count (scale).
	Replicas int
	// Restore is the revision whose model, runtime and quantize blocks a
	// rollback or an abort restores.
	Restore string
	// Version is the rollout's canary version (promote, abort), Step the
	// step a promote sets or the step an abort stopped at.
	Version string
	Step    int
	// Wave is the wave a promote sets, in a fleet with waves (0: none).
	Wave int
	// Message is the commit message without trailers.
	Message string
}

// Decider decides on the specs checked out in dir at revision. It is
// called again after a lost push race, on the new head.
type Decider func(ctx context.Context, dir, revision string, hist *History) ([]Change, error)

// Pushed is one commit Gantry made.
type Pushed struct {
	Release, Kind string
	Commit        string
	Branch        string
	// CompareURL is the page to open a pull request from (ModeBranch on
	// GitHub or GitLab).
	CompareURL string
}

// Outcome says what Write did.
type Outcome struct {
	// Base is the revision the final decision was based on.
	Base    string
	Commits []Pushed
	// Diff is the unified diff of all edits.
	Diff string
	// Attempts counts the decide-and-push rounds (1 without a race).
	Attempts int
	// Skipped lists changes that were already in Git.
	Skipped []string
}

// maxBackoff caps the wait between two rounds of Write.
const maxBackoff = 5 * time.Second

// Write decides on the tracked branch's head, edits, commits and pushes.
// With dryRun nothing is committed to the remote: the edits are made in
// the working clone, diffed and reset.
func (w *WriteBack) Write(ctx context.Context, decide Decider, dryRun bool) (Outcome, error) {
	attempts := w.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff := w.Backoff
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	rem, err := NewRemote(w.URL, w.Auth)
	if err != nil {
		return Outcome{}, err
	}
	var out Outcome
	for attempt := 1; ; attempt++ {
		out = Outcome{Attempts: attempt}
		err := w.once(ctx, rem, decide, dryRun, attempt, &out)
		var lost *raceLost
		if err == nil || !errors.As(err, &lost) {
			return out, err
		}
		if attempt >= attempts {
			return out, fmt.Errorf("write back to %s: gave up after %d attempts: %w", Redact(w.URL), attempt, err)
		}
		w.log().Info("push lost a race; deciding again on the new head", "attempt", attempt, "cause", lost.cause.String(), "err", err)
		// Doubling, up to maxBackoff: many writers racing for one branch
		// (Attempts raised for them) must not end up waiting minutes, nor
		// overflow the shift.
		d := min(backoff<<min(attempt-1, 16), max(maxBackoff, backoff))
		d = d/2 + time.Duration(rand.Int64N(int64(d)+1))
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(d):
		}
	}
}

func (w *WriteBack) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.Default()
}

func (w *WriteBack) once(ctx context.Context, rem Remote, decide Decider, dryRun bool, attempt int, out *Outcome) error {
	repo, branch, base, err := w.sync(ctx, rem)
	if err != nil {
		return err
	}
	out.Base = base.Hash.String()
	hist := &History{repo: repo, head: base}
	changes, err := decide(ctx, w.Dir, out.Base, hist)
	if err != nil || len(changes) == 0 {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	var diffs strings.Builder
	type proposal struct {
		ch     Change
		commit plumbing.Hash
	}
	var made []proposal
	for _, ch := range changes {
		if w.Mode == ModeBranch {
			// Each release's proposal stands alone on the tracked head.
			if err := wt.Reset(&git.ResetOptions{Commit: base.Hash, Mode: git.HardReset}); err != nil {
				return err
			}
		}
		parent, err := repo.Head()
		if err != nil {
			return err
		}
		changed, err := w.apply(repo, ch)
		if err != nil {
			return fmt.Errorf("release %s: %w", ch.Release, err)
		}
		if changed == nil {
			out.Skipped = append(out.Skipped, ch.Release)
			continue
		}
		if _, err := wt.Add(changed.path); err != nil {
			return err
		}
		opts := &git.CommitOptions{Author: w.signature(), Committer: w.signature(), SignKey: w.SignKey}
		if w.Mode == ModeBranch {
			prev, skip, err := w.proposalTip(repo, ch.Release)
			if err != nil {
				return err
			}
			if skip != "" {
				out.Skipped = append(out.Skipped, ch.Release+": "+skip)
				continue
			}
			if !prev.IsZero() {
				// A merge of Gantry's previous proposal and the tracked
				// head: the branch moves forward (no force push), and its
				// merge base with the tracked branch is the head, so the
				// pull request shows only this edit.
				opts.Parents = []plumbing.Hash{prev, base.Hash}
			}
		}
		h, err := wt.Commit(w.message(ch, out.Base), opts)
		if errors.Is(err, git.ErrEmptyCommit) && len(opts.Parents) > 0 {
			out.Skipped = append(out.Skipped, ch.Release) // the proposal already says this
			continue
		}
		if err != nil {
			return fmt.Errorf("release %s: commit: %w", ch.Release, err)
		}
		if len(opts.Parents) > 0 {
			if same, err := sameTree(repo, opts.Parents[0], h); err != nil || same {
				out.Skipped = append(out.Skipped, ch.Release)
				continue // the proposal already says this
			}
		}
		if d, err := patch(repo, parent.Hash(), h); err == nil {
			diffs.WriteString(d)
		}
		made = append(made, proposal{ch, h})
	}
	out.Diff = diffs.String()
	if dryRun || len(made) == 0 {
		return wt.Reset(&git.ResetOptions{Commit: base.Hash, Mode: git.HardReset})
	}
	if w.BeforePush != nil {
		w.BeforePush(attempt)
	}
	if w.Mode != ModeBranch {
		ref := plumbing.NewBranchReferenceName(branch)
		err := repo.PushContext(ctx, &git.PushOptions{
			Auth:     rem.Auth,
			RefSpecs: []config.RefSpec{config.RefSpec(ref + ":" + ref)},
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return pushError(fmt.Errorf("push to %s %s: %w", Redact(w.URL), branch, err))
		}
		for _, p := range made {
			out.Commits = append(out.Commits, Pushed{Release: p.ch.Release, Kind: p.ch.Kind, Commit: p.commit.String(), Branch: branch})
		}
		return nil
	}
	for _, p := range made {
		name := w.prefix() + p.ch.Release
		pushed, err := w.pushProposal(ctx, rem, repo, name, p.commit)
		if err != nil {
			return err
		}
		if pushed {
			out.Commits = append(out.Commits, Pushed{Release: p.ch.Release, Kind: p.ch.Kind, Commit: p.commit.String(),
				Branch: name, CompareURL: CompareURL(rem.URL, branch, name)})
		} else {
			out.Skipped = append(out.Skipped, p.ch.Release)
		}
	}
	return wt.Reset(&git.ResetOptions{Commit: base.Hash, Mode: git.HardReset})
}

func (w *WriteBack) prefix() string {
	if w.BranchPrefix != "" {
		return w.BranchPrefix
	}
	return DefaultBranchPrefix
}

// proposalTip returns the tip of Gantry's proposal branch for release as
// last fetched (zero when there is none). A branch whose tip is not
// Gantry's commit has been taken over by a person: skip says so, and
// Gantry leaves it alone.
func (w *WriteBack) proposalTip(repo *git.Repository, release string) (tip plumbing.Hash, skip string, err error) {
	name := w.prefix() + release
	ref, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", name), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, "", nil
	}
	if err != nil {
		return plumbing.ZeroHash, "", err
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return plumbing.ZeroHash, "", err
	}
	if Trailer(c.Message, TrailerAdjustment) == "" {
		return plumbing.ZeroHash, fmt.Sprintf("%s has commits by others (%s); left alone", name, c.Hash.String()[:12]), nil
	}
	return ref.Hash(), "", nil
}

// pushProposal pushes commit to the branch name: a new branch, or a
// fast-forward of Gantry's previous proposal. Nothing is forced; if the
// branch moved since the fetch, the push is refused and the round retries.
func (w *WriteBack) pushProposal(ctx context.Context, rem Remote, repo *git.Repository, name string, commit plumbing.Hash) (bool, error) {
	ref := plumbing.NewBranchReferenceName(name)
	if err := repo.Storer.SetReference(plumbing.NewHashReference(ref, commit)); err != nil {
		return false, err
	}
	opts := &git.PushOptions{Auth: rem.Auth, RefSpecs: []config.RefSpec{config.RefSpec(ref + ":" + ref)}}
	if err := repo.PushContext(ctx, opts); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return false, pushError(fmt.Errorf("push %s to %s: %w", name, Redact(w.URL), err))
	}
	return true, nil
}

func sameTree(repo *git.Repository, a, b plumbing.Hash) (bool, error) {
	ca, err := repo.CommitObject(a)
	if err != nil {
		return false, err
	}
	cb, err := repo.CommitObject(b)
	if err != nil {
		return false, err
	}
	return ca.TreeHash == cb.TreeHash, nil
}

type edited struct{ path string }

// apply makes ch's edit in the working tree; nil when the file already
// says what ch wants.
func (w *WriteBack) apply(repo *git.Repository, ch Change) (*edited, error) {
	file, err := spec.ReleaseFile(w.Dir, ch.Release)
	if err != nil {
		return nil, err
	}
	cur, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var next []byte
	switch ch.Kind {
	case "scale":
		next, err = spec.SetReplicas(cur, ch.Release, ch.Replicas)
	case "promote":
		if ch.Wave > 0 {
			next, err = spec.SetRolloutWave(cur, ch.Release, ch.Version, ch.Wave, ch.Step)
		} else {
			next, err = spec.SetRolloutPosition(cur, ch.Release, ch.Version, ch.Step)
		}
	case "rollback", "abort":
		next, err = restore(repo, cur, ch.Restore, ch.Release)
	default:
		err = fmt.Errorf("unknown adjustment %q", ch.Kind)
	}
	if err != nil {
		return nil, err
	}
	if bytes.Equal(cur, next) {
		return nil, nil
	}
	info, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, next, info.Mode().Perm()); err != nil {
		return nil, err
	}
	rel, err := spec.RelPath(w.Dir, file)
	if err != nil {
		return nil, err
	}
	return &edited{rel}, nil
}

func (w *WriteBack) message(ch Change, base string) string {
	msg := strings.TrimRight(ch.Message, "\n")
	if msg == "" {
		msg = fmt.Sprintf("%s: %s", ch.Release, ch.Kind)
	}
	out := fmt.Sprintf("%s\n\n%s: %s\n%s: %s\n%s: %s\n", msg,
		TrailerAdjustment, ch.Kind, TrailerRelease, ch.Release, TrailerRevision, base)
	if ch.Kind == "promote" || ch.Kind == "abort" {
		out += fmt.Sprintf("%s: %s\n%s: %d\n", TrailerVersion, ch.Version, TrailerStep, ch.Step)
		if ch.Wave > 0 {
			out += fmt.Sprintf("%s: %d\n", TrailerWave, ch.Wave)
		}
	}
	return out
}

func (w *WriteBack) signature() *object.Signature {
	name, email := w.AuthorName, w.AuthorEmail
	if name == "" {
		name = "Gantry"
	}
	if email == "" {
		email = "gantry@localhost"
	}
	return &object.Signature{Name: name, Email: email, When: time.Now()}
}

// sync brings the working clone to the tracked branch's remote head and
// returns the branch's name and commit.
func (w *WriteBack) sync(ctx context.Context, rem Remote) (*git.Repository, string, *object.Commit, error) {
	repo, err := git.PlainOpen(w.Dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(filepath.Dir(w.Dir), 0o755); err != nil {
			return nil, "", nil, err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(w.Dir), ".writeback-*")
		if err != nil {
			return nil, "", nil, err
		}
		defer os.RemoveAll(tmp)
		if _, err := git.PlainCloneContext(ctx, tmp, false, &git.CloneOptions{URL: rem.URL, Auth: rem.Auth}); err != nil {
			return nil, "", nil, fmt.Errorf("clone %s: %w", Redact(w.URL), err)
		}
		if err := os.Rename(tmp, w.Dir); err != nil {
			return nil, "", nil, err
		}
		if repo, err = git.PlainOpen(w.Dir); err != nil {
			return nil, "", nil, err
		}
	} else if err != nil {
		return nil, "", nil, fmt.Errorf("open %s: %w", w.Dir, err)
	} else if err := scrubOrigin(repo, rem.URL); err != nil {
		return nil, "", nil, fmt.Errorf("write-back clone %s: %w", w.Dir, err)
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{
		Auth: rem.Auth, Force: true, Prune: true,
		RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, "", nil, fmt.Errorf("fetch %s: %w", Redact(w.URL), err)
	}
	branch := w.Branch
	if branch == "" {
		if branch, err = defaultBranch(ctx, repo, rem.Auth); err != nil {
			return nil, "", nil, fmt.Errorf("%s: %w", Redact(w.URL), err)
		}
	}
	remote, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: branch %q: %w", Redact(w.URL), branch, err)
	}
	local := plumbing.NewBranchReferenceName(branch)
	if err := repo.Storer.SetReference(plumbing.NewHashReference(local, remote.Hash())); err != nil {
		return nil, "", nil, err
	}
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, local)); err != nil {
		return nil, "", nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, "", nil, err
	}
	if err := wt.Reset(&git.ResetOptions{Commit: remote.Hash(), Mode: git.HardReset}); err != nil {
		return nil, "", nil, fmt.Errorf("reset to %s: %w", remote.Hash(), err)
	}
	c, err := repo.CommitObject(remote.Hash())
	if err != nil {
		return nil, "", nil, err
	}
	return repo, branch, c, nil
}

// defaultBranch asks the remote which branch its HEAD points at.
func defaultBranch(ctx context.Context, repo *git.Repository, auth transport.AuthMethod) (string, error) {
	rem, err := repo.Remote("origin")
	if err != nil {
		return "", err
	}
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return "", fmt.Errorf("list remote refs: %w", err)
	}
	for _, r := range refs {
		if r.Name() == plumbing.HEAD && r.Type() == plumbing.SymbolicReference {
			return r.Target().Short(), nil
		}
	}
	return "", errors.New("the remote does not say which branch its HEAD is; set --ref")
}

// patch is the unified diff from commit a to b.
func patch(repo *git.Repository, a, b plumbing.Hash) (string, error) {
	ca, err := repo.CommitObject(a)
	if err != nil {
		return "", err
	}
	cb, err := repo.CommitObject(b)
	if err != nil {
		return "", err
	}
	p, err := ca.PatchContext(context.Background(), cb)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// CompareURL is the web page comparing branch with base on GitHub or
// GitLab (where a pull or merge request is one click away), or "" for
// other hosts. Credentials in remote never reach the result.
func CompareURL(remote, base, branch string) string {
	host, path := "", ""
	if u, err := url.Parse(remote); err == nil && hasScheme(remote) {
		host, path = u.Hostname(), u.Path
	} else if at := strings.Index(remote, "@"); at >= 0 && strings.Contains(remote[at:], ":") {
		// scp-like: git@github.com:owner/repo.git
		rest := remote[at+1:]
		i := strings.Index(rest, ":")
		host, path = rest[:i], "/"+rest[i+1:]
	}
	path = strings.TrimSuffix(strings.TrimSuffix(path, "/"), ".git")
	if path == "" || path == "/" {
		return ""
	}
	switch {
	case host == "github.com":
		return "https://github.com" + path + "/compare/" + base + "..." + branch + "?expand=1"
	case host == "gitlab.com" || strings.HasPrefix(host, "gitlab."):
		return "https://" + host + path + "/-/compare/" + base + "..." + branch
	}
	return ""
}

// LoadSigningKey reads an armored OpenPGP private key (the first entity
// of the file) to sign commits with. Passphrase-protected keys are
// refused: the daemon has nobody to ask.
func LoadSigningKey(path string) (*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if len(ring) == 0 || ring[0].PrivateKey == nil {
		return nil, fmt.Errorf("signing key %s: no private key in the file", path)
	}
	if ring[0].PrivateKey.Encrypted {
		return nil, fmt.Errorf("signing key %s: the key is protected by a passphrase; export it without one for Gantry", path)
	}
	return ring[0], nil
}
