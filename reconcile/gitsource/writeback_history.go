package gitsource

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gantry-dev/gantry/spec"
)

// Commit trailers Gantry writes on its own commits.
const (
	TrailerAdjustment = "Gantry-Adjustment" // scale, rollback, promote or abort
	TrailerRelease    = "Gantry-Release"
	TrailerRevision   = "Gantry-Revision" // the commit the decision was based on
	// TrailerStep is the step a promote goes to, or an abort stopped at;
	// TrailerVersion the canary version it is about.
	TrailerStep    = "Gantry-Step"
	TrailerVersion = "Gantry-Version"
	// TrailerWave is the wave a promote goes to (or stays in), in a
	// fleet with waves.
	TrailerWave = "Gantry-Wave"
)

// History answers questions about one release's past from the first-parent
// history of a commit: when its replicas last changed (the cooldown's
// clock) and when its rollout blocks last changed (the rollback window's).
// It reads at most MaxCommits commits.
type History struct {
	repo *git.Repository
	head *object.Commit
	// MaxCommits bounds the walk; default 500.
	MaxCommits int

	parts map[string]map[plumbing.Hash]releaseAt // release -> commit -> parts
}

type releaseAt struct {
	parts spec.ReleaseParts
	file  string
	ok    bool
}

// NewHistory reads the history of revision in the repository at dir.
func NewHistory(dir, revision string) (*History, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(revision))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", revision, err)
	}
	return &History{repo: repo, head: c}, nil
}

// RolloutCommit is the last commit that changed a release's model,
// runtime or quantize blocks.
type RolloutCommit struct {
	Revision string
	// Previous is its first parent, where the release had other blocks;
	// "" when the commit created the release.
	Previous string
	Time     time.Time
	// ByRollback: the commit is Gantry's own rollback, or the abort of a
	// rollout (which restores the blocks as a rollback does).
	ByRollback bool
}

// StepCommit is the commit that began a rollout's current step.
type StepCommit struct {
	// Revision is "" when no commit since the time looked back to did.
	Revision string
	Time     time.Time
	// AfterObserved: the commit is newer than the observed revision (it
	// came first on the way back from the head), so what was observed
	// does not show it yet.
	AfterObserved bool
}

// LastScale returns the committer time of the newest commit that changed
// the release's replicas, or zero when none did since since.
func (h *History) LastScale(release string, since time.Time) (time.Time, error) {
	var at time.Time
	err := h.walk(release, since, func(c *object.Commit, cur, parent releaseAt) bool {
		if cur.ok && (!parent.ok || cur.parts.Replicas != parent.parts.Replicas) {
			at = c.Committer.When
			return true
		}
		return false
	})
	return at, err
}

// LastRollout returns the newest commit since since that changed the
// release's rollout blocks, or nil.
func (h *History) LastRollout(release string, since time.Time) (*RolloutCommit, error) {
	var out *RolloutCommit
	err := h.walk(release, since, func(c *object.Commit, cur, parent releaseAt) bool {
		if !cur.ok || (parent.ok && cur.parts.Rollout == parent.parts.Rollout) {
			return false
		}
		adj := Trailer(c.Message, TrailerAdjustment)
		out = &RolloutCommit{Revision: c.Hash.String(), Time: c.Committer.When,
			ByRollback: adj == "rollback" || adj == "abort"}
		if parent.ok && c.NumParents() > 0 {
			out.Previous = c.ParentHashes[0].String()
		}
		return true
	})
	return out, err
}

// StepStart returns the newest commit since since that changed the
// release's rollout position (the rollout block's step and version) or
// its model, runtime or quantize blocks: the committer time of the
// current rollout step's beginning, from Git alone. observed is the
// revision the caller saw applied ("" : not checked); AfterObserved says
// the commit found comes before observed on the way back from the head.
func (h *History) StepStart(release, observed string, since time.Time) (StepCommit, error) {
	var out StepCommit
	seen := observed == ""
	err := h.walk(release, since, func(c *object.Commit, cur, parent releaseAt) bool {
		if c.Hash.String() == observed {
			seen = true
		}
		if parent.ok && cur.parts.Rollout == parent.parts.Rollout && cur.parts.Position == parent.parts.Position {
			return false
		}
		out = StepCommit{Revision: c.Hash.String(), Time: c.Committer.When, AfterObserved: !seen}
		return true
	})
	return out, err
}

// walk calls found for each first-parent commit newer than since, newest
// first, with the release as it is in the commit and in its parent, until
// found returns true.
func (h *History) walk(release string, since time.Time, found func(c *object.Commit, cur, parent releaseAt) bool) error {
	max := h.MaxCommits
	if max <= 0 {
		max = 500
	}
	c := h.head
	for i := 0; i < max && c != nil; i++ {
		if c.Committer.When.Before(since) {
			return nil
		}
		cur, err := h.at(c, release, "")
		if err != nil {
			return err
		}
		if !cur.ok {
			return nil // the release did not exist before this either, as far as we care
		}
		var parent *object.Commit
		prev := releaseAt{}
		if c.NumParents() > 0 {
			if parent, err = c.Parent(0); err != nil {
				return fmt.Errorf("parent of %s: %w", c.Hash, err)
			}
			if prev, err = h.at(parent, release, cur.file); err != nil {
				return err
			}
		}
		if found(c, cur, prev) {
			return nil
		}
		c = parent
	}
	return nil
}

// Trailer returns the value of the last "Key: value" trailer line of a
// commit message, or "".
func Trailer(msg, key string) string {
	val := ""
	for _, line := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			val = strings.TrimSpace(v)
		}
	}
	return val
}

// at finds the release in commit c, trying the file hint first.
func (h *History) at(c *object.Commit, release, hint string) (releaseAt, error) {
	if h.parts == nil {
		h.parts = map[string]map[plumbing.Hash]releaseAt{}
	}
	if h.parts[release] == nil {
		h.parts[release] = map[plumbing.Hash]releaseAt{}
	}
	if r, ok := h.parts[release][c.Hash]; ok {
		return r, nil
	}
	tree, err := c.Tree()
	if err != nil {
		return releaseAt{}, fmt.Errorf("tree of %s: %w", c.Hash, err)
	}
	look := func(f *object.File) (releaseAt, error) {
		src, err := f.Contents()
		if err != nil {
			return releaseAt{}, err
		}
		p, ok, err := spec.ReleasePartsOf([]byte(src), f.Name, release)
		if err != nil {
			// An old revision that did not parse is not where the
			// release was; say nothing about it.
			return releaseAt{}, nil
		}
		return releaseAt{parts: p, file: f.Name, ok: ok}, nil
	}
	var r releaseAt
	if hint != "" {
		if f, err := tree.File(hint); err == nil {
			if r, err = look(f); err != nil {
				return releaseAt{}, err
			}
		}
	}
	if !r.ok {
		err = tree.Files().ForEach(func(f *object.File) error {
			if !isSpecFile(f.Name) || f.Name == hint {
				return nil
			}
			got, err := look(f)
			if err != nil {
				return err
			}
			if got.ok {
				r = got
				return io.EOF
			}
			return nil
		})
		if err != nil && !errors.Is(err, io.EOF) {
			return releaseAt{}, fmt.Errorf("read %s: %w", c.Hash, err)
		}
	}
	h.parts[release][c.Hash] = r
	return r, nil
}

// isSpecFile: *.hcl outside hidden directories, as spec.Files lists.
func isSpecFile(name string) bool {
	if path.Ext(name) != ".hcl" {
		return false
	}
	for _, dir := range strings.Split(path.Dir(name), "/") {
		if strings.HasPrefix(dir, ".") && dir != "." {
			return false
		}
	}
	return true
}

// Restore is cur, the content of the file that defines release, with the
// release's model, runtime and quantize blocks as they were at revision:
// the edit of a rollback or an abort.
func (h *History) Restore(cur []byte, revision, release string) ([]byte, error) {
	return restore(h.repo, cur, revision, release)
}

func restore(repo *git.Repository, cur []byte, revision, release string) ([]byte, error) {
	_, prev, err := fileAt(repo, revision, release)
	if err != nil {
		return nil, err
	}
	return spec.RestoreRelease(cur, prev, release)
}

// fileAt returns the file of commit rev that defines release, and its
// content.
func fileAt(repo *git.Repository, rev, release string) (string, []byte, error) {
	c, err := repo.CommitObject(plumbing.NewHash(rev))
	if err != nil {
		return "", nil, fmt.Errorf("commit %s: %w", rev, err)
	}
	h := &History{repo: repo, head: c}
	r, err := h.at(c, release, "")
	if err != nil {
		return "", nil, err
	}
	if !r.ok {
		return "", nil, fmt.Errorf("release %q is not defined at %s", release, rev)
	}
	f, err := c.File(r.file)
	if err != nil {
		return "", nil, err
	}
	src, err := f.Contents()
	return r.file, []byte(src), err
}
