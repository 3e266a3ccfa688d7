package schedule

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func unusable(nd Node, why Reason) Node { nd.Unusable = why; return nd }

var (
	trainTaint = UntoleratedTaint{Key: "dedicated", Value: "train", Effect: "NoSchedule"}
	evalTaint  = UntoleratedTaint{Key: "dedicated", Value: "eval", Effect: "NoExecute"}
)

// TestUnusableNodesCounted: unusable nodes are rejected for their own
// reason, counted with the others the way kube-scheduler counts, most
// frequent first, ties by text, taints per distinct key and value.
func TestUnusableNodesCounted(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		req   Request
		want  string
	}{
		{
			name: "every node tainted",
			nodes: []Node{
				unusable(n("a", 0), trainTaint), unusable(n("b", 0), trainTaint),
			},
			req:  req("r", 1),
			want: "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: train}",
		},
		{
			name: "the issue's example",
			nodes: []Node{
				unusable(n("c1", 0), NodeUnschedulable{}), unusable(n("c2", 0), NodeUnschedulable{}),
				unusable(n("c3", 0), NodeUnschedulable{}), unusable(n("t", 0), trainTaint),
				unusable(n("down", 0), NodeNotReady{}),
			},
			req: req("r", 1),
			want: "0/5 nodes are available: 3 node(s) were unschedulable, " +
				"1 node(s) had untolerated taint {dedicated: train}, 1 node(s) were not ready",
		},
		{
			name: "with usable nodes that are full",
			nodes: []Node{
				withGPUs(n("full1", 0), 8, 8), withGPUs(n("full2", 0), 8, 8),
				unusable(n("cordoned", 0), NodeUnschedulable{}),
				unusable(n("eval", 0), evalTaint), unusable(n("train", 0), trainTaint),
				unusable(n("nogpu", 0), NoAllocatableGPUs{Reported: "8"}),
				unusable(n("other", 0), NoMatchingPool{}),
			},
			req: req("r", 1),
			// ties of 1 by text: "node(s) had no…" < "node(s) had untolerated…"
			want: "0/7 nodes are available: 2 Insufficient nvidia.com/gpu, " +
				"1 node(s) had no allocatable nvidia.com/gpu, " +
				"1 node(s) had untolerated taint {dedicated: eval}, " +
				"1 node(s) had untolerated taint {dedicated: train}, " +
				"1 node(s) matched no node_pool selector, 1 node(s) were unschedulable",
		},
		{
			name: "an unusable node in an allowed pool, and one in another",
			nodes: []Node{
				inPool(n("a", 0), "l4"), inPool(unusable(n("b", 0), NodeNotReady{}), "a100"),
				inPool(unusable(n("c", 0), NodeNotReady{}), "l4"),
			},
			req:  Request{Release: "r", Replicas: 1, GPUs: 1, Pools: []string{"a100"}},
			want: "0/3 nodes are available: 2 node(s) were not ready, 1 node(s) not in allowed pools",
		},
		{
			name: "a taint without a value",
			nodes: []Node{
				unusable(n("a", 0), UntoleratedTaint{Key: "gpu-broken", Effect: "NoExecute"}),
			},
			req:  req("r", 1),
			want: "0/1 nodes are available: 1 node(s) had untolerated taint {gpu-broken: }",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Place(Problem{Nodes: tc.nodes, Requests: []Request{tc.req}})
			if len(res.Unplaced) != 1 {
				t.Fatalf("unplaced %v, want one", res.Unplaced)
			}
			if got := res.Unplaced[0].String(); got != tc.want {
				t.Errorf("String()\n got %q\nwant %q", got, tc.want)
			}
			// One rejection per node, by name, unusable ones for their reason.
			var names []string
			for _, rj := range res.Unplaced[0].Rejected {
				names = append(names, rj.Node)
			}
			if !slices.IsSorted(names) || len(names) != len(tc.nodes) {
				t.Errorf("rejected nodes %v: want all %d, sorted", names, len(tc.nodes))
			}
			for _, rj := range res.Unplaced[0].Rejected {
				for _, nd := range tc.nodes {
					if nd.Name == rj.Node && nd.Unusable != nil && rj.Reason != nd.Unusable {
						t.Errorf("%s rejected for %v, want its Unusable %v", rj.Node, rj.Reason, nd.Unusable)
					}
				}
			}
		})
	}
}

// TestUnusableNodeLosesItsReplicas: a live replica on a node that became
// unusable is one to move, the node never gets a replica, and nothing of
// it (GPUs, load, the image it holds, spread) counts.
func TestUnusableNodeLosesItsReplicas(t *testing.T) {
	const img = "sha256:model"
	p := Problem{
		Nodes: []Node{
			// Idle, holding the image, first by name: it would win
			// every tie if it counted.
			{Name: "a-cordoned", GPUs: 8, GPUMemory: 80 * gi, Images: map[string]int64{img: 20 << 30}, Unusable: NodeUnschedulable{}},
			n("b", 5),
			n("c", 5),
		},
		Requests: []Request{
			{Release: "chat", Replicas: 3, GPUs: 1, Image: img},
			{Release: "spread", Replicas: 2, GPUs: 1, Spread: true},
		},
		Current:       map[string]Placement{"chat": {"a-cordoned": 2, "b": 1}, "spread": {"a-cordoned": 1}},
		ImageLocality: 0.5,
	}
	res := Place(p)
	// chat keeps b:1; c (load 5) then b (a tie at 6, by name).
	want := map[string]Placement{"chat": {"b": 2, "c": 1}, "spread": {"b": 1, "c": 1}}
	if d := cmp.Diff(want, res.Placements); d != "" {
		t.Errorf("placements (-want +got):\n%s", d)
	}
	if len(res.Unplaced) != 0 || len(res.ImageLocal) != 0 {
		t.Errorf("unplaced %v, image local %v: want none", res.Unplaced, res.ImageLocal)
	}
	// Fed back, nothing moves, and the cordoned node stays empty however
	// much is asked for.
	p.Current = res.Placements
	if d := cmp.Diff(want, Place(p).Placements); d != "" {
		t.Errorf("replan moved replicas (-want +got):\n%s", d)
	}
	p.Requests[0].Replicas = 100
	res = Place(p)
	if c := res.Placements["chat"]["a-cordoned"]; c != 0 {
		t.Errorf("%d replicas on the cordoned node", c)
	}
	// b and c hold 8 GPUs each, 2 of them spread's: 14 for chat.
	if got := res.Placements["chat"].Total(); got != 14 {
		t.Errorf("chat placed %d, want 14 (the usable nodes' GPUs)", got)
	}
	if len(res.Unplaced) != 1 || !strings.HasPrefix(res.Unplaced[0].String(),
		"0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) were unschedulable") {
		t.Errorf("unplaced %v", res.Unplaced)
	}
	// The same Node given twice, once unusable: unusable wins whatever
	// the order.
	for _, nodes := range [][]Node{{n("x", 0), unusable(n("x", 0), NodeNotReady{})}, {unusable(n("x", 0), NodeNotReady{}), n("x", 0)}} {
		res := Place(Problem{Nodes: nodes, Requests: []Request{req("r", 1)}})
		if len(res.Unplaced) != 1 || res.Unplaced[0].String() != "0/1 nodes are available: 1 node(s) were not ready" {
			t.Errorf("duplicate x: placements %v, unplaced %v", res.Placements, res.Unplaced)
		}
	}
}

func TestNodeReasonMessages(t *testing.T) {
	for _, tc := range []struct {
		r                  Reason
		kind, msg, summary string
	}{
		{NodeUnschedulable{}, "NodeUnschedulable", "node(s) were unschedulable", "node(s) were unschedulable"},
		{NodeNotReady{}, "NodeNotReady", "node(s) were not ready", "node(s) were not ready"},
		{trainTaint, "UntoleratedTaint", "node has untolerated taint dedicated=train:NoSchedule",
			"node(s) had untolerated taint {dedicated: train}"},
		{UntoleratedTaint{Key: "k", Effect: "NoExecute"}, "UntoleratedTaint", "node has untolerated taint k:NoExecute",
			"node(s) had untolerated taint {k: }"},
		{NoAllocatableGPUs{}, "NoAllocatableGPUs", "node has no allocatable nvidia.com/gpu",
			"node(s) had no allocatable nvidia.com/gpu"},
		{NoAllocatableGPUs{Reported: "4"}, "NoAllocatableGPUs",
			`node has no allocatable nvidia.com/gpu (GPU feature discovery reports "4" GPUs; is the device plugin running?)`,
			"node(s) had no allocatable nvidia.com/gpu"},
		{NoMatchingPool{}, "NoMatchingPool", "node matches no node_pool selector", "node(s) matched no node_pool selector"},
	} {
		if got := tc.r.Message(); got != tc.msg {
			t.Errorf("%#v.Message() = %q, want %q", tc.r, got, tc.msg)
		}
		if got := reasonSummary(tc.r); got != tc.summary {
			t.Errorf("summary of %#v = %q, want %q", tc.r, got, tc.summary)
		}
		// A saved plan reads back with the same kind, text and count.
		b, err := json.Marshal(Rejection{Node: "n", Reason: tc.r})
		if err != nil {
			t.Fatal(err)
		}
		var back Rejection
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Rejection{Node: "n", Reason: Recorded{Kind: tc.kind, Text: tc.msg, Summary: tc.summary}}, back); d != "" {
			t.Errorf("%s read back (-want +got):\n%s", b, d)
		}
	}
}

// TestNodeJSON: a usable Node marshals as before Unusable existed (saved
// plans' observed digests stay valid); an unusable one says which reason,
// so that a node going from cordoned to not ready changes the digest.
func TestNodeJSON(t *testing.T) {
	b, err := json.Marshal(Node{Name: "a", GPUs: 8})
	if err != nil {
		t.Fatal(err)
	}
	const usable = `{"Name":"a","Pool":"","GPUs":8,"Used":0,"GPUMemory":0,"Product":"","Connections":0,"Hostname":""}`
	if string(b) != usable {
		t.Errorf("usable node: %s, want %s", b, usable)
	}
	seen := map[string]bool{}
	for _, why := range []Reason{NodeUnschedulable{}, NodeNotReady{}, trainTaint, evalTaint, NoAllocatableGPUs{}, NoMatchingPool{}} {
		b, err := json.Marshal(Node{Name: "a", GPUs: 8, Unusable: why})
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(b)] {
			t.Errorf("%s: two reasons marshal alike", b)
		}
		seen[string(b)] = true
	}
	b, _ = json.Marshal(Node{Name: "a", Unusable: trainTaint})
	if !strings.Contains(string(b), `"Unusable":{"kind":"UntoleratedTaint","message":"node has untolerated taint dedicated=train:NoSchedule"}`) {
		t.Errorf("tainted node: %s", b)
	}
}
