package monitor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Metrics is what the monitor needs from Prometheus; Prom implements it.
type Metrics interface {
	Query(ctx context.Context, q string, t time.Time) (float64, error)
	Range(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Sample, error)
}

// History is what the monitor needs from Git; gitsource.History
// implements it. Both look back from the revision being decided on and no
// further than since.
type History interface {
	// LastScale is when the release's replicas last changed (zero: not
	// since since).
	LastScale(release string, since time.Time) (time.Time, error)
	// LastRollout is the last change of the release's rollout blocks
	// (nil: none since since).
	LastRollout(release string, since time.Time) (*Rollout, error)
	// StepStart is the last change of the release's rollout position or
	// its model, runtime or quantize blocks: when the rollout's current
	// step began. Moved says that change is newer than the revision
	// observed (the daemon has not seen it applied).
	StepStart(release, observed string, since time.Time) (StepStart, error)
}

// StepStart is the commit that began a rollout's step (Revision "" when
// none did since the time looked back to).
type StepStart struct {
	Revision string
	Time     time.Time
	Moved    bool
}

// Adjustment kinds, as the Gantry-Adjustment commit trailer names them.
const (
	KindScale    = "scale"
	KindRollback = "rollback"
)

// Decision is one change to make in Git.
type Decision struct {
	Release string
	Kind    string
	// From and To are replicas (scale).
	From, To int
	// Rollout is what a rollback or an abort reverts.
	Rollout *Rollout
	// Version is the canary version a promote or an abort is about;
	// From and To are then steps (To = From+1 for a promote).
	Version string
	// Wave, on a promote in a fleet with waves, is the wave it goes to
	// (then To is 1) or stays in; FromWave the wave it was in.
	Wave, FromWave int
	// Analysis is the rollout analysis a promote or an abort stands on.
	Analysis *RolloutAnalysis
	Query    string
	Value    float64
	// Target is the per-replica target (scale) or the threshold
	// (rollback); Window the stabilization or rollback window.
	Target float64
	Window time.Duration
	Reason string
}

// Message is the commit message without trailers: the release, old →
// new, the metric value, the target and the window.
func (d Decision) Message() string {
	var b strings.Builder
	switch d.Kind {
	case KindScale:
		fmt.Fprintf(&b, "%s: scale %d → %d replicas\n\n", d.Release, d.From, d.To)
		fmt.Fprintf(&b, "The autoscale query is at %g against a target of %g per replica\n", d.Value, d.Target)
		fmt.Fprintf(&b, "(stabilization window %s): %s.\n\nQuery: %s\n", d.Window, d.Reason, d.Query)
	case KindRollback:
		fmt.Fprintf(&b, "%s: roll back %s → %s\n\n", d.Release, short(d.Rollout.Revision), short(d.Rollout.Previous))
		fmt.Fprintf(&b, "The rollback query is at %g, above the threshold %g, within the %s\n", d.Value, d.Target, d.Window)
		fmt.Fprintf(&b, "window after %s changed the release's model, runtime or quantize blocks.\n", short(d.Rollout.Revision))
		fmt.Fprintf(&b, "This restores those blocks as they were at %s.\n\nQuery: %s\n", short(d.Rollout.Previous), d.Query)
	case KindPromote:
		if d.Wave != d.FromWave {
			fmt.Fprintf(&b, "%s: promote %s wave %d → %d\n\n", d.Release, d.Version, d.FromWave, d.Wave)
		} else {
			fmt.Fprintf(&b, "%s: promote %s step %d → %d\n\n", d.Release, d.Version, d.From, d.To)
		}
		a := d.Analysis
		if a == nil || a.Interval == 0 {
			fmt.Fprintf(&b, "The step's %s pause is over and its replicas are available; the rollout\nhas no analysis block.\n", a.pause())
			break
		}
		fmt.Fprintf(&b, "Every metric stayed within its bounds for the step's %s pause\n", a.Pause)
		fmt.Fprintf(&b, "(window %s to %s, one evaluation every %s):\n\n", stamp(a.WindowStart), stamp(a.WindowEnd), a.Interval)
		for _, m := range a.Metrics {
			fmt.Fprintf(&b, "  %s: canary %s, stable %s, bound %s (%d of %d samples)\n", m.Name, optNum(m.Canary), optNum(m.Stable), m.Bound, m.Samples, m.Needed)
		}
		if d.Wave != d.FromWave {
			fmt.Fprintf(&b, "\nWave %d is done; wave %d starts at step 1.\n", d.FromWave, d.Wave)
		} else {
			fmt.Fprintf(&b, "\nThe canary goes to step %d of %d.\n", d.To, a.Steps)
		}
	case KindAbort:
		fmt.Fprintf(&b, "%s: abort rollout of %s at step %d\n\n", d.Release, d.Version, d.From)
		if a := d.Analysis; a != nil {
			fmt.Fprintf(&b, "%d failed evaluations this step reach the failure_limit of %d\n", a.Failures, a.FailureLimit)
			fmt.Fprintf(&b, "(from %s to %s, one evaluation every %s):\n\n", stamp(a.WindowStart), stamp(a.WindowEnd), a.Interval)
			for _, m := range a.Metrics {
				for _, e := range m.Failed {
					fmt.Fprintf(&b, "  %s at %s: %s, bound %s\n", m.Name, stamp(e.Time), evalText(e), m.Bound)
				}
			}
			b.WriteByte('\n')
		}
		if d.Rollout != nil {
			fmt.Fprintf(&b, "This restores the release's model, runtime and quantize blocks as they were\nat %s, before %s started the rollout.\n", short(d.Rollout.Previous), short(d.Rollout.Revision))
		}
	}
	return b.String()
}

func (a *RolloutAnalysis) pause() time.Duration {
	if a == nil {
		return 0
	}
	return a.Pause
}

func optNum(f *float64) string {
	if f == nil {
		return "-"
	}
	return num(*f)
}

// ReleaseReport is what the monitor saw for one release.
type ReleaseReport struct {
	Release string   `json:"release"`
	Kind    string   `json:"kind"`
	Value   *float64 `json:"value,omitempty"`
	Changed bool     `json:"changed"`
	Reason  string   `json:"reason"`
	Error   string   `json:"error,omitempty"`
}

// Report is one round of decisions.
type Report struct {
	Time      time.Time       `json:"time"`
	Revision  string          `json:"revision"`
	Decisions []Decision      `json:"-"`
	Releases  []ReleaseReport `json:"releases"`
	// Unavailable says Prometheus could not be reached or queried; no
	// decision depends on it.
	Unavailable string `json:"prometheus_unavailable,omitempty"`
	// Rollouts are the analyses of the rollouts in progress (the status
	// page shows them with each release's rollout).
	Rollouts []RolloutAnalysis `json:"-"`
}

// Monitor decides adjustments for a whole config.
type Monitor struct {
	Metrics Metrics
	// Step is the resolution of range queries; default 15s.
	Step time.Duration
	// Now is time.Now unless a test sets it.
	Now func() time.Time
	// Rollouts are the rollouts the daemon observed, by release (gantry
	// run). Nil: not observed (gantry adjust, which has no cluster);
	// releases with a rollout block are then reported and not decided.
	Rollouts map[string]RolloutView
	// Owns, if set, says which releases' rollouts are this monitor's to
	// decide (a shard's own: only the shard that reconciles a release
	// observes its rollout); the others are reported and left alone.
	Owns func(release string) bool
	// RolloutsOnly: decide rollouts and nothing else (the shards of a
	// sharded daemon other than shard 0, which autoscales and rolls back
	// for every release).
	RolloutsOnly bool
}

// NotObserved is the report line of a rollout that Monitor.Rollouts does
// not hold.
const NotObserved = "rollouts are decided by gantry run, which observes the shards"

// Decide looks at every release with a rollout, autoscale or rollback.
// At most one decision is made per release: a rollout's promote or abort
// first, then a rollback, then scaling. A rollout in progress takes
// precedence over the rollback block (its analysis compares the versions;
// the rollback query cannot tell them apart). Errors are per release, in
// the report; a release whose query fails changes nothing.
func (m *Monitor) Decide(ctx context.Context, cfg *spec.Config, hist History) Report {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	step := m.Step
	if step <= 0 {
		step = 15 * time.Second
	}
	rep := Report{Time: now, Revision: cfg.Revision}
	var down error // Prometheus unavailable during this round's analyses
	fail := func(rr *ReleaseReport, err error) {
		rr.Error = err.Error()
		rr.Reason = "no change: " + err.Error()
		if errors.Is(err, ErrUnavailable) && rep.Unavailable == "" {
			rep.Unavailable = err.Error()
		}
	}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		vars := VarsFor(cfg.Settings.Namespace, r.Name)
		rolledBack, inRollout := false, false
		mine := m.Owns == nil || m.Owns(r.Name)
		if m.RolloutsOnly && (!mine || r.Rollout == nil) {
			continue
		}
		if r.Rollout != nil {
			rr := ReleaseReport{Release: r.Name, Kind: KindRollout}
			view, seen := m.Rollouts[r.Name]
			switch {
			case m.Rollouts == nil:
				rr.Reason = NotObserved
			case !mine:
				rr.Reason = "decided by the shard that reconciles the release, which observes its shards"
			case !seen:
				rr.Reason = "the daemon has not observed this rollout yet"
			default:
				inRollout = view.Phase == PhaseProgressing
				d, a, err := m.rollout(ctx, cfg.Settings.Namespace, r, view, hist, now, &down)
				if a != nil {
					rep.Rollouts = append(rep.Rollouts, *a)
				}
				if err != nil {
					fail(&rr, err)
				} else {
					rr.Reason, rr.Changed = d.Reason, d.Kind != ""
					if rr.Changed {
						rep.Decisions = append(rep.Decisions, d)
						rolledBack = true
					}
				}
				if a != nil && a.Decision == RolloutPause && rep.Unavailable == "" && down != nil {
					rep.Unavailable = down.Error()
				}
			}
			rep.Releases = append(rep.Releases, rr)
		}
		if m.RolloutsOnly {
			continue
		}
		if rb := r.Rollback; rb != nil && inRollout && !rolledBack {
			rep.Releases = append(rep.Releases, ReleaseReport{Release: r.Name, Kind: KindRollback,
				Reason: "a rollout is in progress: its analysis decides, not the rollback block"})
		} else if rb != nil && !rolledBack {
			rr := ReleaseReport{Release: r.Name, Kind: KindRollback}
			d, err := m.rollback(ctx, r, vars, hist, now)
			if err != nil {
				fail(&rr, err)
			} else {
				rr.Reason, rr.Changed = d.Reason, d.Kind != ""
				if d.Query != "" {
					rr.Value = &d.Value
				}
				if rr.Changed {
					rep.Decisions = append(rep.Decisions, d)
					rolledBack = true
				}
			}
			rep.Releases = append(rep.Releases, rr)
		}
		if a := r.Autoscale; a != nil && !rolledBack {
			rr := ReleaseReport{Release: r.Name, Kind: KindScale}
			d, err := m.scale(ctx, r, vars, hist, now, step)
			if err != nil {
				fail(&rr, err)
			} else {
				rr.Value, rr.Reason, rr.Changed = &d.Value, d.Reason, d.Kind != ""
				if rr.Changed {
					rep.Decisions = append(rep.Decisions, d)
				}
			}
			rep.Releases = append(rep.Releases, rr)
		}
	}
	return rep
}

func (m *Monitor) scale(ctx context.Context, r *spec.Release, vars QueryVars, hist History, now time.Time, step time.Duration) (Decision, error) {
	p := PolicyFor(r.Autoscale)
	q, err := Render(r.Autoscale.Query, vars)
	if err != nil {
		return Decision{}, err
	}
	var samples []Sample
	if w := p.Window(); w > 0 {
		samples, err = m.Metrics.Range(ctx, q, now.Add(-w), now, min(step, w/4))
	} else {
		var v float64
		v, err = m.Metrics.Query(ctx, q, now)
		samples = []Sample{{Time: now, Value: v}}
	}
	if err != nil {
		return Decision{}, err
	}
	var last time.Time
	if hist != nil {
		if last, err = hist.LastScale(r.Name, now.Add(-p.Cooldown)); err != nil {
			return Decision{}, fmt.Errorf("git history: %w", err)
		}
	}
	sd := p.Decide(ScaleInput{Current: r.ReplicaCount(), Samples: samples, LastChange: last, Now: now})
	d := Decision{Release: r.Name, Query: q, Value: sd.Value, Target: p.Target, From: sd.From, To: sd.To, Reason: sd.Reason}
	d.Window = p.ScaleDownWindow
	if sd.To > sd.From {
		d.Window = p.ScaleUpWindow
	}
	if sd.Change {
		d.Kind = KindScale
	}
	return d, nil
}

func (m *Monitor) rollback(ctx context.Context, r *spec.Release, vars QueryVars, hist History, now time.Time) (Decision, error) {
	p := RollbackPolicy{Threshold: r.Rollback.Threshold, Window: r.Rollback.Window}
	q, err := Render(r.Rollback.Query, vars)
	if err != nil {
		return Decision{}, err
	}
	var ro *Rollout
	if hist != nil {
		if ro, err = hist.LastRollout(r.Name, now.Add(-p.Window)); err != nil {
			return Decision{}, fmt.Errorf("git history: %w", err)
		}
	}
	if ro == nil {
		// Nothing rolled out within the window: no query needed.
		return Decision{Release: r.Name, Reason: "no rollout within the " + p.Window.String() + " window"}, nil
	}
	v, err := m.Metrics.Query(ctx, q, now)
	if err != nil {
		return Decision{}, err
	}
	rd := p.Decide(RollbackInput{Value: v, Rollout: ro, Now: now})
	d := Decision{Release: r.Name, Query: q, Value: v, Target: p.Threshold, Window: p.Window, Rollout: ro, Reason: rd.Reason}
	if rd.Rollback {
		d.Kind = KindRollback
	}
	return d, nil
}

// Range limits of a rollout's queries: Prometheus refuses more than
// 11,000 points per series, and a step's analysis looks back at most a
// day (older failures of a long step are not counted).
const (
	maxRolloutSpan   = 24 * time.Hour
	maxRolloutPoints = 11000
	chartSpan        = time.Hour
)

// rollout analyses one release's rollout step: it finds when the step
// began in Git, queries each metric for the canary and the stable version
// over the step (and the last hour, for the chart) and decides. A
// promote or an abort is a Decision; the analysis is returned whenever
// the step is one to analyse. down is the round's first Prometheus
// failure: once Prometheus is down, the rest of the round does not wait
// on it again.
func (m *Monitor) rollout(ctx context.Context, ns string, r *spec.Release, view RolloutView, hist History, now time.Time, down *error) (Decision, *RolloutAnalysis, error) {
	ro := r.Rollout
	no := Decision{Release: r.Name}
	// Prometheus keeps milliseconds and rounds the range's end to them:
	// a sample at the end must not land after now.
	now = now.Truncate(time.Millisecond)
	in := RolloutInput{Steps: ro.Steps, Analysis: ro.Analysis, View: view, Now: now}
	// Nothing to decide: no queries, no history.
	if pre := DecideRollout(in); pre.Decision == "" {
		no.Reason = pre.Reason
		return no, nil, nil
	}
	if hist == nil {
		return no, nil, errors.New("no Git history: when the step began is unknown")
	}
	since := now.Add(-maxRolloutSpan)
	st, err := hist.StepStart(r.Name, view.Revision, since)
	if err != nil {
		return no, nil, fmt.Errorf("git history: %w", err)
	}
	if st.Moved {
		no.Reason = fmt.Sprintf("Git changed the rollout at %s, after the revision the daemon observed (%s); deciding after the next reconcile", short(st.Revision), short(view.Revision))
		return no, nil, nil
	}
	in.StepStart = st.Time
	if st.Revision == "" || in.StepStart.Before(since) {
		in.StepStart = since // older than a day: the window is capped
	}
	var series [][2][]Sample
	if an := ro.Analysis; an != nil {
		interval := analysisInterval(an)
		start := now.Add(-chartSpan)
		if in.StepStart.Before(start) {
			start = in.StepStart
		}
		if earliest := now.Add(-time.Duration(maxRolloutPoints-1) * interval); start.Before(earliest) {
			start = earliest
		}
		canary := VersionVars(ns, r.Name, view.Canary, view.CanaryShards)
		stable := VersionVars(ns, r.Name, view.Stable, view.StableShards)
		query := func(tmpl string, vars QueryVars, who string) ([]Sample, error) {
			switch {
			case *down != nil:
				return nil, *down
			case who == "stable" && view.Stable == "":
				return nil, errors.New("no stable version serves to compare with")
			case vars.Pods == PodsRegex(nil):
				return nil, fmt.Errorf("the %s version has no shards yet", who)
			}
			q, err := Render(tmpl, vars)
			if err != nil {
				return nil, err
			}
			s, err := m.Metrics.Range(ctx, q, start, now, interval)
			if errors.Is(err, ErrUnavailable) {
				*down = err
			}
			return s, err
		}
		for _, mt := range an.Metrics {
			var d MetricData
			d.Canary, d.CanaryErr = query(mt.Query, canary, "canary")
			d.Stable, d.StableErr = query(mt.Query, stable, "stable")
			in.Metrics = append(in.Metrics, d)
			series = append(series, [2][]Sample{lastSpan(d.Canary, now), lastSpan(d.Stable, now)})
		}
	}
	a := DecideRollout(in)
	a.Release = r.Name
	for i := range a.Metrics {
		if i < len(series) {
			a.Metrics[i].CanarySeries, a.Metrics[i].StableSeries = series[i][0], series[i][1]
		}
	}
	d := Decision{Release: r.Name, Version: view.Canary, From: view.Step, To: view.Step, Analysis: &a,
		Reason: a.Decision + ": " + a.Reason}
	switch a.Decision {
	case RolloutPromote:
		d.Kind, d.To = KindPromote, view.Step+1
		d.Wave, d.FromWave = view.Wave, view.Wave
		if view.waveEnd() {
			d.Wave, d.To = view.Wave+1, 1
		}
	case RolloutAbort:
		last, err := hist.LastRollout(r.Name, time.Time{})
		if err != nil {
			return no, &a, fmt.Errorf("git history: %w", err)
		}
		if last == nil || last.Previous == "" {
			d.Reason += "; but no earlier revision of the release is in Git to restore"
			break
		}
		d.Kind, d.Rollout = KindAbort, last
	}
	return d, &a, nil
}

// lastSpan is the samples of the last chartSpan before now.
func lastSpan(s []Sample, now time.Time) []Sample {
	from := now.Add(-chartSpan)
	i := sort.Search(len(s), func(i int) bool { return !s[i].Time.Before(from) })
	return s[i:]
}
