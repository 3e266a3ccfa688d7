package planner

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/spec"
)

// versioned gives every live object a version, as targets do.
func versioned(obs Observed, v string) Observed {
	objs := make([]Object, len(obs.Objects))
	for i, o := range obs.Objects {
		o.Version = v
		objs[i] = o
	}
	obs.Objects = objs
	return obs
}

// planWith builds cfg against obs with memo (nil: none).
func planWith(t *testing.T, cfg *spec.Config, obs Observed, memo *Memo) Plan {
	t.Helper()
	p := Prepare(cfg, obs)
	p.Memo = memo
	plan, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestMemoSkipsOnlyWhatDidNotChange: with a memo, a Build renders only
// the releases whose inputs or live objects changed since they were found
// in sync, and its plan is the plan a Build without a memo makes, in
// every case: nothing changed, a live object edited (drift), a release's
// spec edited, a version unknown, a release removed and brought back.
func TestMemoSkipsOnlyWhatDidNotChange(t *testing.T) {
	const n = 40
	cfg := fleet(t, n)
	obs := versioned(applied(t, cfg), "v1")
	memo := &Memo{}
	check := func(step string, cfg *spec.Config, obs Observed, wantSkips int64, wantActions int) {
		t.Helper()
		before := memo.Skips()
		got := planWith(t, cfg, obs, memo)
		want := planWith(t, cfg, obs, nil)
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s: the memo changed the plan (-without +with):\n%s", step, d)
		}
		if skips := memo.Skips() - before; skips != wantSkips {
			t.Errorf("%s: %d releases skipped, want %d", step, skips, wantSkips)
		}
		if len(got.Actions) != wantActions {
			t.Errorf("%s: %d actions, want %d: %+v", step, len(got.Actions), wantActions, got.Actions)
		}
	}
	check("first build: an empty memo", cfg, obs, 0, 0)
	check("nothing changed", cfg, obs, n, 0)

	// Drift: somebody scales a shard of r-00005 by hand. Its version
	// changes, as every edit's does: only r-00005 is planned again.
	drifted := obs
	drifted.Objects = append([]Object(nil), obs.Objects...)
	for i, o := range drifted.Objects {
		if o.Label(LabelRelease) == "r-00005" && o.Kind == "Deployment" {
			o.Manifest = cloneJSON(o.Manifest).(map[string]any)
			o.Manifest["spec"].(map[string]any)["replicas"] = int64(7)
			o.Version = "v2"
			drifted.Objects[i] = o
			break
		}
	}
	check("a shard of r-00005 edited by hand", cfg, drifted, n-1, 1)
	check("the drift again (not in sync: never remembered)", cfg, drifted, n-1, 1)
	check("the drift undone, with yet another version", cfg, versioned(obs, "v3"), 0, 0)
	obs = versioned(obs, "v3")
	check("and again", cfg, obs, n, 0)

	// A spec edit: r-00007 asks for another replica.
	edited := *cfg
	edited.Releases = append([]spec.Release(nil), cfg.Releases...)
	more := edited.Releases[7].ReplicaCount() + 1
	edited.Releases[7].Replicas = &more
	got := planWith(t, &edited, obs, memo) // for the count of actions
	if len(got.Actions) == 0 {
		t.Fatal("r-00007 with one more replica plans nothing")
	}
	check("r-00007's replicas edited", &edited, obs, n-1, len(got.Actions))

	// An unknown version: the release is always planned in full.
	unknown := obs
	unknown.Objects = append([]Object(nil), obs.Objects...)
	for i, o := range unknown.Objects {
		if o.Label(LabelRelease) == "r-00009" {
			o.Version = ""
			unknown.Objects[i] = o
		}
	}
	// (r-00007 is planned again too: the memo forgot it when its edit
	// gave changes.)
	check("r-00009's version unknown, r-00007's edit undone", cfg, unknown, n-2, 0)
	check("r-00009's version unknown, again", cfg, unknown, n-1, 0)

	// A release removed from the specs and brought back is planned anew.
	fewer := *cfg
	fewer.Releases = cfg.Releases[1:]
	p := planWith(t, &fewer, obs, memo)
	if s := p.Summary(); s.Destroy == 0 {
		t.Fatalf("removing r-00000 destroys nothing: %+v", s)
	}
	check("r-00000 back", cfg, obs, n-1, 0)
}

// TestMemoNeverSkipsAShardToDelete: a release whose live objects include
// one it no longer renders (a shard on a node it left) is planned in
// full, even when its inputs are those the memo saw.
func TestMemoNeverSkipsAShardToDelete(t *testing.T) {
	cfg := fleet(t, 8)
	obs := versioned(applied(t, cfg), "v1")
	memo := &Memo{}
	planWith(t, cfg, obs, memo)
	var extra Object
	for _, o := range obs.Objects {
		if o.Label(LabelRelease) == "r-00002" && o.Kind == "Deployment" {
			extra = Object{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: "r-00002-elsewhere", Manifest: cloneJSON(o.Manifest).(map[string]any), Version: "v1"}
			extra.Manifest["metadata"].(map[string]any)["name"] = extra.Name
			extra.Manifest["metadata"].(map[string]any)["annotations"].(map[string]any)[AnnotationNode] = "elsewhere"
		}
	}
	obs.Objects = append(obs.Objects, extra)
	plan := planWith(t, cfg, obs, memo)
	want := planWith(t, cfg, obs, nil)
	if d := cmp.Diff(want, plan); d != "" {
		t.Fatalf("(-without +with memo):\n%s", d)
	}
	if s := plan.Summary(); s.Destroy != 1 {
		t.Fatalf("the shard elsewhere: %+v, want one destroy", s)
	}
	if got := fmt.Sprint(plan.Actions[0].Subject); got != "Deployment llm/r-00002-elsewhere" {
		t.Fatalf("destroys %s", got)
	}
}
