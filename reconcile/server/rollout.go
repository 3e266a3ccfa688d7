package server

import (
	"math"
	"regexp"
	"strings"

	"github.com/gantry-dev/gantry/reconcile"
)

// decisionPause is the analysis decision of missing data: the rollout
// waits, it neither passes nor fails.
const decisionPause = "pause"

// rolloutPaused reports whether a rollout's last analysis paused it.
func rolloutPaused(ro *reconcile.RolloutStatus) bool {
	return ro != nil && ro.Analysis != nil && ro.Analysis.Decision == decisionPause
}

// maxStepSegments bounds the step bar; a rollout of more steps (none a
// person would write) shows its position in words only.
const maxStepSegments = 64

// stepSeg is one segment of a rollout's step bar.
type stepSeg struct {
	N       int  // the step, from 1
	Done    bool // before the current step
	Current bool
	Ready   bool // the current step is fully in place
	Paused  bool // the current step's analysis is paused
}

// stepBar is the segments of a rollout's step bar: Steps of them, those up
// to Step filled, Step marked.
func stepBar(ro *reconcile.RolloutStatus) []stepSeg {
	if ro == nil || ro.Steps <= 0 || ro.Steps > maxStepSegments {
		return nil
	}
	paused := rolloutPaused(ro)
	segs := make([]stepSeg, ro.Steps)
	for i := range segs {
		n := i + 1
		segs[i] = stepSeg{N: n, Done: n < ro.Step, Current: n == ro.Step}
		if segs[i].Current {
			segs[i].Ready, segs[i].Paused = ro.Ready, paused
		}
	}
	return segs
}

// Pause reasons, as the label of gantry_rollout_paused: a short, bounded
// code for the analysis's reason in words.
const (
	pausePrometheus = "prometheus_unavailable"
	pauseNoData     = "no_data"
	pauseFewSamples = "too_few_samples"
	pauseManual     = "manual"
	pauseOther      = "other"
)

// fewSamplesRE matches the monitor's "m has 3 of the 10 samples the 10m
// pause takes".
var fewSamplesRE = regexp.MustCompile(`\d+ of (the )?\d+ samples`)

// pauseCode classifies a pause's reason, in words, into one of the pause
// codes. The words are the monitor's, so this reads them loosely: the
// first of these that matches wins.
func pauseCode(reason string) string {
	r := strings.ToLower(reason)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(r, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("prometheus") && has("unreachable", "unavailable", "down", "refused", "timeout", "timed out", "error", "failed", "cannot", "can't", "no such host", "status"):
		return pausePrometheus
	case has("too few", "not enough", "insufficient") || fewSamplesRE.MatchString(r):
		return pauseFewSamples
	case has("no data", "missing", "empty", "not a number", "no value", "no series", "no result"):
		return pauseNoData
	case has("sample"):
		return pauseFewSamples
	case has("manual", "by hand", "operator", "person", "paused by"):
		return pauseManual
	}
	return pauseOther
}

// finiteReleases returns rs with the non-finite numbers of the rollout
// analyses dropped (a latest value becomes nil, a point is left out):
// encoding/json refuses NaN and ±Inf, and one 0/0 of a PromQL query must
// not break /api/status. rs is not changed; a release that needs no
// change shares its rollout.
func finiteReleases(rs []reconcile.ReleaseStatus) []reconcile.ReleaseStatus {
	copied := false
	for i := range rs {
		ro := rs[i].Rollout
		if ro == nil || ro.Analysis == nil || analysisFinite(ro.Analysis) {
			continue
		}
		if !copied {
			rs = append([]reconcile.ReleaseStatus(nil), rs...)
			copied = true
		}
		a := *ro.Analysis
		a.Metrics = make([]reconcile.MetricAnalysis, len(ro.Analysis.Metrics))
		for k, m := range ro.Analysis.Metrics {
			m.Canary, m.Stable = finitePtr(m.Canary), finitePtr(m.Stable)
			m.CanarySeries, m.StableSeries = finitePoints(m.CanarySeries), finitePoints(m.StableSeries)
			a.Metrics[k] = m
		}
		c := *ro
		c.Analysis = &a
		rs[i].Rollout = &c
	}
	return rs
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func analysisFinite(a *reconcile.Analysis) bool {
	for _, m := range a.Metrics {
		if (m.Canary != nil && !finite(*m.Canary)) || (m.Stable != nil && !finite(*m.Stable)) {
			return false
		}
		for _, s := range [][]reconcile.Point{m.CanarySeries, m.StableSeries} {
			for _, p := range s {
				if !finite(p.V) {
					return false
				}
			}
		}
	}
	return true
}

func finitePtr(v *float64) *float64 {
	if v == nil || !finite(*v) {
		return nil
	}
	return v
}

func finitePoints(s []reconcile.Point) []reconcile.Point {
	var out []reconcile.Point
	for _, p := range s {
		if finite(p.V) {
			out = append(out, p)
		}
	}
	return out
}
