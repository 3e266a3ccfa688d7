package monitor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"

	"github.com/gantry-dev/gantry/reconcile/monitor/promtest"
)

// fakeHistory answers the monitor's Git questions with fixed values.
type fakeHistory struct {
	start   StepStart
	rollout *Rollout
}

func (h fakeHistory) LastScale(string, time.Time) (time.Time, error) { return time.Time{}, nil }
func (h fakeHistory) LastRollout(string, time.Time) (*Rollout, error) {
	return h.rollout, nil
}
func (h fakeHistory) StepStart(string, string, time.Time) (StepStart, error) { return h.start, nil }

// A rollout's analysis on a real Prometheus of its own (so that the test
// can stop it) scraping per-pod series: the templated queries select each
// version's pods and no others, the step is held during its pause and
// promoted after it, a failing canary aborts, and Prometheus stopped is a
// pause with a reason and no decision.
func TestRolloutAnalysisPrometheus(t *testing.T) {
	if promURL == "" {
		t.Skip("prometheus not installed (-short)")
	}
	srv, err := promtest.Start(t.TempDir(), exporterAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	p, err := NewProm(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	p.Timeout = 2 * time.Second

	// Deployments of each version; pods are <deployment>-<rs hash>-<5>.
	canaryShards := []string{"ro-chat-gpu-a1-3f2a1c9d", "ro-chat-gpu-b2-3f2a1c9d"}
	stableShards := []string{"ro-chat-gpu-a1-00aa11bb"}
	set := func(pod, version string, errs, latency float64) {
		exporter.Set(`ro_errors{pod="`+pod+`"}`, errs)
		exporter.Set(`ro_latency{pod="`+pod+`",version="`+version+`"}`, latency)
	}
	set("ro-chat-gpu-a1-3f2a1c9d-7d9f8c6b5-abcde", "3f2a1c9d", 1, 0.25)
	set("ro-chat-gpu-b2-3f2a1c9d-6c5b4a3d2-fghij", "3f2a1c9d", 2, 0.75)
	set("ro-chat-gpu-a1-00aa11bb-5f4e3d2c1-klmno", "00aa11bb", 10, 1.0)
	// Another Deployment whose name starts like a canary's, and a pod
	// of another release: neither is the canary's.
	set("ro-chat-gpu-a1-3f2a1c9d-extra-5f4e3d2c1-pqrst", "ffffffff", 100, 9)
	set("ro-chat-gpu-a1-3f2a1c9dx-5f4e3d2c1-uvwxy", "ffffffff", 100, 9)

	cfg := &spec.Config{Revision: "cccccccccccccccc", Settings: spec.Settings{Namespace: "llm"}}
	cfg.Releases = []spec.Release{{Name: "ro-chat", Rollout: &spec.Rollout{
		Steps: []spec.RolloutStep{{Replicas: 1, Pause: 3 * time.Second}, {Percent: 100}},
		Analysis: &spec.Analysis{Interval: time.Second, FailureLimit: 2, Metrics: []spec.AnalysisMetric{
			{Name: "errors", Query: `sum(ro_errors{pod=~"{{.Pods}}"})`, Max: fptr(5)},
			{Name: "latency", Query: `sum(ro_latency{version="{{.Version}}"}) / count(ro_latency{version="{{.Version}}"})`, MaxRatioToStable: fptr(1.2)},
		}},
	}}}
	view := RolloutView{Revision: cfg.Revision, Phase: PhaseProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb", Step: 1, Steps: 2,
		CanaryShards: canaryShards, StableShards: stableShards, Ready: true}
	canaryErrors := `sum(ro_errors{pod=~"` + PodsRegex(canaryShards) + `"})`
	waitValue(t, p, canaryErrors, 3)
	waitValue(t, p, `sum(ro_errors{pod=~"`+PodsRegex(stableShards)+`"})`, 10)

	// The step began a second ago, with data: one evaluation at a 1s
	// interval is in it already.
	time.Sleep(1500 * time.Millisecond)
	start := time.Now().Add(-time.Second)
	hist := fakeHistory{start: StepStart{Revision: "bbbbbbbbbbbbbbbb", Time: start},
		rollout: &Rollout{Revision: "bbbbbbbbbbbbbbbb", Previous: "aaaaaaaaaaaaaaaa", Time: start}}
	ctx := context.Background()
	mon := &Monitor{Metrics: p, Rollouts: map[string]RolloutView{"ro-chat": view}}
	decide := func() (Report, RolloutAnalysis) {
		t.Helper()
		rep := mon.Decide(ctx, cfg, hist)
		if len(rep.Rollouts) != 1 {
			t.Fatalf("report %+v: want one rollout analysis", rep)
		}
		return rep, rep.Rollouts[0]
	}

	t.Run("the pause holds; each version's pods only", func(t *testing.T) {
		rep, a := decide()
		if a.Decision != RolloutHold || !strings.Contains(a.Reason, "pause ends") || len(rep.Decisions) != 0 {
			t.Fatalf("%s: %s (decisions %+v)", a.Decision, a.Reason, rep.Decisions)
		}
		e, l := a.Metrics[0], a.Metrics[1]
		if e.Canary == nil || *e.Canary != 3 || e.Stable == nil || *e.Stable != 10 {
			t.Errorf("errors: canary %v, stable %v; want 1+2 and 10", optNum(e.Canary), optNum(e.Stable))
		}
		if l.Canary == nil || *l.Canary != 0.5 || l.Stable == nil || *l.Stable != 1 || !l.Pass {
			t.Errorf("latency: canary %v, stable %v, pass %v; want 0.5 and 1", optNum(l.Canary), optNum(l.Stable), l.Pass)
		}
		if len(e.CanarySeries) == 0 || len(e.StableSeries) == 0 {
			t.Errorf("no chart series: %d, %d points", len(e.CanarySeries), len(e.StableSeries))
		}
		if rr := rep.Releases[0]; rr.Kind != KindRollout || rr.Changed || !strings.HasPrefix(rr.Reason, "hold: ") {
			t.Errorf("report line %+v", rr)
		}
	})

	t.Run("after the pause within bounds: promote", func(t *testing.T) {
		time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
		rep, a := decide()
		if a.Decision != RolloutPromote || len(rep.Decisions) != 1 {
			t.Fatalf("%s: %s", a.Decision, a.Reason)
		}
		d := rep.Decisions[0]
		if d.Kind != KindPromote || d.From != 1 || d.To != 2 || d.Version != "3f2a1c9d" {
			t.Errorf("decision %+v", d)
		}
		msg := d.Message()
		for _, want := range []string{"ro-chat: promote 3f2a1c9d step 1 → 2", "errors: canary 3, stable 10, bound <= 5", "latency: canary 0.5, stable 1, bound <= 1.2 × stable"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q:\n%s", want, msg)
			}
		}
	})

	t.Run("a failing canary aborts", func(t *testing.T) {
		exporter.Set(`ro_errors{pod="ro-chat-gpu-b2-3f2a1c9d-6c5b4a3d2-fghij"}`, 20)
		waitValue(t, p, canaryErrors, 21)
		var rep Report
		var a RolloutAnalysis
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if rep, a = decide(); a.Decision == RolloutAbort || time.Now().After(deadline) {
				break
			}
		}
		if a.Decision != RolloutAbort || len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindAbort {
			t.Fatalf("%s: %s", a.Decision, a.Reason)
		}
		if d := rep.Decisions[0]; d.Rollout.Previous != "aaaaaaaaaaaaaaaa" || !strings.Contains(d.Message(), "canary 21, stable 10, bound <= 5") {
			t.Errorf("abort %+v:\n%s", d, d.Message())
		}
	})

	t.Run("prometheus stopped: pause, no decision", func(t *testing.T) {
		srv.Stop()
		rep, a := decide()
		if a.Decision != RolloutPause || !strings.Contains(a.Reason, "prometheus is unavailable") || len(rep.Decisions) != 0 {
			t.Errorf("%s: %s (decisions %+v)", a.Decision, a.Reason, rep.Decisions)
		}
		if rep.Unavailable == "" {
			t.Error("the report does not say Prometheus is unavailable")
		}
		if rr := rep.Releases[0]; rr.Changed || !strings.HasPrefix(rr.Reason, "pause: no data, not a pass") {
			t.Errorf("report line %+v", rr)
		}
	})
}
