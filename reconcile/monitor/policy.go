package monitor

import (
	"fmt"
	"math"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Policy is how one release autoscales. The defaults follow the
// Kubernetes HPA: a ±10% tolerance, no scale-up stabilization, a 5m
// scale-down stabilization window, and at most max(4, current) replicas
// added or removed at once.
type Policy struct {
	// Target is the query value one replica should carry.
	Target float64
	// Min and Max bound the replicas.
	Min, Max int
	// Tolerance is the band around the target, as a fraction of the
	// current capacity (current × Target), inside which nothing changes.
	Tolerance float64
	// ScaleUpWindow: scale up only to the lowest count recommended
	// during the window (0: the latest recommendation).
	ScaleUpWindow time.Duration
	// ScaleDownWindow: scale down only to the highest count recommended
	// during the window, so that a dip does not shed replicas.
	ScaleDownWindow time.Duration
	// Cooldown is the quiet time after the last change of replicas.
	Cooldown time.Duration
	// MaxStep caps one change; 0 means max(4, current).
	MaxStep int
}

// PolicyFor reads a release's autoscale block (validated by spec.Load,
// which fills the defaults).
func PolicyFor(a *spec.Autoscale) Policy {
	return Policy{
		Target: a.Target, Min: a.Min, Max: a.Max, Tolerance: a.ToleranceOrDefault(),
		ScaleUpWindow: a.ScaleUpWindow, ScaleDownWindow: a.ScaleDownWindow,
		Cooldown: a.Cooldown, MaxStep: a.MaxStep,
	}
}

// Window is the longest span of samples Decide looks at.
func (p Policy) Window() time.Duration { return max(p.ScaleUpWindow, p.ScaleDownWindow) }

// Sample is one value of a query at one time.
type Sample struct {
	Time  time.Time
	Value float64
}

// ScaleInput is everything an autoscaling decision depends on.
type ScaleInput struct {
	// Current is the replicas in Git now.
	Current int
	// Samples are the query's values, oldest first, the last one being
	// now; they should reach back Policy.Window().
	Samples []Sample
	// LastChange is when the replicas last changed in Git (zero: not
	// within the history looked at).
	LastChange time.Time
	Now        time.Time
}

// ScaleDecision is the outcome; Change is false when To == From.
type ScaleDecision struct {
	From, To int
	// Value is the latest sample; Desired is ceil(Value/Target) clamped
	// to [Min, Max], before stabilization, cooldown and the step cap.
	Value   float64
	Desired int
	Change  bool
	Reason  string
}

// Decide computes the replicas for the input. It is a pure function:
// same input, same decision.
func (p Policy) Decide(in ScaleInput) ScaleDecision {
	d := ScaleDecision{From: in.Current, To: in.Current}
	if len(in.Samples) == 0 {
		d.Reason = "the query returned no data"
		return d
	}
	d.Value = in.Samples[len(in.Samples)-1].Value
	rec := func(v float64) int {
		if p.Target <= 0 || math.IsNaN(v) {
			return in.Current
		}
		return min(max(int(math.Ceil(v/p.Target)), p.Min), p.Max)
	}
	d.Desired = rec(d.Value)
	cur := in.Current
	if cur < p.Min || cur > p.Max {
		// The specs are outside the range: correct them at once.
		d.To = min(max(cur, p.Min), p.Max)
		d.Change = true
		d.Reason = fmt.Sprintf("replicas %d are outside [%d, %d]", cur, p.Min, p.Max)
		return d
	}
	if cur > 0 {
		ratio := d.Value / (float64(cur) * p.Target)
		if math.Abs(ratio-1) <= p.Tolerance {
			d.Reason = fmt.Sprintf("%g is %.0f%% of the target for %d replicas (%g), within ±%.0f%%", d.Value, ratio*100, cur, float64(cur)*p.Target, p.Tolerance*100)
			return d
		}
	}
	if d.Desired == cur {
		d.Reason = fmt.Sprintf("%g needs %d replicas at %g each, as now", d.Value, cur, p.Target)
		return d
	}
	want := d.Desired
	up := want > cur
	window := p.ScaleDownWindow
	if up {
		window = p.ScaleUpWindow
	}
	if window > 0 {
		from := in.Now.Add(-window)
		if in.Samples[0].Time.After(from.Add(window / 10)) {
			d.Reason = fmt.Sprintf("%d samples reach back %s, less than the %s window", len(in.Samples), in.Now.Sub(in.Samples[0].Time).Round(time.Second), window)
			return d
		}
		for _, s := range in.Samples {
			if s.Time.Before(from) {
				continue
			}
			if r := rec(s.Value); up {
				want = min(want, r)
			} else {
				want = max(want, r)
			}
		}
		if up && want <= cur {
			d.Reason = fmt.Sprintf("scale-up stabilizing: the lowest recommendation in the last %s is %d", window, want)
			return d
		}
		if !up && want >= cur {
			d.Reason = fmt.Sprintf("scale-down stabilizing: the highest recommendation in the last %s is %d", window, want)
			return d
		}
	}
	if !in.LastChange.IsZero() && in.Now.Before(in.LastChange.Add(p.Cooldown)) {
		d.Reason = fmt.Sprintf("in cooldown until %s (last change %s)", in.LastChange.Add(p.Cooldown).UTC().Format(time.RFC3339), in.LastChange.UTC().Format(time.RFC3339))
		return d
	}
	step := p.MaxStep
	if step <= 0 {
		step = max(4, cur)
	}
	want = min(max(want, cur-step), cur+step)
	d.To, d.Change = want, true
	how := "up"
	if !up {
		how = "down"
	}
	d.Reason = fmt.Sprintf("scale %s: %g at a target of %g per replica needs %d", how, d.Value, p.Target, d.Desired)
	if want != d.Desired {
		d.Reason += fmt.Sprintf(", %d after stabilization and the step cap of %d", want, step)
	}
	return d
}

// RollbackPolicy is a release's rollback block.
type RollbackPolicy struct {
	Threshold float64
	Window    time.Duration
}

// Rollout is the last change of a release's model, runtime or quantize
// blocks in Git.
type Rollout struct {
	// Revision is the commit that made the change, Previous its parent
	// (whose blocks a rollback restores; "" when the release is new).
	Revision, Previous string
	Time               time.Time
	// ByRollback: the change is Gantry's own rollback, which is never
	// rolled back in turn.
	ByRollback bool
}

// RollbackInput is everything a rollback decision depends on.
type RollbackInput struct {
	Value float64
	// Rollout is nil when no change is in the history looked at.
	Rollout *Rollout
	Now     time.Time
}

// RollbackDecision says whether to restore Rollout.Previous.
type RollbackDecision struct {
	Rollback bool
	Reason   string
}

// Decide rolls back when the query is above the threshold within the
// window after a rollout that has a previous revision and is not itself
// a rollback.
func (p RollbackPolicy) Decide(in RollbackInput) RollbackDecision {
	r := in.Rollout
	switch {
	case r == nil:
		return RollbackDecision{Reason: "no rollout in the recent history"}
	case in.Now.Sub(r.Time) > p.Window:
		return RollbackDecision{Reason: fmt.Sprintf("last rollout %s is older than the %s window", short(r.Revision), p.Window)}
	case r.ByRollback:
		return RollbackDecision{Reason: fmt.Sprintf("last rollout %s is a rollback", short(r.Revision))}
	case !(in.Value > p.Threshold):
		return RollbackDecision{Reason: fmt.Sprintf("%g is within the threshold %g", in.Value, p.Threshold)}
	case r.Previous == "":
		return RollbackDecision{Reason: fmt.Sprintf("%g is above the threshold %g but %s created the release: nothing to restore", in.Value, p.Threshold, short(r.Revision))}
	}
	return RollbackDecision{Rollback: true, Reason: fmt.Sprintf("%g is above the threshold %g within %s of rollout %s", in.Value, p.Threshold, in.Now.Sub(r.Time).Round(time.Second), short(r.Revision))}
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
