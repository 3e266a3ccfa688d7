package monitor

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Adjustment kinds of progressive delivery, as the Gantry-Adjustment
// trailer names them.
const (
	// KindPromote moves a rollout's position to the next step.
	KindPromote = "promote"
	// KindAbort restores the release's model, runtime and quantize blocks
	// as they were before the rollout, like a rollback.
	KindAbort = "abort"
	// KindRollout is the report line of a release with a rollout block.
	KindRollout = "rollout"
)

// Rollout analysis outcomes (RolloutAnalysis.Decision).
const (
	RolloutPromote = "promote"
	// RolloutAbort: failure_limit evaluations of the step failed.
	RolloutAbort = "abort"
	// RolloutHold: the data is there and within bounds (or not yet
	// enough failures), but the step is not done: its replicas are not
	// all available, its pause is not over, or a person promotes it.
	RolloutHold = "hold"
	// RolloutPause: data is missing. No data is never a pass.
	RolloutPause = "pause"
)

// Rollout phases, as the planner names them.
const (
	PhaseProgressing = "progressing"
	PhaseRestoring   = "restoring"
	PhaseComplete    = "complete"
)

// RolloutView is what the daemon observed of one release's rollout: the
// planner's rollout state after a reconcile. cmd/gantry converts it from
// the engine's status; the monitor does not import the planner.
type RolloutView struct {
	// Revision is the Git commit the view was observed at. A decision is
	// made only while Git has not moved the release's rollout since.
	Revision string
	Phase    string
	// Canary is the release's version now, Stable the one it replaces
	// ("" when none serves).
	Canary, Stable string
	// Step is the step applied now (1-based) of Steps.
	Step, Steps int
	// CanaryShards and StableShards are the Deployments of each version.
	CanaryShards, StableShards []string
	// Ready: the step is fully in place (every canary replica available,
	// the stable version down to its share).
	Ready bool
	// Wave is the wave the rollout is in (1-based) of Waves, in a fleet
	// with waves (0 without). The last step of a wave that is not the
	// last is analysed like any other; its promotion starts the next wave.
	Wave, Waves int
}

// waveEnd reports whether the view is at the last step of a wave that
// has a next one: promoting it starts that wave, at step 1.
func (v RolloutView) waveEnd() bool { return v.Waves > 0 && v.Wave < v.Waves && v.Step == v.Steps }

// MetricData is one analysis metric's samples over the step, at the
// analysis interval, for the canary and the stable version. An error says
// why a series is missing (ErrUnavailable, ErrNoData, ...).
type MetricData struct {
	Canary, Stable       []Sample
	CanaryErr, StableErr error
}

// RolloutInput is everything a rollout decision depends on.
type RolloutInput struct {
	Steps []spec.RolloutStep
	// Analysis is nil when the rollout has no analysis block: a step is
	// promoted when its pause is over and it is Ready.
	Analysis *spec.Analysis
	View     RolloutView
	// StepStart is when the step began: the committer time of the newest
	// commit that changed the rollout's position or the release's
	// model, runtime or quantize blocks.
	StepStart time.Time
	Now       time.Time
	// Metrics are Analysis.Metrics' data, in the same order.
	Metrics []MetricData
}

// Evaluation is one metric at one time of the analysis.
type Evaluation struct {
	Time   time.Time
	Canary float64
	// Stable is the stable version's value at the same time (nil: none).
	Stable *float64
	// Ratio is Canary/Stable when the metric has max_ratio_to_stable.
	Ratio *float64
}

// MetricResult is one metric of an analysis.
type MetricResult struct {
	Name string
	// Bound is the bound in words: "<= 0.01", "<= 1.2 × stable".
	Bound string
	// Canary and Stable are the latest values (nil: no data).
	Canary, Stable *float64
	// Pass: the latest evaluation was within the bound.
	Pass bool
	// Samples are the evaluations with data in the pause window so far;
	// Needed how many the pause takes (floor(pause / interval)).
	Samples, Needed int
	// Failed are the step's out-of-bounds evaluations, oldest first.
	Failed []Evaluation
	// Missing says why data is missing ("" when it is all there).
	Missing string
	// CanarySeries and StableSeries are the last hour, for the chart
	// (filled by Monitor.Decide, not by DecideRollout).
	CanarySeries, StableSeries []Sample
}

// RolloutAnalysis is the outcome of one look at a rollout.
type RolloutAnalysis struct {
	Release string
	Time    time.Time
	// Decision is RolloutPromote, RolloutAbort, RolloutHold, RolloutPause,
	// or "" when there is nothing to decide (the last step, a rollout
	// restoring or complete).
	Decision string
	Reason   string
	// Step is the step decided on, of Steps; a promotion goes to Step+1.
	Step, Steps int
	Version     string
	// Failures counts the failed evaluations of the step (an evaluation
	// fails when any metric is out of bounds at that time), against
	// FailureLimit.
	Failures, FailureLimit int
	Pause, Interval        time.Duration
	// WindowStart and WindowEnd are the span the analysis looked at.
	WindowStart, WindowEnd time.Time
	Metrics                []MetricResult
}

// analysisInterval is an's interval, spec.DefaultAnalysisInterval when
// unset (spec.Load sets it; a literal Analysis may not).
func analysisInterval(an *spec.Analysis) time.Duration {
	if an.Interval <= 0 {
		return spec.DefaultAnalysisInterval
	}
	return an.Interval
}

// DecideRollout decides a rollout step. It is a pure function: same input,
// same decision.
//
// No data is not a pass: a missing series, Prometheus unreachable or too
// few samples pause the rollout; they never promote it. A promotion needs
// the step Ready, its pause over, and every metric within its bounds at
// every evaluation of the last pause, with at least floor(pause/interval)
// evaluations. failure_limit failed evaluations within the step abort it,
// Ready or not.
func DecideRollout(in RolloutInput) RolloutAnalysis {
	v := in.View
	a := RolloutAnalysis{Time: in.Now, Step: v.Step, Steps: len(in.Steps), Version: v.Canary,
		WindowStart: in.StepStart, WindowEnd: in.Now}
	switch {
	case v.Phase == PhaseRestoring:
		a.Reason = "the rollout is restoring the stable version: nothing to analyse"
		return a
	case v.Phase == PhaseComplete:
		a.Reason = "the rollout is complete"
		return a
	case v.Step < 1 || v.Step > len(in.Steps):
		a.Reason = fmt.Sprintf("step %d is not one of the %d steps", v.Step, len(in.Steps))
		return a
	case v.Step == len(in.Steps) && !v.waveEnd():
		a.Reason = fmt.Sprintf("step %d is the last: the rollout completes when its replicas serve", v.Step)
		return a
	}
	step := in.Steps[v.Step-1]
	a.Pause = step.Pause
	elapsed := in.Now.Sub(in.StepStart)
	pauseEnds := in.StepStart.Add(step.Pause)
	manual := fmt.Sprintf("waiting for a person to promote: set step = %d, version = %q", v.Step+1, v.Canary)
	next := fmt.Sprintf("step %d", v.Step+1)
	if v.waveEnd() {
		manual = fmt.Sprintf("waiting for a person to start the next wave: set wave = %d, step = 1, version = %q", v.Wave+1, v.Canary)
		next = fmt.Sprintf("wave %d", v.Wave+1)
	}
	notReady := "waiting for the step's replicas to become available"

	if in.Analysis == nil {
		switch {
		case !v.Ready:
			a.Decision, a.Reason = RolloutHold, notReady
		case step.Pause == 0:
			a.Decision, a.Reason = RolloutHold, manual
		case elapsed < step.Pause:
			a.Decision, a.Reason = RolloutHold, fmt.Sprintf("the %s pause ends at %s (%s left)", step.Pause, stamp(pauseEnds), (step.Pause-elapsed).Round(time.Second))
		default:
			a.Decision, a.Reason = RolloutPromote, fmt.Sprintf("the %s pause is over and the step's replicas are available (no analysis); promote to %s", step.Pause, next)
		}
		return a
	}

	an := in.Analysis
	a.Interval = analysisInterval(an)
	a.FailureLimit = an.FailureLimit
	if a.FailureLimit <= 0 {
		a.FailureLimit = spec.DefaultFailureLimit
	}
	needed := 0
	if step.Pause > 0 {
		needed = max(int(step.Pause/a.Interval), 1)
	}
	winFrom := in.Now.Add(-step.Pause)

	failedAt := map[int64]bool{}
	var unavailable, missing []string
	// Per metric: evaluations with data in the window, and whether one
	// of them failed.
	type window struct {
		count  int
		failed *Evaluation
		any    bool // any evaluation with data within the step
	}
	wins := make([]window, len(an.Metrics))
	for i, m := range an.Metrics {
		var d MetricData
		if i < len(in.Metrics) {
			d = in.Metrics[i]
		}
		res := MetricResult{Name: m.Name, Bound: Bound(m), Needed: needed}
		ratio := m.MaxRatioToStable != nil
		noteErr := func(which string, err error) {
			msg := fmt.Sprintf("%s: the %s query: %v", m.Name, which, err)
			if errors.Is(err, ErrUnavailable) {
				unavailable = append(unavailable, msg)
			} else {
				missing = append(missing, msg)
			}
			if res.Missing == "" {
				res.Missing = msg
			}
		}
		if d.CanaryErr != nil {
			noteErr("canary", d.CanaryErr)
		}
		if ratio && d.StableErr != nil {
			noteErr("stable", d.StableErr)
		}
		stable := make(map[int64]float64, len(d.Stable))
		for _, s := range d.Stable {
			stable[s.Time.UnixMilli()] = s.Value
		}
		inStep := 0
		for _, s := range d.Canary {
			if s.Time.Before(in.StepStart) || s.Time.After(in.Now) {
				continue
			}
			inStep++
			ev := Evaluation{Time: s.Time, Canary: s.Value}
			if sv, ok := stable[s.Time.UnixMilli()]; ok {
				ev.Stable = &sv
			}
			ok, complete := check(m, &ev)
			res.Canary, res.Stable = &ev.Canary, ev.Stable // the latest
			res.Pass = ok && complete
			if !ok {
				failedAt[s.Time.UnixMilli()] = true
				res.Failed = append(res.Failed, ev)
			}
			if ok && !complete {
				continue // a missing stable point is missing data
			}
			wins[i].any = true
			if !s.Time.Before(winFrom) {
				wins[i].count++
				if !ok && wins[i].failed == nil {
					e := ev
					wins[i].failed = &e
				}
			}
		}
		if res.Missing == "" && !wins[i].any {
			why := "no canary samples since the step started"
			if inStep > 0 {
				why = "no stable samples at the times of the canary's since the step started"
			}
			res.Missing = m.Name + ": " + why
			missing = append(missing, res.Missing)
		}
		res.Samples = wins[i].count
		a.Metrics = append(a.Metrics, res)
	}
	a.Failures = len(failedAt)
	failures := fmt.Sprintf("%d of %d failed evaluations", a.Failures, a.FailureLimit)

	if a.Failures >= a.FailureLimit {
		a.Decision = RolloutAbort
		a.Reason = fmt.Sprintf("%s this step: %s", failures, failedList(a.Metrics, 3))
		return a
	}
	if len(unavailable) > 0 {
		a.Decision, a.Reason = RolloutPause, "no data, not a pass: "+strings.Join(unavailable, "; ")
		return a
	}
	if !v.Ready {
		a.Decision, a.Reason = RolloutHold, notReady+" ("+failures+")"
		return a
	}
	if len(missing) > 0 {
		a.Decision, a.Reason = RolloutPause, "no data, not a pass: "+strings.Join(missing, "; ")
		return a
	}
	if step.Pause == 0 {
		a.Decision, a.Reason = RolloutHold, manual+" ("+failures+")"
		return a
	}
	if elapsed < step.Pause {
		a.Decision = RolloutHold
		a.Reason = fmt.Sprintf("the %s pause ends at %s (%s left); %s", step.Pause, stamp(pauseEnds), (step.Pause - elapsed).Round(time.Second), failures)
		return a
	}
	a.WindowStart = winFrom
	for i, w := range wins {
		m := an.Metrics[i]
		if w.failed != nil {
			a.Decision = RolloutHold
			a.Reason = fmt.Sprintf("%s was out of bounds at %s (%s, bound %s) within the last %s; every evaluation of the pause must pass (%s)",
				m.Name, stamp(w.failed.Time), evalText(*w.failed), Bound(m), step.Pause, failures)
			return a
		}
	}
	for i, w := range wins {
		if w.count < needed {
			a.Decision = RolloutPause
			a.Reason = fmt.Sprintf("no data, not a pass: %s has %d of the %d samples the %s pause takes at a %s interval",
				an.Metrics[i].Name, w.count, needed, step.Pause, a.Interval)
			return a
		}
	}
	a.Decision = RolloutPromote
	a.Reason = fmt.Sprintf("every metric was within bounds for the whole %s pause (%d evaluations each at a %s interval); promote to %s",
		step.Pause, needed, a.Interval, next)
	return a
}

// check evaluates a metric's bounds on ev, setting ev.Ratio. ok is false
// when a bound that could be checked failed; complete is false when a
// bound could not be checked (no stable value at that time).
func check(m spec.AnalysisMetric, ev *Evaluation) (ok, complete bool) {
	ok, complete = true, true
	if m.Min != nil && !(ev.Canary >= *m.Min) {
		ok = false
	}
	if m.Max != nil && !(ev.Canary <= *m.Max) {
		ok = false
	}
	if m.MaxRatioToStable != nil {
		if ev.Stable == nil {
			complete = false
		} else {
			r := Ratio(ev.Canary, *ev.Stable)
			ev.Ratio = &r
			if !(r <= *m.MaxRatioToStable) {
				ok = false
			}
		}
	}
	return ok, complete
}

// Ratio is canary / stable; a stable value of 0 makes it +Inf, unless the
// canary is 0 too (then 1: both are equally good).
func Ratio(canary, stable float64) float64 {
	if stable == 0 {
		if canary == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return canary / stable
}

// Bound is a metric's bounds in words.
func Bound(m spec.AnalysisMetric) string {
	var parts []string
	if m.Min != nil {
		parts = append(parts, ">= "+num(*m.Min))
	}
	if m.Max != nil {
		parts = append(parts, "<= "+num(*m.Max))
	}
	if m.MaxRatioToStable != nil {
		parts = append(parts, "<= "+num(*m.MaxRatioToStable)+" × stable")
	}
	return strings.Join(parts, ", ")
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func evalText(e Evaluation) string {
	s := "canary " + num(e.Canary)
	if e.Stable != nil {
		s += ", stable " + num(*e.Stable)
	}
	if e.Ratio != nil {
		s += ", ratio " + strconv.FormatFloat(*e.Ratio, 'f', 3, 64)
	}
	return s
}

// failedList names up to n failed evaluations, newest first.
func failedList(ms []MetricResult, n int) string {
	type f struct {
		name, bound string
		e           Evaluation
	}
	var all []f
	for _, m := range ms {
		for _, e := range m.Failed {
			all = append(all, f{m.Name, m.Bound, e})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].e.Time.After(all[j].e.Time) })
	var out []string
	for i, x := range all {
		if i == n {
			out = append(out, fmt.Sprintf("and %d more", len(all)-n))
			break
		}
		out = append(out, fmt.Sprintf("%s at %s: %s, bound %s", x.name, stamp(x.e.Time), evalText(x.e), x.bound))
	}
	return strings.Join(out, "; ")
}
