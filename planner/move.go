package planner

import (
	"fmt"
	"sort"

	"github.com/gantry-dev/gantry/schedule"
)

// keepWhileMoving is the placement to render for a release whose replicas
// move between nodes (a node cordoned, tainted, not ready, or a better
// placement): placement plus the replicas the shards it leaves keep until
// their replacements are available. Make before break: the release's
// available replicas never drop below what serves now (at most its
// replicas), so a shard goes only once the shards that replace it serve.
// Only replicas that serve are kept; an unavailable one helps nobody.
//
// It needs to know what serves: when a live shard's availability is
// unknown (the dir target), placement is rendered as it is. moving are the
// nodes whose shards are kept beyond placement, sorted.
func (p *Prepared) keepWhileMoving(release string, placement schedule.Placement) (render schedule.Placement, moving []string) {
	type shard struct{ replicas, available int }
	live := map[string]shard{}
	serving := 0
	for _, id := range p.byRelease[release] {
		o := p.live[id]
		if o.Kind != "Deployment" {
			continue
		}
		if o.Available == nil {
			return placement, nil
		}
		n := shardNode(o)
		s := live[n]
		s.replicas += o.Replicas()
		s.available += min(*o.Available, o.Replicas())
		live[n] = s
		serving += min(*o.Available, o.Replicas())
	}
	total := 0
	for _, c := range placement {
		total += c
	}
	floor := min(total, serving)
	target := 0 // replicas of the placement that serve already
	for n, c := range placement {
		target += min(c, live[n].available)
	}
	missing := floor - target
	if missing <= 0 {
		return placement, nil
	}
	// Keep the serving replicas beyond the placement, where most serve.
	nodes := make([]string, 0, len(live))
	for n, s := range live {
		if s.replicas > placement[n] && s.available > min(placement[n], s.available) {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool {
		if a, b := live[nodes[i]].available, live[nodes[j]].available; a != b {
			return a > b
		}
		return nodes[i] < nodes[j]
	})
	render = make(schedule.Placement, len(placement)+len(nodes))
	for n, c := range placement {
		render[n] = c
	}
	for _, n := range nodes {
		if missing <= 0 {
			break
		}
		s := live[n]
		k := min(s.available-min(placement[n], s.available), missing)
		render[n] += k
		missing -= k
		moving = append(moving, n)
	}
	sort.Strings(moving)
	return render, moving
}

// liveHostname is the kubernetes.io/hostname a live shard's pods are
// pinned to.
func liveHostname(o Object) string {
	sp, _ := o.Manifest["spec"].(map[string]any)
	tpl, _ := sp["template"].(map[string]any)
	ps, _ := tpl["spec"].(map[string]any)
	sel, _ := ps["nodeSelector"].(map[string]any)
	h, _ := sel["kubernetes.io/hostname"].(string)
	return h
}

// leaveReason says why a release's shard on a node goes: the node's
// reason when placement may not use it, or that the node is gone, or
// that placement moved the replicas.
func (p *Prepared) leaveReason(o Object, release string) string {
	node := shardNode(o)
	for _, n := range p.observed.Nodes {
		if n.Name != node {
			continue
		}
		if n.Unusable != nil {
			return fmt.Sprintf("node %s no longer holds replicas of %s: %s", node, release, n.Unusable.Message())
		}
		return fmt.Sprintf("node %s no longer holds replicas of %s: placement moved them", node, release)
	}
	return fmt.Sprintf("node %s no longer holds replicas of %s: the node is gone", node, release)
}
