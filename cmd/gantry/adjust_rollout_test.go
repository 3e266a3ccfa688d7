package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/gitsource"
	"github.com/gantry-dev/gantry/reconcile/monitor"
	"github.com/gantry-dev/gantry/spec"
)

// The daemon hands the monitor the planner's rollout states and records
// the analyses back in the engine's status types.
func TestRolloutWiring(t *testing.T) {
	st := reconcile.Status{Revision: "abc", Releases: []reconcile.ReleaseStatus{
		{Name: "plain"},
		{Name: "chat", Rollout: &reconcile.RolloutStatus{RolloutState: planner.RolloutState{
			Phase: planner.RolloutProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb", Step: 2, Steps: 3,
			CanaryShards: []string{"chat-a-3f2a1c9d"}, StableShards: []string{"chat-a-00aa11bb"}, Ready: true,
		}}},
	}}
	want := map[string]monitor.RolloutView{"chat": {Revision: "abc", Phase: monitor.PhaseProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb",
		Step: 2, Steps: 3, CanaryShards: []string{"chat-a-3f2a1c9d"}, StableShards: []string{"chat-a-00aa11bb"}, Ready: true}}
	if d := cmp.Diff(want, rolloutViews(st)); d != "" {
		t.Errorf("rolloutViews (-want +got):\n%s", d)
	}
	// The planner's phases are the monitor's.
	for _, p := range [][2]string{{planner.RolloutProgressing, monitor.PhaseProgressing}, {planner.RolloutRestoring, monitor.PhaseRestoring}, {planner.RolloutComplete, monitor.PhaseComplete}} {
		if p[0] != p[1] {
			t.Errorf("phase %q is %q to the monitor", p[0], p[1])
		}
	}

	// Sharded: shard 0 decides everything but others' rollouts; the other
	// shards only the rollouts of their own releases.
	for i, only := range []bool{false, true} {
		e := &reconcile.Engine{Shard: &reconcile.Shard{Index: i, Count: 2}}
		obs := observedBy(e)
		if obs.rolloutsOnly != only || obs.owns == nil || obs.owns("chat") != (reconcile.ShardOf("chat", 2) == i) {
			t.Errorf("shard %d/2: %+v", i, obs)
		}
	}
	if obs := observedBy(&reconcile.Engine{}); obs.owns != nil || obs.rolloutsOnly || obs.rollouts == nil {
		t.Errorf("not sharded: %+v", obs)
	}

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := 0.004
	got := analysisOf(monitor.RolloutAnalysis{Release: "chat", Time: now, Decision: monitor.RolloutHold, Reason: "r", Failures: 1, FailureLimit: 2,
		Metrics: []monitor.MetricResult{{Name: "error_ratio", Bound: "<= 0.01", Canary: &v, Pass: true, Samples: 3, Needed: 10,
			CanarySeries: []monitor.Sample{{Time: now, Value: v}}}}})
	wantA := &reconcile.Analysis{Time: now, Decision: "hold", Reason: "r", Failures: 1, FailureLimit: 2,
		Metrics: []reconcile.MetricAnalysis{{Name: "error_ratio", Bound: "<= 0.01", Canary: &v, Pass: true, Samples: 3, Needed: 10,
			CanarySeries: []reconcile.Point{{T: now, V: v}}}}}
	if d := cmp.Diff(wantA, got); d != "" {
		t.Errorf("analysisOf (-want +got):\n%s", d)
	}

	// Decisions become changes: a promote sets the step, an abort restores.
	ch := changesOf([]monitor.Decision{
		{Release: "chat", Kind: monitor.KindPromote, Version: "3f2a1c9d", From: 2, To: 3, Analysis: &monitor.RolloutAnalysis{}},
		{Release: "chat", Kind: monitor.KindAbort, Version: "3f2a1c9d", From: 2, To: 2, Rollout: &monitor.Rollout{Revision: "b", Previous: "a"}},
	})
	if ch[0].Kind != "promote" || ch[0].Version != "3f2a1c9d" || ch[0].Step != 3 || ch[0].Replicas != 0 ||
		ch[1].Kind != "abort" || ch[1].Restore != "a" || ch[1].Step != 2 {
		t.Errorf("changes %+v", ch)
	}
}

// gantry adjust cannot see the shards: it says who decides rollouts.
func TestPrintAdjustRollout(t *testing.T) {
	var out bytes.Buffer
	a := &app{stdout: &out, stderr: &out}
	rep := monitor.Report{Releases: []monitor.ReleaseReport{{Release: "chat", Kind: monitor.KindRollout, Reason: monitor.NotObserved}}}
	a.printAdjust(&out, rep, gitsource.Outcome{}, true)
	if !strings.Contains(out.String(), "chat     rollout  -      rollouts are decided by gantry run, which observes the shards") {
		t.Errorf("output:\n%s", out.String())
	}
}

// gantry adjust on a repository whose release has a rollout block: the
// rollout is listed and left to gantry run, and nothing is committed.
func TestAdjustLeavesRolloutsToRun(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	work := filepath.Join(t.TempDir(), "work")
	if err := os.CopyFS(work, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(work, "releases.hcl")
	b, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("release \"tiny-chat\" {\n"), []byte(`release "tiny-chat" {
  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100 }]
    analysis {
      metric "errors" {
        query = "sum(errors{pod=~\"{{.Pods}}\"})"
        max   = 0.01
      }
    }
  }
`), 1)
	if err := os.WriteFile(rel, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "specs.git")
	gitRun(t, "", "init", "-q", "--bare", "--initial-branch=main", bare)
	gitRun(t, work, "init", "-q", "--initial-branch=main")
	gitRun(t, work, "add", ".")
	gitRun(t, work, "commit", "-q", "-m", "quickstart with a rollout")
	gitRun(t, work, "push", "-q", bare, "main")
	head := gitRun(t, bare, "rev-parse", "main")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	code, out, errs := gantry(t, "adjust", "--repo", bare, "--prometheus", dead, "--state-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("adjust: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tiny-chat ") && strings.Contains(l, " rollout ") {
			line = l
		}
	}
	if !strings.Contains(line, monitor.NotObserved) {
		t.Errorf("no rollout line saying who decides:\n%s", out)
	}
	if gitRun(t, bare, "rev-parse", "main") != head {
		t.Error("adjust committed")
	}
}

// An abort is committed only when restoring the blocks gives back the
// stable version; a rollout that began with a change of resources (which
// the restore does not undo) is left for a person.
func TestCheckAborts(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	ctx := t.Context()
	work := filepath.Join(t.TempDir(), "work")
	if err := os.CopyFS(work, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(work, "releases.hcl")
	edit := func(old, new string) {
		t.Helper()
		b, err := os.ReadFile(rel)
		if err != nil || !bytes.Contains(b, []byte(old)) {
			t.Fatalf("releases.hcl lacks %q (%v)", old, err)
		}
		if err := os.WriteFile(rel, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(msg string) string {
		t.Helper()
		gitRun(t, work, "add", ".")
		gitRun(t, work, "commit", "-q", "-m", msg)
		return gitRun(t, work, "rev-parse", "HEAD")
	}
	version := func() string {
		t.Helper()
		cfg, diags := spec.Load(ctx, work, spec.LoadOptions{NoEnv: true})
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		for i := range cfg.Releases {
			if cfg.Releases[i].Name == "tiny-chat" {
				return planner.Version(&cfg.Releases[i])
			}
		}
		t.Fatal("no tiny-chat")
		return ""
	}
	gitRun(t, work, "init", "-q", "--initial-branch=main")
	stableRev := commit("quickstart")
	stable := version()
	edit("max_per_node = 2", "max_per_node = 3") // not a version
	edit("group_size = 128", "group_size = 64")
	canaryRev := commit("tiny-chat: group size 64")
	before, _ := os.ReadFile(rel)
	abort := func() monitor.Report {
		return monitor.Report{
			Decisions: []monitor.Decision{{Release: "tiny-chat", Kind: monitor.KindAbort, Rollout: &monitor.Rollout{Revision: canaryRev, Previous: stableRev}}},
			Releases:  []monitor.ReleaseReport{{Release: "tiny-chat", Kind: monitor.KindRollout, Changed: true, Reason: "abort: 1 of 1"}},
			Rollouts:  []monitor.RolloutAnalysis{{Release: "tiny-chat", Decision: monitor.RolloutAbort, Reason: "1 of 1"}},
		}
	}
	hist, err := gitsource.NewHistory(work, canaryRev)
	if err != nil {
		t.Fatal(err)
	}
	rep := abort()
	checkAborts(ctx, work, hist, nil, map[string]monitor.RolloutView{"tiny-chat": {Stable: stable}}, &rep)
	if len(rep.Decisions) != 1 || !rep.Releases[0].Changed {
		t.Errorf("the restore gives back %s, yet: %+v", stable, rep)
	}
	if after, _ := os.ReadFile(rel); !bytes.Equal(before, after) {
		t.Errorf("the trial restore stayed in the checkout:\n%s", after)
	}

	// The stable version is not what the commit before the blocks' change
	// had: a change of resources came after it.
	edit(`gpu_memory = "20Gi"`, `gpu_memory = "40Gi"`)
	resourcesRev := commit("tiny-chat: more GPU memory")
	hist, err = gitsource.NewHistory(work, resourcesRev)
	if err != nil {
		t.Fatal(err)
	}
	rep = abort()
	checkAborts(ctx, work, hist, nil, map[string]monitor.RolloutView{"tiny-chat": {Stable: stable}}, &rep)
	if len(rep.Decisions) != 0 || rep.Releases[0].Changed || !strings.Contains(rep.Releases[0].Reason, "not the stable "+stable+": restore the release by hand") ||
		!strings.Contains(rep.Rollouts[0].Reason, "restore the release by hand") {
		t.Errorf("abort to a third version: %+v", rep)
	}
}
