package reconcile_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
)

// prestagingTarget is a target that can prestage: it records each call,
// and what was applied after it, in one log.
type prestagingTarget struct {
	countingTarget
	mu    sync.Mutex
	calls []planner.PrestageSpec
	// timeout lists nodes whose pull does not finish in time.
	timeout map[string]bool
}

func (t *prestagingTarget) Prestage(ctx context.Context, namespace, release string, p planner.PrestageSpec) (reconcile.PrestageResult, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, p)
	t.c.mu.Lock()
	t.c.applied = append(t.c.applied, "prestage "+strings.Join(p.Nodes, ","))
	t.c.mu.Unlock()
	var res reconcile.PrestageResult
	for _, n := range p.Nodes {
		if t.timeout[n] {
			res.TimedOut = append(res.TimedOut, n)
		} else {
			res.Ready = append(res.Ready, n)
		}
	}
	return res, nil
}

const rolloutBlock = `
  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100 }]
  }
`

// TestEnginePrestagesBeforeTheCanary: a new version of a release with a
// rollout block is pulled on the canary's node before its shard is
// applied, and the status reports the rollout and how the pull went.
func TestEnginePrestagesBeforeTheCanary(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pt := &prestagingTarget{countingTarget: f.e.Target.(countingTarget), timeout: map[string]bool{}}
	f.e.Target = pt
	f.edit(t, "releases.hcl", "  replicas = 3\n", "  replicas = 3\n"+rolloutBlock)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// The first release of a version is no rollout: nothing to compare
	// it with, and the static nodes report no images, so every node that
	// gets a shard is pulled on first.
	st := statusOf(t, f.e, "tiny-chat")
	if st.Rollout == nil || st.Rollout.Phase != planner.RolloutComplete || st.Rollout.Stable != "" {
		t.Fatalf("first release: %+v", st.Rollout)
	}
	f.reset()
	pt.calls = nil
	f.edit(t, "releases.hcl", "group_size = 128", "group_size = 64")
	pt.timeout["gpu-l1"] = true
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	st = statusOf(t, f.e, "tiny-chat")
	ro := st.Rollout
	if ro == nil || ro.Phase != planner.RolloutProgressing || ro.Step != 1 || ro.CanaryReplicas != 1 || ro.StableReplicas != 2 || ro.Stable == "" {
		t.Fatalf("after the change: %+v", ro)
	}
	if len(pt.calls) != 1 || len(pt.calls[0].Nodes) != 1 {
		t.Fatalf("prestage calls %+v, want one on the canary's node", pt.calls)
	}
	node := pt.calls[0].Nodes[0]
	if !strings.Contains(pt.calls[0].Image, "@sha256:") {
		t.Errorf("prestage of %q, want the pushed image by digest", pt.calls[0].Image)
	}
	// The pull came before the canary's shard, and nothing of the stable
	// version changed while the canary does not serve.
	pulled := -1
	for i, a := range f.c.applied {
		if strings.HasPrefix(a, "prestage ") {
			pulled = i
		}
		if strings.Contains(a, "Deployment") && strings.HasPrefix(a, "create ") {
			if pulled < 0 || !strings.Contains(a, node) {
				t.Errorf("%q applied before the pull on %s (%q)", a, node, f.c.applied)
			}
		}
		if strings.HasPrefix(a, "update Deployment") || strings.HasPrefix(a, "delete Deployment") {
			t.Errorf("%q while the canary cannot serve yet", a)
		}
	}
	want := "version " + ro.Canary + ": pulled on " + node
	if node == "gpu-l1" {
		want = "version " + ro.Canary + ": still pulling after 30m0s on gpu-l1"
	}
	if !strings.HasPrefix(ro.Prestage, want) {
		t.Errorf("prestage note %q, want it to start with %q", ro.Prestage, want)
	}

	// The dir target cannot say whether pods are available, so the next
	// reconcile takes the canary as serving: the stable version gives up
	// its replica, and nothing is pulled again.
	f.reset()
	pt.calls = nil
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pt.calls) != 0 {
		t.Errorf("pulled again: %+v", pt.calls)
	}
	if res, err := f.e.Reconcile(ctx); err != nil || res.Executed != 0 {
		t.Errorf("step 1 again: %d actions, %v; want none", res.Executed, err)
	}
	ro = statusOf(t, f.e, "tiny-chat").Rollout
	if !ro.Ready || ro.Weight != 33 || len(ro.StableShards) == 0 || ro.StableAvailable != 2 || !strings.HasPrefix(ro.Prestage, want) {
		t.Errorf("step 1 in place: %+v", ro)
	}
}

func statusOf(t *testing.T, e *reconcile.Engine, name string) reconcile.ReleaseStatus {
	t.Helper()
	for _, r := range e.Status().Releases {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no status for %s", name)
	return reconcile.ReleaseStatus{}
}
