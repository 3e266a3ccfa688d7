package server

import (
	"testing"

	"github.com/gantry-dev/gantry/reconcile"
)

// TestUnusableNodeHasNoFreeGPUs: a cordoned or not-ready node is listed,
// with why, but its GPUs are no one's to take: neither the pool table nor
// the node grid counts them free.
func TestUnusableNodeHasNoFreeGPUs(t *testing.T) {
	nodes := []reconcile.NodeUse{
		{Name: "a", Pool: "p", GPUs: 8, Used: 2, Releases: map[string]int{"chat": 2}},
		{Name: "b", Pool: "p", GPUs: 8, Releases: map[string]int{}, Unusable: "node(s) were unschedulable"},
	}
	pools := makePools(nodes)
	if len(pools) != 1 || pools[0].Free != 4 || pools[0].GPUs != 16 {
		t.Fatalf("pools %+v, want 4 free of 16", pools)
	}
	g := makeGrid(nodes, []string{"chat"}, map[string]bool{"chat": true})
	for _, r := range g.Rows {
		if r.Node == "b" && (r.Free != 0 || r.Unusable == "") {
			t.Errorf("row %+v", r)
		}
	}
}
