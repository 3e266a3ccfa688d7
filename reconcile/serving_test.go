package reconcile_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// copyRelease appends a copy of the quickstart's tiny-chat-gguf under
// another name: the same model and method, so the same content key.
func (f *fixture) copyRelease(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.repo, "releases.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `release "tiny-chat-gguf"`)
	if i < 0 {
		t.Fatal("no tiny-chat-gguf in releases.hcl")
	}
	block := strings.Replace(string(b[i:]), `release "tiny-chat-gguf"`, `release "`+name+`"`, 1)
	if err := os.WriteFile(filepath.Join(f.repo, "releases.hcl"), append(b, "\n"+block...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// modelImages returns, per release, the model image references of its
// rendered shard Deployments.
func (f *fixture) modelImages(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(f.state, "objects", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		if !strings.HasPrefix(name, "deployment-") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, "gantry.local/models/"); i >= 0 {
				ref := strings.Trim(strings.TrimSpace(line[i:]), `"'`)
				rel := strings.SplitN(strings.TrimPrefix(ref, "gantry.local/models/"), ":", 2)[0]
				out[rel] = append(out[rel], ref)
			}
		}
	}
	return out
}

// Two releases with the same content key each reference the image of
// their own repository, on the first run and on every later one (the bug:
// artifacts were observed by content key, so one release got the other's
// manifest digest). The model is quantized once.
func TestSharedContentKeyEachOwnImage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.copyRelease(t, "tiny-chat-copy")
	for run := 1; run <= 3; run++ {
		if run == 3 { // a restarted daemon: a fresh engine on the same state
			e := f.e
			f.e = &reconcile.Engine{Source: e.Source, Target: e.Target, Store: e.Store, WorkDir: e.WorkDir, Log: e.Log, Quantize: e.Quantize}
		}
		res, err := f.e.Reconcile(ctx)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, r := range res.Releases {
			if !reconcile.Converged(r.State) {
				t.Fatalf("run %d: %s is %s: %s", run, r.Name, r.State, r.Reason)
			}
		}
		imgs := f.modelImages(t)
		for _, rel := range []string{"tiny-chat-gguf", "tiny-chat-copy"} {
			refs := imgs[rel]
			if len(refs) == 0 {
				t.Fatalf("run %d: no shard of %s references its own repository: %v", run, rel, imgs)
			}
			ref := planner.ImageRepository(&spec.Config{}, rel) + ":" + strings.SplitN(strings.SplitN(refs[0], ":", 2)[1], "@", 2)[0]
			digest, ok, err := f.e.Store.Has(ctx, ref)
			if err != nil || !ok {
				t.Fatalf("run %d: %s not in the store: %v", run, ref, err)
			}
			for _, got := range refs {
				if want := ref + "@" + digest; got != want {
					t.Errorf("run %d: %s references %s, want %s", run, rel, got, want)
				}
			}
		}
		if run == 1 && f.c.quantizes != 2 {
			t.Errorf("run 1: %d quantizes, want 2 (the shared key once, tiny-chat once)", f.c.quantizes)
		}
	}
}

// shrinkingTarget reports the static nodes with most of their GPUs taken
// by someone else, as a kube target sees a cluster where capacity went
// away under a release.
type shrinkingTarget struct {
	reconcile.Target
	used map[string]int
}

func (t shrinkingTarget) Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error) {
	objs, nodes, err := t.Target.Observe(ctx, cfg)
	for i := range nodes {
		nodes[i].Used += t.used[nodes[i].Name]
	}
	return objs, nodes, err
}

func snapshotObjects(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	out := map[string]string{}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = string(b)
	}
	return out
}

// A release that no live node can hold any more keeps every shard it
// serves with: no delete, no rollout; its state says unplaceable with the
// scheduler's reason. Partly placeable is pending, not synced.
func TestUnplaceableKeepsServing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	before := snapshotObjects(t, filepath.Join(f.state, "objects"))
	if _, ok := before["deployment-llm-tiny-chat-gguf-gpu-a2.yaml"]; !ok {
		t.Fatalf("quickstart did not place tiny-chat-gguf on gpu-a2: %v", before)
	}
	state := func(res reconcile.Result, name string) reconcile.ReleaseStatus {
		for _, r := range res.Releases {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no status for %s", name)
		return reconcile.ReleaseStatus{}
	}

	// The a100 nodes have 8 GPUs, reserve 1; others now use 6 of them, so
	// a 4-GPU replica fits nowhere (l4 is not allowed), and neither does
	// the 2-GPU one that serves on gpu-a2 (its own 2 + 6 > 7).
	f.e.Target = shrinkingTarget{Target: f.e.Target, used: map[string]int{"gpu-a1": 6, "gpu-a2": 6}}
	for _, edit := range []struct{ name, old, new string }{
		{"capacity gone", "", ""},
		{"bigger replicas", "gpus       = 2", "gpus       = 4"},
	} {
		if edit.old != "" {
			f.edit(t, "releases.hcl", edit.old, edit.new)
		}
		f.reset()
		res, err := f.e.Reconcile(ctx)
		if err != nil {
			t.Fatalf("%s: %v", edit.name, err)
		}
		st := state(res, "tiny-chat-gguf")
		if st.State != reconcile.StateUnplaceable || !strings.Contains(st.Reason, "cannot be placed") || !strings.Contains(st.Reason, "held") {
			t.Errorf("%s: state %s: %s", edit.name, st.State, st.Reason)
		}
		for _, a := range f.c.applied {
			if strings.Contains(a, "tiny-chat-gguf") {
				t.Errorf("%s: applied %s to a release that cannot be placed", edit.name, a)
			}
		}
		after := snapshotObjects(t, filepath.Join(f.state, "objects"))
		for name, y := range before {
			if strings.Contains(name, "tiny-chat-gguf") && after[name] != y {
				t.Errorf("%s: %s changed or vanished", edit.name, name)
			}
		}
	}

	// Partly placeable, with nothing serving yet: what fits is created,
	// the rest is pending.
	f2 := newFixture(t)
	f2.edit(t, "releases.hcl", "replicas = 3", "replicas = 40")
	res, err := f2.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := state(res, "tiny-chat")
	placed := 0
	for _, n := range st.Placement {
		placed += n
	}
	if st.State != reconcile.StatePending || placed == 0 || !strings.Contains(st.Reason, "of 40 replicas cannot be placed") {
		t.Errorf("40 asked: state %s, %d placed: %s", st.State, placed, st.Reason)
	}
	if reconcile.Converged(st.State) {
		t.Error("pending counts as converged")
	}
}

// The quantization error of a build is known after a restart, when the
// image is already pushed and nothing is built again: from the build
// cache, and from the image's annotation when the cache is gone too (a
// new pod with an empty work dir).
func TestQuantErrorAfterRestart(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]float64{}
	for _, r := range res.Releases {
		if r.Error == nil {
			t.Fatalf("first run: %s has no quantization error", r.Name)
		}
		first[r.Name] = r.Error.RelRMSE
	}
	for _, wipe := range []bool{false, true} {
		if wipe {
			if err := os.RemoveAll(f.e.WorkDir); err != nil {
				t.Fatal(err)
			}
		}
		e := &reconcile.Engine{Source: f.e.Source, Target: f.e.Target, Store: f.e.Store, WorkDir: f.e.WorkDir, Log: f.e.Log, Quantize: f.e.Quantize}
		f.reset()
		res, err := e.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Executed != 0 || f.c.quantizes != 0 {
			t.Fatalf("restart: %d executed, %d quantizes", res.Executed, f.c.quantizes)
		}
		for _, r := range e.Status().Releases {
			if r.Error == nil || r.Error.RelRMSE != first[r.Name] {
				t.Errorf("restart (work dir wiped: %v): %s error %+v, want rel RMSE %g", wipe, r.Name, r.Error, first[r.Name])
			}
		}
	}
}
