package server

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
)

// states lists the release states worst first: the order of the status
// page, its filter and the per-state counts.
var states = []string{
	reconcile.StateFailed, reconcile.StateBlocked, reconcile.StateUnplaceable, reconcile.StatePending,
	reconcile.StateDegraded, reconcile.StateProgressing, reconcile.StateSynced,
}

// problemStates is what ?state=problem selects: every state that needs an
// operator (not converged, or converged but not serving well).
var problemStates = states[:5]

// stateRank orders states worst first; a state this package does not know
// ranks after degraded, among the problems.
func stateRank(s string) int {
	if i := slices.Index(states, s); i >= 0 {
		if i >= len(problemStates) {
			return i + 1
		}
		return i
	}
	return len(problemStates)
}

// filter selects releases, from the query of the status page and of
// /api/status: state (a comma-separated list, repeatable, "problem" for
// the five problem states), q (a substring of the name, any case) and
// release (one exact name), rollout ("any": the releases with a
// rollout; "paused": those whose last analysis paused it), and cluster
// (one cluster of a fleet: the releases that run there, and state= then
// matches a release's state in that cluster, stateIn).
type filter struct {
	States  map[string]bool // nil: any state
	Q       string          // lower case
	Release string
	Rollout string // "", "any" or "paused"
	Cluster string
	// StateParam and QParam are the query as given, to write it back
	// into the form and the links.
	StateParam, QParam string
}

func parseFilter(v url.Values) (filter, error) {
	f := filter{Release: v.Get("release"), QParam: strings.TrimSpace(v.Get("q")), Rollout: v.Get("rollout"), Cluster: v.Get("cluster")}
	f.Q = strings.ToLower(f.QParam)
	if f.Rollout != "" && f.Rollout != "any" && f.Rollout != "paused" {
		return filter{}, fmt.Errorf("rollout=%q: want any or paused", f.Rollout)
	}
	var given []string
	for _, p := range v["state"] {
		for s := range strings.SplitSeq(p, ",") {
			if s = strings.TrimSpace(s); s != "" {
				given = append(given, s)
			}
		}
	}
	for _, s := range given {
		if f.States == nil {
			f.States = map[string]bool{}
		}
		switch {
		case s == "problem":
			for _, p := range problemStates {
				f.States[p] = true
			}
		case slices.Contains(states, s):
			f.States[s] = true
		default:
			return filter{}, fmt.Errorf("unknown state %q: want problem, %s", s, strings.Join(states, ", "))
		}
	}
	f.StateParam = strings.Join(given, ",")
	return f, nil
}

// Active reports whether the filter leaves any release out.
func (f filter) Active() bool {
	return f.States != nil || f.Q != "" || f.Release != "" || f.Rollout != "" || f.Cluster != ""
}

// ofReleases reports whether the filter selects releases by more than
// the cluster they run in.
func (f filter) ofReleases() bool {
	f.Cluster = ""
	return f.Active()
}

func (f filter) match(r *reconcile.ReleaseStatus) bool {
	if f.Release != "" && r.Name != f.Release {
		return false
	}
	if f.Rollout != "" && (r.Rollout == nil || f.Rollout == "paused" && !rolloutPaused(r.Rollout)) {
		return false
	}
	state := r.State
	if f.Cluster != "" {
		cell := cellIn(r, f.Cluster)
		if cell == nil {
			return false
		}
		state, _ = stateIn(r, cell)
	}
	if f.States != nil && !f.States[state] {
		return false
	}
	return f.Q == "" || strings.Contains(strings.ToLower(r.Name), f.Q)
}

// selectReleases returns the releases the filter keeps, in their order.
func (f filter) selectReleases(rs []reconcile.ReleaseStatus) []reconcile.ReleaseStatus {
	if !f.Active() {
		return rs
	}
	var out []reconcile.ReleaseStatus
	for i := range rs {
		if f.match(&rs[i]) {
			out = append(out, rs[i])
		}
	}
	return out
}

// countStates counts releases by state.
func countStates(rs []reconcile.ReleaseStatus) map[string]int {
	c := make(map[string]int, len(states))
	for _, s := range states {
		c[s] = 0
	}
	for i := range rs {
		c[rs[i].State]++
	}
	return c
}

// nodesHosting returns the nodes that host at least one of the named
// releases, in their order.
func nodesHosting(nodes []reconcile.NodeUse, names map[string]bool) []reconcile.NodeUse {
	var out []reconcile.NodeUse
	for _, n := range nodes {
		for r := range n.Releases {
			if names[r] {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// planFor is the plan cut down to the named releases: their placements
// and actions. Warnings stay; actions of no release (a prune) go.
func planFor(p *planner.Plan, names map[string]bool) *planner.Plan {
	if p == nil {
		return nil
	}
	sub := *p
	sub.Releases = nil
	for _, r := range p.Releases {
		if names[r.Name] {
			sub.Releases = append(sub.Releases, r)
		}
	}
	sub.Actions = []planner.Action{}
	for _, a := range p.Actions {
		if names[a.Release] {
			sub.Actions = append(sub.Actions, a)
		}
	}
	return &sub
}

func nameSet(rs []reconcile.ReleaseStatus) map[string]bool {
	m := make(map[string]bool, len(rs))
	for i := range rs {
		m[rs[i].Name] = true
	}
	return m
}
