package spec

import (
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Rollout is a release's progressive delivery: a change of its model,
// quantization, runtime or resources (a new version of its pods) goes to
// a canary first, step by step, gated on live metrics. Without a rollout
// block a change rolls every shard at once, as a Deployment update does.
type Rollout struct {
	// StepsExpr is the steps attribute as written; Load decodes it into
	// Steps, with each step's range for diagnostics. steps may be absent
	// when waves is set (see ImplicitStep); a rollout needs one or both.
	StepsExpr hcl.Expression `hcl:"steps,optional" json:"-"`
	Steps     []RolloutStep  `json:"steps"`
	// Traffic is "service" (default: both versions behind the release's
	// Service, so traffic follows the replica ratio) or "gateway" (a
	// Gateway API HTTPRoute with one Service per version and weighted
	// backendRefs).
	Traffic string `hcl:"traffic,optional" json:"traffic"`
	// Gateway is the Gateway the HTTPRoute attaches to, "NAME" or
	// "NAMESPACE/NAME"; required with traffic = "gateway".
	Gateway string `hcl:"gateway,optional" json:"gateway,omitempty"`
	// PrestageTimeoutRaw bounds the wait for a step's nodes to pull the
	// new model image before its shards are applied anyway (default 30m).
	PrestageTimeoutRaw string        `hcl:"prestage_timeout,optional" json:"prestage_timeout,omitempty"`
	PrestageTimeout    time.Duration `json:"-"`
	Analysis           *Analysis     `hcl:"analysis,block" json:"analysis,omitempty"`

	// WavesExpr is the waves attribute as written (a list of lists of
	// cluster names); Load decodes it into Waves. With waves, a new
	// version goes wave by wave: the clusters of a wave run the steps
	// (or one step of every replica when steps is absent), and the next
	// wave starts once the analysis of the wave's last step passed.
	// Clusters of the release in no wave come last, as a wave of their
	// own; WaveList gives the waves a release goes through.
	WavesExpr hcl.Expression `hcl:"waves,optional" json:"-"`
	Waves     [][]string     `json:"waves,omitempty"`
	// WaveRanges is where each wave of Waves is written, for
	// diagnostics: the wave's list, or the whole waves expression when
	// it is not a literal list.
	WaveRanges []hcl.Range `json:"-"`
	// ImplicitStep is set when steps is absent and waves is set: Steps
	// is then the one step { percent = 100, pause = wave_pause }, so that
	// each wave rolls all its replicas at once and its analysis runs for
	// WavePause.
	ImplicitStep bool `json:"-"`
	// WavePauseRaw is how long a wave's analysis runs when there are no
	// steps (default 10m): the pause of the implicit step.
	WavePauseRaw string        `hcl:"wave_pause,optional" json:"wave_pause,omitempty"`
	WavePause    time.Duration `json:"-"`

	// Step and Version are the rollout's position, which Gantry's
	// promotion commits edit (and a person may): the canary of version
	// Version is at step Step (1-based). A position whose Version is not
	// the release's version now is stale, and the rollout of the new
	// version starts at step 1.
	Step    *int   `hcl:"step,optional" json:"step,omitempty"`
	Version string `hcl:"version,optional" json:"version,omitempty"`
	// Wave is the wave the rollout of Version is in (1-based, counting
	// WaveList's waves; with waves only). Gantry's wave promotions
	// (SetRolloutWave) write it with step and version, and with waves a
	// position has all three.
	Wave *int `hcl:"wave,optional" json:"wave,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// RolloutStep is one step: how many replicas run the canary, and how long
// the analysis must pass before the next step.
type RolloutStep struct {
	// Replicas (a count) or Percent (of the release's replicas, rounded
	// up) run the new version; exactly one is set.
	Replicas int `json:"replicas,omitempty"`
	Percent  int `json:"percent,omitempty"`
	// Weight is the percent of traffic the HTTPRoute sends to the canary
	// (traffic = "gateway" only); nil: the canary's share of replicas.
	Weight *int `json:"weight,omitempty"`
	// Pause is how long every metric must stay within bounds before the
	// next step. Zero on a step that is not the last: the rollout waits
	// there until a person promotes it. With waves, the last step's pause
	// gates the next wave the same way (Load refuses it on the last step
	// without waves: nothing follows).
	PauseRaw string        `json:"pause,omitempty"`
	Pause    time.Duration `json:"-"`

	Range hcl.Range `json:"-"`
}

// CanaryReplicas is how many of total replicas the step gives the new
// version: Replicas, or Percent of total rounded up, within [1, total]
// (0 when total is 0).
func (s RolloutStep) CanaryReplicas(total int) int {
	if total <= 0 {
		return 0
	}
	n := s.Replicas
	if s.Percent > 0 {
		n = (s.Percent*total + 99) / 100
	}
	return min(max(n, 1), total)
}

// Analysis compares the canary with the stable version on live metrics.
type Analysis struct {
	// IntervalRaw is how often the metrics are evaluated (default 1m);
	// each evaluation is one sample of a metric.
	IntervalRaw string        `hcl:"interval,optional" json:"interval,omitempty"`
	Interval    time.Duration `json:"-"`
	// FailureLimit is how many failed evaluations of a step abort the
	// rollout (default 1).
	FailureLimit int              `hcl:"failure_limit,optional" json:"failure_limit"`
	Metrics      []AnalysisMetric `hcl:"metric,block" json:"metrics"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// AnalysisMetric is one PromQL query, templated per version ({{.Version}},
// {{.Pods}}, {{.Release}}, {{.Namespace}}), and its bounds. At least one
// bound is set. HCL's one-line blocks hold a single argument, so a metric
// with its query and a bound is written on lines:
//
//	metric "error_ratio" {
//	  query = "sum(rate(errors{pod=~\"{{.Pods}}\"}[1m]))"
//	  max   = 0.01
//	}
type AnalysisMetric struct {
	Name  string   `hcl:"name,label" json:"name"`
	Query string   `hcl:"query" json:"query"`
	Min   *float64 `hcl:"min,optional" json:"min,omitempty"`
	Max   *float64 `hcl:"max,optional" json:"max,omitempty"`
	// MaxRatioToStable bounds the canary's value divided by the stable
	// version's value at the same time.
	MaxRatioToStable *float64 `hcl:"max_ratio_to_stable,optional" json:"max_ratio_to_stable,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// WaveList is the waves a rollout of a release running in clusters goes
// through, in order: each of Waves restricted to clusters, then the
// clusters in no wave, sorted, as a last wave of their own. Empty waves
// are dropped. nil when the rollout has no waves.
func (ro *Rollout) WaveList(clusters []string) [][]string {
	if len(ro.Waves) == 0 {
		return nil
	}
	in := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		in[c] = true
	}
	var out [][]string
	placed := make(map[string]bool, len(clusters))
	for _, w := range ro.Waves {
		var wave []string
		for _, c := range w {
			if in[c] && !placed[c] {
				placed[c] = true
				wave = append(wave, c)
			}
		}
		if len(wave) > 0 {
			out = append(out, wave)
		}
	}
	var rest []string
	for c := range in {
		if !placed[c] {
			rest = append(rest, c)
		}
	}
	if len(rest) > 0 {
		slices.Sort(rest)
		out = append(out, rest)
	}
	return out
}
