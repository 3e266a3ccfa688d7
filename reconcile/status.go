package reconcile

import (
	"sort"
	"time"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// Release states, as the status page and metrics show them.
const (
	StateSynced      = "synced"
	StateProgressing = "progressing"
	StateBlocked     = "blocked"
	StateFailed      = "failed"
	// StateDegraded: applied, but the shards are not becoming available.
	StateDegraded = "degraded"
	// StateUnplaceable: no replica fits on any node; what serves is kept.
	StateUnplaceable = "unplaceable"
	// StatePending: some replicas are placed, the rest fit nowhere yet.
	StatePending = "pending"
)

// Converged reports whether a release state is one a reconcile may end
// in successfully: gantry run --once exits 1 otherwise.
func Converged(state string) bool {
	switch state {
	case StateFailed, StateBlocked, StateUnplaceable, StatePending:
		return false
	}
	return true
}

// HealthReporter is a Target that knows whether a release's pods are
// available (a cluster; the dir target does not).
type HealthReporter interface {
	ReleaseHealth(release string) (state, reason string, known bool)
}

// ReleaseStatus is one release after a reconcile.
type ReleaseStatus struct {
	Name           string             `json:"name"`
	State          string             `json:"state"`
	Reason         string             `json:"reason"`
	Image          string             `json:"image"`
	Digest         string             `json:"digest,omitempty"`
	Replicas       int                `json:"replicas"`
	GPUsPerReplica int                `json:"gpus_per_replica"`
	Placement      schedule.Placement `json:"placement"`
	Error          *quality.Tensor    `json:"quantization_error,omitempty"`
	// Evals are the gate's eval bound checks of the last build, each with
	// its value (and the baseline's, for a ratio).
	Evals     []planner.BoundCheck `json:"evals,omitempty"`
	NextRetry *time.Time           `json:"next_retry,omitempty"`
	// Rollout is set for a release with a rollout block.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Clusters, in a fleet, are the release's state in each cluster it
	// runs in: the row of the cluster × release grid.
	Clusters []ClusterReleaseStatus `json:"clusters,omitempty"`
}

// RolloutStatus is a release's rollout: where the planner put it, how the
// last prestage went, and the monitor's last analysis of it.
type RolloutStatus struct {
	planner.RolloutState
	// Prestage says how the last pull of the canary's image went ("" when
	// none ran).
	Prestage string    `json:"prestage,omitempty"`
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Analysis is the monitor's last look at a rollout.
type Analysis struct {
	Time time.Time `json:"time"`
	// Decision is "promote", "abort", "hold" (within bounds, the pause is
	// not over) or "pause" (data is missing: never a pass).
	Decision string `json:"decision"`
	// Reason says why, in words; for a pause, what is missing.
	Reason string `json:"reason"`
	// Failures counts the failed evaluations of this step, against
	// FailureLimit.
	Failures     int              `json:"failures"`
	FailureLimit int              `json:"failure_limit"`
	Metrics      []MetricAnalysis `json:"metrics"`
}

// MetricAnalysis is one metric of an analysis.
type MetricAnalysis struct {
	Name string `json:"name"`
	// Bound is the bound in words: "<= 0.01", "<= 1.2 × stable".
	Bound string `json:"bound"`
	// Canary and Stable are the latest values (nil: no data).
	Canary *float64 `json:"canary,omitempty"`
	Stable *float64 `json:"stable,omitempty"`
	// Pass says the latest evaluation was within the bound.
	Pass bool `json:"pass"`
	// Samples are the evaluations with data in the step's window so far;
	// Needed how many the pause takes.
	Samples int `json:"samples"`
	Needed  int `json:"needed"`
	// CanarySeries and StableSeries are the last hour, for the chart.
	CanarySeries []Point `json:"canary_series,omitempty"`
	StableSeries []Point `json:"stable_series,omitempty"`
}

// Point is one value at one time.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// NodeUse is one node's row of the node × release grid.
type NodeUse struct {
	// Name is the node's identity: its name, "CLUSTER/NAME" in a fleet.
	Name     string         `json:"name"`
	Cluster  string         `json:"cluster,omitempty"`
	Pool     string         `json:"pool"`
	GPUs     int            `json:"gpus"`
	Used     int            `json:"used"`     // by others
	Releases map[string]int `json:"releases"` // release -> GPUs
	// Unusable says why placement may not use the node (cordoned, not
	// ready, …; schedule.Node.Unusable); "" when it may. None of an
	// unusable node's GPUs are free.
	Unusable string `json:"unusable,omitempty"`
}

// Status is what the engine last did, for the status page and /api/status.
type Status struct {
	Revision    string          `json:"revision"`
	Time        time.Time       `json:"time"`
	Duration    time.Duration   `json:"duration_ns"`
	Phase       string          `json:"phase"` // success, invalid, error
	Error       string          `json:"error,omitempty"`
	Diagnostics string          `json:"diagnostics,omitempty"`
	Releases    []ReleaseStatus `json:"releases"`
	Nodes       []NodeUse       `json:"nodes"`
	Plan        *planner.Plan   `json:"plan,omitempty"`
	// Monitor is the last round of the Prometheus monitor (gantry run
	// --prometheus), as SetMonitor recorded it; it says when Prometheus
	// was unavailable.
	Monitor any `json:"monitor,omitempty"`
	// Shard is which part of a sharded fleet this process is (gantry run
	// --shard) and which releases it owns; nil when not sharded.
	Shard *ShardStatus `json:"shard,omitempty"`
	// Clusters are a fleet's clusters (specs with cluster blocks).
	Clusters []ClusterStatus `json:"clusters,omitempty"`

	reasons map[string]string
}

// Status returns a copy of the last status.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.reasons = nil
	s.Releases = append([]ReleaseStatus(nil), s.Releases...)
	s.Nodes = append([]NodeUse(nil), s.Nodes...)
	if s.Shard == nil && e.Shard != nil { // before the first plan
		s.Shard = &ShardStatus{Index: e.Shard.Index, Count: e.Shard.Count, Releases: []string{}}
	}
	return s
}

// SetAnalysis records the monitor's last analysis of a release's rollout;
// nil clears it. The status shows it with the release's rollout.
func (e *Engine) SetAnalysis(release string, a *Analysis) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.analyses == nil {
		e.analyses = map[string]*Analysis{}
	}
	if a == nil {
		delete(e.analyses, release)
	} else {
		e.analyses[release] = a
	}
	for i := range e.status.Releases {
		if r := &e.status.Releases[i]; r.Name == release && r.Rollout != nil {
			ro := *r.Rollout
			ro.Analysis = a
			r.Rollout = &ro
		}
	}
}

// SetMonitor records the monitor's last round for the status.
func (e *Engine) SetMonitor(v any) {
	e.mu.Lock()
	e.status.Monitor = v
	e.mu.Unlock()
}

func nodeUse(nodes []schedule.Node, releases []planner.ReleasePlan, cfg *spec.Config) []NodeUse {
	gpus := map[string]int{}
	for _, r := range cfg.Releases {
		gpus[r.Name] = r.GPUCount()
	}
	out := make([]NodeUse, 0, len(nodes))
	for _, n := range nodes {
		u := NodeUse{Name: n.ID(), Cluster: n.Cluster, Pool: n.Pool, GPUs: n.GPUs, Used: n.Used, Releases: map[string]int{}}
		if n.Unusable != nil {
			u.Unusable = n.Unusable.Message()
		}
		for _, r := range releases {
			if c := r.Placement[n.ID()]; c > 0 {
				u.Releases[r.Name] = c * gpus[r.Name]
			}
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// analysis is the monitor's last analysis of a release, if any.
func (e *Engine) analysis(release string) *Analysis {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.analyses[release]
}
