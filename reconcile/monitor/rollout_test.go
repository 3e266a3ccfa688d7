package monitor

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

func fptr(f float64) *float64 { return &f }

// at makes samples one minute apart from start, one per value.
func at(start time.Time, values ...float64) []Sample {
	out := make([]Sample, len(values))
	for i, v := range values {
		out[i] = Sample{Time: start.Add(time.Duration(i) * time.Minute), Value: v}
	}
	return out
}

// repeat is n copies of v.
func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestDecideRollout(t *testing.T) {
	// Steps: 1 replica for 10m, 50% until a person promotes, then 100%.
	steps := []spec.RolloutStep{{Replicas: 1, Pause: 10 * time.Minute}, {Percent: 50}, {Percent: 100}}
	// Evaluated every minute; two failed evaluations abort.
	analysis := &spec.Analysis{Interval: time.Minute, FailureLimit: 2, Metrics: []spec.AnalysisMetric{
		{Name: "error_ratio", Query: "e", Max: fptr(0.01)},
		{Name: "ttft_p95", Query: "t", MaxRatioToStable: fptr(1.2)},
	}}
	view := RolloutView{Phase: PhaseProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb", Step: 1, Steps: 3, Ready: true}
	notReady := view
	notReady.Ready = false
	manual := view
	manual.Step = 2
	last := view
	last.Step = 3

	// The step began 12m before t0: 13 samples (t0-12m … t0), the last
	// pause [t0-10m, t0] holds 11 of them; the pause takes floor(10m/1m) = 10.
	start := t0.Add(-12 * time.Minute)
	good := func() []MetricData {
		return []MetricData{
			{Canary: at(start, repeat(0.004, 13)...), Stable: at(start, repeat(0.005, 13)...)},
			{Canary: at(start, repeat(1.1, 13)...), Stable: at(start, repeat(1.0, 13)...)},
		}
	}
	with := func(edit func(m []MetricData)) []MetricData {
		m := good()
		edit(m)
		return m
	}
	errRatio := func(i int, v float64) func([]MetricData) { // canary error_ratio sample i
		return func(m []MetricData) { m[0].Canary[i].Value = v }
	}

	for _, tc := range []struct {
		name     string
		in       RolloutInput
		decision string
		because  string
		failures int
	}{
		{"within bounds for the whole pause", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: good()},
			RolloutPromote, "within bounds for the whole 10m0s pause", 0},
		// 5m into a 10m pause: hold, however good the data.
		{"pause not over", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: t0.Add(-5 * time.Minute), Now: t0, Metrics: good()},
			RolloutHold, "pause ends at 2025-01-01T12:05:00Z (5m0s left)", 0},
		{"not ready", RolloutInput{Steps: steps, Analysis: analysis, View: notReady, StepStart: start, Now: t0, Metrics: good()},
			RolloutHold, "waiting for the step's replicas to become available", 0},
		// 0.02 > 0.01 at t0-3m: one failure of two, inside the last pause.
		{"one failure inside the window holds", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(errRatio(9, 0.02))},
			RolloutHold, "error_ratio was out of bounds at 2025-01-01T11:57:00Z (canary 0.02, stable 0.005, bound <= 0.01)", 1},
		// At t0-11m, before the last pause: counted, but the pause passed whole.
		{"one failure before the window", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(errRatio(1, 0.5))},
			RolloutPromote, "promote to step 2", 1},
		{"failure_limit aborts", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) { errRatio(1, 0.5)(m); errRatio(9, 0.02)(m) })},
			RolloutAbort, "2 of 2 failed evaluations", 2},
		// The step's replicas are not all up, but the canary already fails.
		{"failing canary aborts before ready", RolloutInput{Steps: steps, Analysis: analysis, View: notReady, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) { errRatio(11, 0.3)(m); errRatio(12, 0.4)(m) })},
			RolloutAbort, "error_ratio at 2025-01-01T12:00:00Z: canary 0.4, stable 0.005, bound <= 0.01", 2},
		// Two metrics failing at the same time are one failed evaluation.
		{"one evaluation, two metrics", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) { errRatio(12, 0.3)(m); m[1].Canary[12].Value = 9 })},
			RolloutHold, "out of bounds at 2025-01-01T12:00:00Z", 1},
		// Samples before the step began (the previous step's) do not count.
		{"failures before the step", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[0].Canary = append(at(start.Add(-2*time.Minute), 0.9, 0.9), m[0].Canary...)
		})}, RolloutPromote, "promote", 0},
		{"prometheus unavailable", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: []MetricData{
			{CanaryErr: fmt.Errorf("%w: connection refused", ErrUnavailable), StableErr: fmt.Errorf("%w: connection refused", ErrUnavailable)},
			{CanaryErr: fmt.Errorf("%w: connection refused", ErrUnavailable), StableErr: fmt.Errorf("%w: connection refused", ErrUnavailable)},
		}}, RolloutPause, "no data, not a pass: error_ratio: the canary query: prometheus is unavailable: connection refused", 0},
		{"unavailable while not ready", RolloutInput{Steps: steps, Analysis: analysis, View: notReady, StepStart: start, Now: t0, Metrics: []MetricData{
			{CanaryErr: ErrUnavailable}, {CanaryErr: ErrUnavailable},
		}}, RolloutPause, "prometheus is unavailable", 0},
		{"no series", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[0] = MetricData{CanaryErr: fmt.Errorf("query %q: %w", "e", ErrNoData), Stable: m[0].Stable}
		})}, RolloutPause, `error_ratio: the canary query: query "e": the query returned no data`, 0},
		// A series with no sample since the step began is no data either.
		{"no samples in the step", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[0].Canary = at(start.Add(-5*time.Minute), 0.001, 0.001)
		})}, RolloutPause, "error_ratio: no canary samples since the step started", 0},
		// One sample every 2 minutes: 6 in the last 10m, not 10.
		{"too few samples", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			var s []Sample
			for i, x := range m[0].Canary {
				if i%2 == 0 {
					s = append(s, x)
				}
			}
			m[0].Canary = s
		})}, RolloutPause, "error_ratio has 6 of the 10 samples the 10m0s pause takes at a 1m0s interval", 0},
		// Stable points missing at 5 of the 11 times in the window (t0-9m …
		// t0-5m): 6 evaluations, not 10.
		{"missing stable points", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Stable = append(append([]Sample(nil), m[1].Stable[:3]...), m[1].Stable[8:]...)
		})}, RolloutPause, "ttft_p95 has 6 of the 10 samples", 0},
		{"no stable version for a ratio", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Stable, m[1].StableErr = nil, fmt.Errorf("no stable version serves to compare with")
		})}, RolloutPause, "ttft_p95: the stable query: no stable version serves", 0},
		// A stable error does not matter to a metric with absolute bounds only.
		{"stable error, absolute bound", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[0].Stable, m[0].StableErr = nil, ErrNoData
		})}, RolloutPromote, "promote", 0},
		// 1.3 / 1.0 > 1.2 twice.
		{"ratio above the bound", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Canary[11].Value, m[1].Canary[12].Value = 1.3, 1.3
		})}, RolloutAbort, "ttft_p95 at 2025-01-01T12:00:00Z: canary 1.3, stable 1, ratio 1.300, bound <= 1.2 × stable", 2},
		// 1.2 / 1.0 = 1.2 is within (the bound is inclusive).
		{"ratio at the bound", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Canary = at(start, repeat(1.2, 13)...)
		})}, RolloutPromote, "promote", 0},
		// Stable 0 and canary 0: ratio 1, a pass.
		{"both zero", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Canary, m[1].Stable = at(start, repeat(0, 13)...), at(start, repeat(0, 13)...)
		})}, RolloutPromote, "promote", 0},
		// Stable 0, canary 0.1: +Inf, a failure at every evaluation.
		{"stable zero", RolloutInput{Steps: steps, Analysis: analysis, View: view, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) {
			m[1].Canary, m[1].Stable = at(start, repeat(0.1, 13)...), at(start, repeat(0, 13)...)
		})}, RolloutAbort, "ratio +Inf", 13},
		{"manual step", RolloutInput{Steps: steps, Analysis: analysis, View: manual, StepStart: start, Now: t0, Metrics: good()},
			RolloutHold, "waiting for a person to promote: set step = 3", 0},
		{"manual step still aborts", RolloutInput{Steps: steps, Analysis: analysis, View: manual, StepStart: start, Now: t0, Metrics: with(func(m []MetricData) { errRatio(3, 1)(m); errRatio(4, 1)(m) })},
			RolloutAbort, "2 of 2", 2},
		{"last step", RolloutInput{Steps: steps, Analysis: analysis, View: last, StepStart: start, Now: t0, Metrics: good()},
			"", "step 3 is the last", 0},
		{"restoring", RolloutInput{Steps: steps, Analysis: analysis, View: RolloutView{Phase: PhaseRestoring, Step: 1}, StepStart: start, Now: t0},
			"", "restoring", 0},
		{"complete", RolloutInput{Steps: steps, Analysis: analysis, View: RolloutView{Phase: PhaseComplete, Step: 3}, StepStart: start, Now: t0},
			"", "complete", 0},
		{"no analysis: pause over", RolloutInput{Steps: steps, View: view, StepStart: start, Now: t0},
			RolloutPromote, "pause is over and the step's replicas are available (no analysis)", 0},
		{"no analysis: pause not over", RolloutInput{Steps: steps, View: view, StepStart: t0.Add(-9 * time.Minute), Now: t0},
			RolloutHold, "1m0s left", 0},
		{"no analysis: not ready", RolloutInput{Steps: steps, View: notReady, StepStart: start, Now: t0},
			RolloutHold, "waiting for the step's replicas", 0},
		{"no analysis: manual", RolloutInput{Steps: steps, View: manual, StepStart: start, Now: t0},
			RolloutHold, "set step = 3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := DecideRollout(tc.in)
			if a.Decision != tc.decision || !strings.Contains(a.Reason, tc.because) {
				t.Errorf("DecideRollout = %q %q, want %q, saying %q", a.Decision, a.Reason, tc.decision, tc.because)
			}
			if a.Failures != tc.failures {
				t.Errorf("failures %d, want %d", a.Failures, tc.failures)
			}
		})
	}
}

// No data never promotes: whatever part of the data is missing, the
// decision is a pause (or an abort on the failures that are there).
func TestDecideRolloutMissingDataNeverPromotes(t *testing.T) {
	steps := []spec.RolloutStep{{Replicas: 1, Pause: 5 * time.Minute}, {Percent: 100}}
	an := &spec.Analysis{Interval: time.Minute, FailureLimit: 3, Metrics: []spec.AnalysisMetric{
		{Name: "err", Max: fptr(1)}, {Name: "lat", MaxRatioToStable: fptr(2)}, {Name: "rps", Min: fptr(1)},
	}}
	view := RolloutView{Phase: PhaseProgressing, Step: 1, Steps: 2, Ready: true, Canary: "aaaaaaaa", Stable: "bbbbbbbb"}
	start := t0.Add(-6 * time.Minute)
	full := func() []MetricData {
		return []MetricData{
			{Canary: at(start, repeat(0.5, 7)...)},
			{Canary: at(start, repeat(1, 7)...), Stable: at(start, repeat(1, 7)...)},
			{Canary: at(start, repeat(5, 7)...)},
		}
	}
	if a := DecideRollout(RolloutInput{Steps: steps, Analysis: an, View: view, StepStart: start, Now: t0, Metrics: full()}); a.Decision != RolloutPromote {
		t.Fatalf("full data: %s %s", a.Decision, a.Reason)
	}
	// The pause [t0-5m, t0] holds 6 samples at a 1m interval and takes
	// floor(5m/1m) = 5: drop two neighbours of each series in turn, then
	// each series whole.
	for m := range 3 {
		for _, stable := range []bool{false, true} {
			if stable && m != 1 {
				continue
			}
			for drop := -1; drop < 7; drop++ {
				d := full()
				s := &d[m].Canary
				if stable {
					s = &d[m].Stable
				}
				if drop < 0 {
					*s = nil
					if stable {
						d[m].StableErr = ErrNoData
					} else {
						d[m].CanaryErr = ErrNoData
					}
				} else if drop >= 1 && drop < 6 { // the first sample is before the pause window
					*s = append(append([]Sample(nil), (*s)[:drop]...), (*s)[drop+2:]...)
				} else {
					continue
				}
				a := DecideRollout(RolloutInput{Steps: steps, Analysis: an, View: view, StepStart: start, Now: t0, Metrics: d})
				if a.Decision != RolloutPause {
					t.Errorf("metric %d (stable %v) without sample %d: %s %q, want a pause", m, stable, drop, a.Decision, a.Reason)
				}
			}
		}
	}
	// And too short a step is never a pass either, however good.
	if a := DecideRollout(RolloutInput{Steps: steps, Analysis: an, View: view, StepStart: t0.Add(-4 * time.Minute), Now: t0, Metrics: full()}); a.Decision == RolloutPromote {
		t.Errorf("4m into a 5m pause: %s", a.Reason)
	}
}

func TestDecideRolloutMetrics(t *testing.T) {
	steps := []spec.RolloutStep{{Replicas: 1, Pause: 2 * time.Minute}, {Percent: 100}}
	an := &spec.Analysis{Metrics: []spec.AnalysisMetric{{Name: "lat", Min: fptr(0.5), Max: fptr(3), MaxRatioToStable: fptr(1.5)}}}
	start := t0.Add(-3 * time.Minute)
	a := DecideRollout(RolloutInput{Steps: steps, Analysis: an, Now: t0, StepStart: start,
		View:    RolloutView{Phase: PhaseProgressing, Step: 1, Steps: 2, Ready: true},
		Metrics: []MetricData{{Canary: at(start, 1, 1, 1, 2.5), Stable: at(start, 1, 1, 1, 2)}}})
	// Defaults: a 1m interval, failure_limit 1; the pause takes 2 samples.
	if a.Interval != time.Minute || a.FailureLimit != 1 {
		t.Errorf("defaults: interval %s, failure limit %d", a.Interval, a.FailureLimit)
	}
	m := a.Metrics[0]
	if m.Bound != ">= 0.5, <= 3, <= 1.5 × stable" || *m.Canary != 2.5 || *m.Stable != 2 || !m.Pass || m.Samples != 3 || m.Needed != 2 {
		t.Errorf("metric %+v", m)
	}
	if a.Decision != RolloutPromote {
		t.Errorf("%s %s", a.Decision, a.Reason)
	}
	if r := Ratio(1, 0); !math.IsInf(r, 1) {
		t.Errorf("Ratio(1, 0) = %g", r)
	}
	// Below the minimum: one failure aborts at the default limit.
	a = DecideRollout(RolloutInput{Steps: steps, Analysis: an, Now: t0, StepStart: start,
		View:    RolloutView{Phase: PhaseProgressing, Step: 1, Steps: 2, Ready: true},
		Metrics: []MetricData{{Canary: at(start, 1, 0.1, 1, 1), Stable: at(start, 1, 1, 1, 1)}}})
	if a.Decision != RolloutAbort || len(a.Metrics[0].Failed) != 1 || a.Metrics[0].Failed[0].Canary != 0.1 {
		t.Errorf("below min: %s %q %+v", a.Decision, a.Reason, a.Metrics[0].Failed)
	}
}

func TestRolloutMessages(t *testing.T) {
	a := &RolloutAnalysis{Step: 1, Steps: 3, Pause: 10 * time.Minute, Interval: time.Minute, WindowStart: t0.Add(-10 * time.Minute), WindowEnd: t0,
		Failures: 2, FailureLimit: 2,
		Metrics: []MetricResult{{Name: "error_ratio", Bound: "<= 0.01", Canary: fptr(0.004), Stable: fptr(0.005), Samples: 11, Needed: 10,
			Failed: []Evaluation{{Time: t0, Canary: 0.2}}}}}
	promote := Decision{Release: "chat", Kind: KindPromote, Version: "3f2a1c9d", From: 1, To: 2, Analysis: a}.Message()
	for _, want := range []string{"chat: promote 3f2a1c9d step 1 → 2\n\n", "10m0s pause", "window 2025-01-01T11:50:00Z to 2025-01-01T12:00:00Z, one evaluation every 1m0s",
		"error_ratio: canary 0.004, stable 0.005, bound <= 0.01 (11 of 10 samples)", "step 2 of 3"} {
		if !strings.Contains(promote, want) {
			t.Errorf("promote message lacks %q:\n%s", want, promote)
		}
	}
	abort := Decision{Release: "chat", Kind: KindAbort, Version: "3f2a1c9d", From: 1, To: 1, Analysis: a,
		Rollout: &Rollout{Revision: "bbbbbbbbbbbbbbbb", Previous: "aaaaaaaaaaaaaaaa"}}.Message()
	for _, want := range []string{"chat: abort rollout of 3f2a1c9d at step 1\n\n", "2 failed evaluations this step reach the failure_limit of 2",
		"error_ratio at 2025-01-01T12:00:00Z: canary 0.2, bound <= 0.01", "as they were\nat aaaaaaaaaaaa, before bbbbbbbbbbbb started the rollout"} {
		if !strings.Contains(abort, want) {
			t.Errorf("abort message lacks %q:\n%s", want, abort)
		}
	}
	plain := Decision{Release: "chat", Kind: KindPromote, Version: "3f2a1c9d", From: 1, To: 2, Analysis: &RolloutAnalysis{Pause: time.Minute}}.Message()
	if !strings.Contains(plain, "1m0s pause is over") || !strings.Contains(plain, "no analysis block") {
		t.Errorf("promote without analysis:\n%s", plain)
	}
}

func TestPodsRegex(t *testing.T) {
	if got := PodsRegex([]string{"chat-gpu-a1-3f2a1c9d", "chat.x"}); got != `(?:chat-gpu-a1-3f2a1c9d|chat\.x)-[a-z0-9]+-[a-z0-9]+` {
		t.Errorf("PodsRegex = %s", got)
	}
	v := VersionVars("llm", "chat", "3f2a1c9d", []string{"chat-a-3f2a1c9d"})
	q, err := Render(`sum(x{namespace="{{.Namespace}}",pod=~"{{.Pods}}",version="{{.Version}}",release="{{.Release}}"})`, v)
	if err != nil || q != `sum(x{namespace="llm",pod=~"(?:chat-a-3f2a1c9d)-[a-z0-9]+-[a-z0-9]+",version="3f2a1c9d",release="chat"})` {
		t.Errorf("Render = %s, %v", q, err)
	}
}

// fakeMetrics answers range queries from a function of the query.
type fakeMetrics struct {
	queries []string
	rng     func(q string, start, end time.Time, step time.Duration) ([]Sample, error)
}

func (f *fakeMetrics) Query(ctx context.Context, q string, t time.Time) (float64, error) {
	s, err := f.Range(ctx, q, t, t, time.Second)
	if err != nil {
		return 0, err
	}
	return s[len(s)-1].Value, nil
}

func (f *fakeMetrics) Range(_ context.Context, q string, start, end time.Time, step time.Duration) ([]Sample, error) {
	f.queries = append(f.queries, q)
	return f.rng(q, start, end, step)
}

// Monitor.Decide on rollouts: the views, the precedence over the rollback
// block, one decision per release, and Git having moved.
func TestMonitorRollouts(t *testing.T) {
	now := t0
	release := spec.Release{Name: "chat",
		Rollback:  &spec.Rollback{Query: "rb", Threshold: 0.05, Window: time.Hour},
		Autoscale: &spec.Autoscale{Query: "load", Target: 1, Min: 1, Max: 10},
		Rollout: &spec.Rollout{
			Steps: []spec.RolloutStep{{Replicas: 1, Pause: 2 * time.Minute}, {Percent: 100}},
			Analysis: &spec.Analysis{Interval: time.Minute, Metrics: []spec.AnalysisMetric{
				{Name: "errors", Query: `sum(e{pod=~"{{.Pods}}",v="{{.Version}}"})`, Max: fptr(1)},
			}},
		}}
	release.Replicas = new(int)
	*release.Replicas = 3
	cfg := &spec.Config{Revision: "head", Settings: spec.Settings{Namespace: "llm"}, Releases: []spec.Release{release}}
	view := RolloutView{Revision: "head", Phase: PhaseProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb", Step: 1, Steps: 2,
		CanaryShards: []string{"chat-a-3f2a1c9d"}, StableShards: []string{"chat-a-00aa11bb"}, Ready: true}
	errorsOK := func(q string, start, end time.Time, step time.Duration) ([]Sample, error) {
		if q == "load" || q == "rb" {
			return []Sample{{Time: end, Value: 9}}, nil // scale up; above the rollback threshold
		}
		var s []Sample
		for at := start; !at.After(end); at = at.Add(step) {
			s = append(s, Sample{Time: at, Value: 0.5})
		}
		return s, nil
	}
	hist := fakeHistory{start: StepStart{Revision: "s", Time: now.Add(-3 * time.Minute)},
		rollout: &Rollout{Revision: "b", Previous: "a", Time: now.Add(-3 * time.Minute)}}

	t.Run("gantry adjust: not observed", func(t *testing.T) {
		m := &Monitor{Metrics: &fakeMetrics{rng: errorsOK}, Now: func() time.Time { return now }}
		rep := m.Decide(context.Background(), cfg, hist)
		if rep.Releases[0].Kind != KindRollout || rep.Releases[0].Reason != NotObserved || len(rep.Rollouts) != 0 {
			t.Errorf("report %+v", rep.Releases)
		}
		// The rollback block decides as it always did; scaling waits for it.
		if len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindRollback {
			t.Errorf("decisions %+v", rep.Decisions)
		}
	})

	t.Run("promote first, no rollback, no scaling", func(t *testing.T) {
		f := &fakeMetrics{rng: errorsOK}
		m := &Monitor{Metrics: f, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view}}
		rep := m.Decide(context.Background(), cfg, hist)
		if len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindPromote || rep.Decisions[0].To != 2 {
			t.Fatalf("decisions %+v; report %+v", rep.Decisions, rep.Releases)
		}
		if len(rep.Releases) != 1 {
			t.Errorf("report lines %+v: the rollback and the autoscale wait for the next round", rep.Releases)
		}
		want := []string{`sum(e{pod=~"(?:chat-a-3f2a1c9d)-[a-z0-9]+-[a-z0-9]+",v="3f2a1c9d"})`, `sum(e{pod=~"(?:chat-a-00aa11bb)-[a-z0-9]+-[a-z0-9]+",v="00aa11bb"})`}
		if strings.Join(f.queries, "\n") != strings.Join(want, "\n") {
			t.Errorf("queries:\n%s", strings.Join(f.queries, "\n"))
		}
	})

	t.Run("a hold leaves the rollback out and lets autoscale act", func(t *testing.T) {
		h := hist
		h.start.Time = now.Add(-time.Minute) // 1m into a 2m pause
		m := &Monitor{Metrics: &fakeMetrics{rng: errorsOK}, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view}}
		rep := m.Decide(context.Background(), cfg, h)
		if len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindScale {
			t.Errorf("decisions %+v", rep.Decisions)
		}
		if len(rep.Releases) != 3 || !strings.Contains(rep.Releases[1].Reason, "a rollout is in progress") || !strings.HasPrefix(rep.Releases[0].Reason, "hold: ") {
			t.Errorf("report %+v", rep.Releases)
		}
	})

	t.Run("sharded", func(t *testing.T) {
		other := release
		other.Name, other.Rollout = "plain", nil
		c := *cfg
		c.Releases = []spec.Release{release, other}
		theirs := func(string) bool { return false }
		// Shard 0, not owning chat: its rollout is left to its shard;
		// rollback and autoscale decide as in gantry adjust.
		m := &Monitor{Metrics: &fakeMetrics{rng: errorsOK}, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{}, Owns: theirs}
		rep := m.Decide(context.Background(), &c, hist)
		if !strings.Contains(rep.Releases[0].Reason, "decided by the shard that reconciles the release") || len(rep.Decisions) != 2 || rep.Decisions[0].Kind != KindRollback {
			t.Errorf("shard 0: decisions %+v, report %+v", rep.Decisions, rep.Releases)
		}
		// Another shard owning chat decides its rollout and nothing else.
		m = &Monitor{Metrics: &fakeMetrics{rng: errorsOK}, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view},
			Owns: func(r string) bool { return true }, RolloutsOnly: true}
		rep = m.Decide(context.Background(), &c, hist)
		if len(rep.Releases) != 1 || len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindPromote {
			t.Errorf("rollouts only: decisions %+v, report %+v", rep.Decisions, rep.Releases)
		}
		// Not owning it: nothing at all.
		m.Owns = theirs
		if rep = m.Decide(context.Background(), &c, hist); len(rep.Releases) != 0 {
			t.Errorf("rollouts only, not ours: %+v", rep.Releases)
		}
	})

	t.Run("git moved since the daemon observed", func(t *testing.T) {
		h := hist
		h.start.Moved = true
		m := &Monitor{Metrics: &fakeMetrics{rng: errorsOK}, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view}}
		rep := m.Decide(context.Background(), cfg, h)
		for _, d := range rep.Decisions {
			if d.Kind == KindPromote || d.Kind == KindAbort {
				t.Errorf("decided %+v", d)
			}
		}
		if !strings.Contains(rep.Releases[0].Reason, "Git changed the rollout") {
			t.Errorf("report %+v", rep.Releases[0])
		}
	})

	t.Run("abort needs a revision to restore", func(t *testing.T) {
		bad := func(q string, start, end time.Time, step time.Duration) ([]Sample, error) {
			return []Sample{{Time: end, Value: 5}}, nil
		}
		m := &Monitor{Metrics: &fakeMetrics{rng: bad}, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view}}
		rep := m.Decide(context.Background(), cfg, hist)
		if len(rep.Decisions) != 1 || rep.Decisions[0].Kind != KindAbort || rep.Decisions[0].Rollout.Previous != "a" {
			t.Errorf("decisions %+v", rep.Decisions)
		}
		h := hist
		h.rollout = &Rollout{Revision: "b"}
		rep = m.Decide(context.Background(), cfg, h)
		for _, d := range rep.Decisions {
			if d.Kind == KindAbort {
				t.Errorf("aborted with nothing to restore: %+v", d)
			}
		}
		if !strings.Contains(rep.Releases[0].Reason, "no earlier revision") {
			t.Errorf("decisions %+v, report %+v", rep.Decisions, rep.Releases)
		}
	})

	t.Run("prometheus down once: the round stops asking", func(t *testing.T) {
		f := &fakeMetrics{rng: func(string, time.Time, time.Time, time.Duration) ([]Sample, error) {
			return nil, fmt.Errorf("%w: connection refused", ErrUnavailable)
		}}
		c := *cfg
		c.Releases = []spec.Release{release}
		c.Releases[0].Rollback, c.Releases[0].Autoscale = nil, nil
		c.Releases[0].Rollout.Analysis.Metrics = append(c.Releases[0].Rollout.Analysis.Metrics, spec.AnalysisMetric{Name: "more", Query: "m", Max: fptr(1)})
		m := &Monitor{Metrics: f, Now: func() time.Time { return now }, Rollouts: map[string]RolloutView{"chat": view}}
		rep := m.Decide(context.Background(), &c, hist)
		if len(f.queries) != 1 || rep.Unavailable == "" || rep.Rollouts[0].Decision != RolloutPause {
			t.Errorf("%d queries, unavailable %q, %+v", len(f.queries), rep.Unavailable, rep.Rollouts)
		}
	})
}

// TestDecideRolloutWaves: in a fleet with waves, the last step of a wave
// that has a next one is analysed like any other step, and its promotion
// goes to the next wave; the last step of the last wave completes as
// today.
func TestDecideRolloutWaves(t *testing.T) {
	steps := []spec.RolloutStep{{Replicas: 1, Pause: 10 * time.Minute}, {Percent: 100, Pause: 10 * time.Minute}}
	analysis := &spec.Analysis{Interval: time.Minute, FailureLimit: 2, Metrics: []spec.AnalysisMetric{
		{Name: "error_ratio", Query: "e", Max: fptr(0.01)},
	}}
	start := t0.Add(-12 * time.Minute)
	good := []MetricData{{Canary: at(start, repeat(0.004, 13)...)}}
	bad := []MetricData{{Canary: at(start, repeat(0.5, 13)...)}}
	wave1End := RolloutView{Phase: PhaseProgressing, Canary: "3f2a1c9d", Stable: "00aa11bb", Step: 2, Steps: 2, Ready: true, Wave: 1, Waves: 3}
	lastWave := wave1End
	lastWave.Wave = 3

	a := DecideRollout(RolloutInput{Steps: steps, Analysis: analysis, View: wave1End, StepStart: start, Now: t0, Metrics: good})
	if a.Decision != RolloutPromote || !strings.Contains(a.Reason, "promote to wave 2") {
		t.Errorf("end of wave 1, good data: %s: %s", a.Decision, a.Reason)
	}
	a = DecideRollout(RolloutInput{Steps: steps, Analysis: analysis, View: wave1End, StepStart: start, Now: t0, Metrics: bad})
	if a.Decision != RolloutAbort {
		t.Errorf("end of wave 1, bad data: %s: %s", a.Decision, a.Reason)
	}
	a = DecideRollout(RolloutInput{Steps: steps, Analysis: analysis, View: wave1End, StepStart: start, Now: t0, Metrics: []MetricData{{CanaryErr: ErrNoData}}})
	if a.Decision != RolloutPause {
		t.Errorf("end of wave 1, no data: %s: %s", a.Decision, a.Reason)
	}
	a = DecideRollout(RolloutInput{Steps: steps, Analysis: analysis, View: lastWave, StepStart: start, Now: t0, Metrics: good})
	if a.Decision != "" || !strings.Contains(a.Reason, "is the last") {
		t.Errorf("end of the last wave: %q: %s", a.Decision, a.Reason)
	}
	manual := wave1End
	manualSteps := []spec.RolloutStep{{Replicas: 1, Pause: 10 * time.Minute}, {Percent: 100}}
	a = DecideRollout(RolloutInput{Steps: manualSteps, View: manual, StepStart: start, Now: t0})
	if a.Decision != RolloutHold || !strings.Contains(a.Reason, "set wave = 2, step = 1") {
		t.Errorf("end of wave 1 without a pause: %s: %s", a.Decision, a.Reason)
	}
}
