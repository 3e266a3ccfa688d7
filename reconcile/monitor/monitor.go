package monitor

import (
	"context"
	"errors"
	"fmt"
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
	// Rollout is what a rollback reverts (rollback).
	Rollout *Rollout
	Query   string
	Value   float64
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
	}
	return b.String()
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
}

// Monitor decides adjustments for a whole config.
type Monitor struct {
	Metrics Metrics
	// Step is the resolution of range queries; default 15s.
	Step time.Duration
	// Now is time.Now unless a test sets it.
	Now func() time.Time
}

// Decide looks at every release with autoscale or rollback. A rollback
// takes precedence over scaling the same release. Errors are per
// release, in the report; a release whose query fails changes nothing.
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
		rolledBack := false
		if rb := r.Rollback; rb != nil {
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
