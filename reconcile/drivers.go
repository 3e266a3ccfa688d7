package reconcile

import (
	"context"
	"fmt"
	"os"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/gitsource"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// Snapshot is one revision of the specs on disk.
type Snapshot struct {
	Dir      string
	Revision string // "" for a plain directory
	// Uncommitted: a working copy with changes below Dir that Revision
	// does not hold.
	Uncommitted bool
}

// Source yields the latest specs.
type Source interface {
	Fetch(ctx context.Context) (Snapshot, error)
}

// Target is where Kubernetes objects live.
type Target interface {
	// Observe returns the managed objects and the GPU nodes.
	Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error)
	// Apply carries out create, update and delete actions in order.
	Apply(ctx context.Context, namespace string, actions []planner.Action) error
}

// Prestager is a Target that can pull a model image on nodes before
// their shards change (a cluster, whose kubelets report the images they
// hold). Prestage starts a short-lived pod per node that mounts or runs
// the image and exits, waits until every pod is done or p.Timeout
// passed, and removes the pods.
type Prestager interface {
	Prestage(ctx context.Context, namespace, release string, p planner.PrestageSpec) (PrestageResult, error)
}

// PrestageResult is how a prestage ended, node by node.
type PrestageResult struct {
	// Ready are the nodes that hold the image now.
	Ready []string `json:"ready,omitempty"`
	// TimedOut are the nodes still pulling when the wait ended.
	TimedOut []string `json:"timed_out,omitempty"`
	// Failed are the nodes whose pull pod failed, with the reason.
	Failed map[string]string `json:"failed,omitempty"`
}

// Saver is a Target that keeps a cache worth saving once a reconcile is
// done with it (the dir target's decoded manifests), for the next
// process. A failed save costs only time.
type Saver interface {
	Save(ctx context.Context) error
}

// DirSource is a plain directory (or a working copy, whose HEAD commit is
// reported as the revision).
type DirSource struct{ Dir string }

// Fetch returns the directory as it is now.
func (s DirSource) Fetch(ctx context.Context) (Snapshot, error) {
	if _, err := os.Stat(s.Dir); err != nil {
		return Snapshot{}, fmt.Errorf("specs: %w", err)
	}
	rev, err := gitsource.Head(ctx, s.Dir) // not a working copy: no revision
	dirty := false
	if err == nil {
		dirty, _ = gitsource.Uncommitted(ctx, s.Dir)
	}
	return Snapshot{Dir: s.Dir, Revision: rev, Uncommitted: dirty}, nil
}

// DirTarget renders objects into a directory of YAML files, the embedded
// default. GPU nodes come from the specs' static inventory.
type DirTarget struct{ dirtarget.Target }

// Observe reads the YAML files back.
func (t DirTarget) Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error) {
	objs, err := t.Target.Observe(ctx)
	return objs, planner.StaticNodes(cfg), err
}

// Apply writes and removes files.
func (t DirTarget) Apply(ctx context.Context, _ string, actions []planner.Action) error {
	for _, a := range actions {
		var err error
		switch a.Type {
		case planner.Create, planner.Update:
			err = t.Put(ctx, *a.Object)
		case planner.Delete:
			err = t.Delete(ctx, *a.Object)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// GitSource is a remote repository kept in a cache directory.
type GitSource struct{ Repo *gitsource.Repo }

// Fetch brings the checkout up to date.
func (s GitSource) Fetch(ctx context.Context) (Snapshot, error) {
	dir, rev, err := s.Repo.Fetch(ctx)
	return Snapshot{Dir: dir, Revision: rev}, err
}
