package schedule

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const gi = int64(1) << 30

// n is a node in pool "" with 8 idle GPUs of 80Gi and the given connections.
func n(name string, conns float64) Node {
	return Node{Name: name, GPUs: 8, GPUMemory: 80 * gi, Connections: conns}
}

func inPool(nd Node, pool string) Node { nd.Pool = pool; return nd }

func withGPUs(nd Node, gpus, used int) Node { nd.GPUs, nd.Used = gpus, used; return nd }

func withMem(nd Node, mem int64) Node { nd.GPUMemory = mem; return nd }

func req(release string, replicas int) Request {
	return Request{Release: release, Replicas: replicas, GPUs: 1}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want Result
	}{
		{
			name: "weighted least connections",
			// n1: 10/2=5, n2: 6/1=6 -> n1, although it has more connections.
			p: Problem{
				Nodes:    []Node{inPool(n("n1", 10), "big"), inPool(n("n2", 6), "small")},
				Pools:    map[string]Pool{"big": {Weight: 2}, "small": {Weight: 1}},
				Requests: []Request{req("r", 1)},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1}}},
		},
		{
			name: "unset weight means 1",
			// w(big)=0 -> 1. n1: 10/1=10, n2: 6/1=6 -> n2.
			p: Problem{
				Nodes:    []Node{inPool(n("n1", 10), "big"), n("n2", 6)},
				Pools:    map[string]Pool{"big": {}},
				Requests: []Request{req("r", 1)},
			},
			want: Result{Placements: map[string]Placement{"r": {"n2": 1}}},
		},
		{
			name: "tie broken by node name",
			// b: 4/1=4, a: 4/1=4 -> tie -> "a" < "b".
			p: Problem{
				Nodes:    []Node{n("b", 4), n("a", 4)},
				Requests: []Request{req("r", 1)},
			},
			want: Result{Placements: map[string]Placement{"r": {"a": 1}}},
		},
		{
			name: "each replica is load",
			// n1=0,n2=2: n1 (0<2) -> n1=1; n1 (1<2) -> n1=2; tie 2=2 -> n1=3;
			// 3>2 -> n2=3.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 2)},
				Requests: []Request{req("r", 4)},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 3, "n2": 1}}},
		},
		{
			name: "replica load setting",
			// load 10 per replica. n1=0,n2=15: n1 -> 10; 10<15 n1 -> 20;
			// 20>15 n2 -> 25.
			p: Problem{
				Nodes:       []Node{n("n1", 0), n("n2", 15)},
				Requests:    []Request{req("r", 3)},
				ReplicaLoad: 10,
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 2, "n2": 1}}},
		},
		{
			name: "replicas of other releases count",
			// a: tie 0=0 -> n1 (load 1). b: n1 1 > n2 0 -> n2.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0)},
				Requests: []Request{req("a", 1), req("b", 1)},
			},
			want: Result{Placements: map[string]Placement{"a": {"n1": 1}, "b": {"n2": 1}}},
		},
		{
			name: "weight scales replica load",
			// w(n1)=3, w(n2)=1, all idle. Scores after k replicas: n1 k/3, n2 k.
			// 0=0 n1 (1/3); 1/3>0 n2 (1); 1/3<1 n1 (2/3); 2/3<1 n1 (1);
			// 1=1 n1 (4/3); 4/3>1 n2 (2) -> n1=4, n2=2: the 3:1 ratio as
			// closely as 6 allows with ties to n1.
			p: Problem{
				Nodes:    []Node{inPool(n("n1", 0), "w3"), n("n2", 0)},
				Pools:    map[string]Pool{"w3": {Weight: 3}},
				Requests: []Request{req("r", 6)},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 4, "n2": 2}}},
		},
		{
			name: "pool filter",
			// n1 (pool a) 0 is least loaded but not allowed -> n2 (pool b) 100.
			p: Problem{
				Nodes: []Node{inPool(n("n1", 0), "a"), inPool(n("n2", 100), "b")},
				Requests: []Request{{
					Release: "r", Replicas: 1, GPUs: 1, Pools: []string{"b"},
				}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n2": 1}}},
		},
		{
			name: "memory filter",
			// need 80Gi per GPU: n1 40Gi < 80Gi is out, n2 80Gi >= 80Gi.
			p: Problem{
				Nodes:    []Node{withMem(n("n1", 0), 40*gi), n("n2", 50)},
				Requests: []Request{{Release: "r", Replicas: 1, GPUs: 1, GPUMemory: 80 * gi}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n2": 1}}},
		},
		{
			name: "cpu-only replica ignores memory and GPUs",
			// GPUs=0: n1 has no GPUs and 0 memory but takes it (0 < 5).
			p: Problem{
				Nodes:    []Node{withMem(withGPUs(n("n1", 0), 0, 0), 0), n("n2", 5)},
				Requests: []Request{{Release: "r", Replicas: 1, GPUMemory: 80 * gi}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1}}},
		},
		{
			name: "max per node",
			// max 2: tie 0=0 n1 (1); 1>0 n2 (1); tie 1=1 n1 (2); 2>1 n2 (2);
			// 5th replica: both nodes at max -> unplaced.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0)},
				Requests: []Request{{Release: "r", Replicas: 5, GPUs: 1, MaxPerNode: 2}},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"n1": 2, "n2": 2}},
				Unplaced: []Unplaced{{Release: "r", Count: 1, Rejected: []Rejection{
					{"n1", MaxPerNodeReached{Max: 2}},
					{"n2", MaxPerNodeReached{Max: 2}},
				}}},
			},
		},
		{
			name: "reserve holds GPUs back",
			// n1: 8 GPUs - 4 used - 2 reserve = 2 free: one 2-GPU replica,
			// then 0 free; the second replica is unplaced (used 4+2=6,
			// 6+2 reserve+2 requested = 10 > 8).
			p: Problem{
				Nodes:    []Node{inPool(withGPUs(n("n1", 0), 8, 4), "p")},
				Pools:    map[string]Pool{"p": {Reserve: 2}},
				Requests: []Request{{Release: "r", Replicas: 2, GPUs: 2}},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"n1": 1}},
				Unplaced: []Unplaced{{Release: "r", Count: 1, Rejected: []Rejection{
					{"n1", InsufficientResource{Resource: GPUResource, Requested: 2, Used: 6, Reserved: 2, Capacity: 8}},
				}}},
			},
		},
		{
			name: "reserve evicts kept replicas too",
			// n1 free = 8-4-2 = 2 -> keeps 2 of its 3 1-GPU replicas; the third
			// goes to n2 (free 8).
			p: Problem{
				Nodes:    []Node{inPool(withGPUs(n("n1", 0), 8, 4), "p"), n("n2", 100)},
				Pools:    map[string]Pool{"p": {Reserve: 2}},
				Requests: []Request{req("r", 3)},
				Current:  map[string]Placement{"r": {"n1": 3}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 2, "n2": 1}}},
		},
		{
			name: "unchanged world moves nothing",
			// n1 would win a fresh placement (0 < 100), but both current
			// replicas are feasible and stay.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 100)},
				Requests: []Request{req("r", 2)},
				Current:  map[string]Placement{"r": {"n2": 2}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n2": 2}}},
		},
		{
			name: "scale 3 to 5 adds 2 without moving",
			// keep n3=3 (load 0+3=3); add: n1 0, n2 0 -> n1; n2 0 < 1 -> n2.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0), n("n3", 0)},
				Requests: []Request{req("r", 5)},
				Current:  map[string]Placement{"r": {"n3": 3}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1, "n2": 1, "n3": 3}}},
		},
		{
			name: "scale down from the most loaded",
			// loads n1 0+1=1, n2 10+1=11, n3 5+1=6; 3 -> 1: drop n2 (11),
			// then n3 (6 > 1); keep n1.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 10), n("n3", 5)},
				Requests: []Request{req("r", 1)},
				Current:  map[string]Placement{"r": {"n1": 1, "n2": 1, "n3": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1}}},
		},
		{
			name: "scale down re-scores after each removal",
			// n1 0+3=3, n2 2+1=3; 4 -> 2. tie 3=3 -> larger name n2 -> n2 0
			// (2); n1 3 > 2 -> n1=2 (2).
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 2)},
				Requests: []Request{req("r", 2)},
				Current:  map[string]Placement{"r": {"n1": 3, "n2": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 2}}},
		},
		{
			name: "scale to zero",
			p: Problem{
				Nodes:    []Node{n("n1", 0)},
				Requests: []Request{req("r", 0)},
				Current:  map[string]Placement{"r": {"n1": 3}},
			},
			want: Result{Placements: map[string]Placement{"r": {}}},
		},
		{
			name: "removed node is replaced",
			// gone no longer exists; keep n1=1. Place 2: n2 0 < n1 1 -> n2;
			// tie 1=1 -> n1.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0)},
				Requests: []Request{req("r", 3)},
				Current:  map[string]Placement{"r": {"gone": 2, "n1": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 2, "n2": 1}}},
		},
		{
			name: "replica on a disallowed pool moves",
			// n1 left the allowed pools; its replica is re-placed on n2.
			p: Problem{
				Nodes: []Node{inPool(n("n1", 0), "old"), inPool(n("n2", 50), "new")},
				Requests: []Request{{
					Release: "r", Replicas: 1, GPUs: 1, Pools: []string{"new"},
				}},
				Current: map[string]Placement{"r": {"n1": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n2": 1}}},
		},
		{
			name: "kept replicas that no longer fit move",
			// n1 used rose to 7 of 8: free 1 keeps 1 of 2; the other goes to n2.
			p: Problem{
				Nodes:    []Node{withGPUs(n("n1", 0), 8, 7), n("n2", 9)},
				Requests: []Request{req("r", 2)},
				Current:  map[string]Placement{"r": {"n1": 2}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1, "n2": 1}}},
		},
		{
			name: "max per node lowered trims kept",
			// max 1: n1 keeps 1 of 3 (load 0+1=1). Place 2: n2 0 < n1 1 (at
			// max anyway) -> n2; n2 at max, n1 at max -> n3 (5).
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0), n("n3", 5)},
				Requests: []Request{{Release: "r", Replicas: 3, GPUs: 1, MaxPerNode: 1}},
				Current:  map[string]Placement{"r": {"n1": 3}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1, "n2": 1, "n3": 1}}},
		},
		{
			name: "keep happens before any placement",
			// a (first) needs 1 new 8-GPU replica; n1 is idle-looking (0) but b
			// runs there with 8 GPUs, so a must take n2 instead of evicting b.
			p: Problem{
				Nodes: []Node{n("n1", 0), n("n2", 50)},
				Requests: []Request{
					{Release: "a", Replicas: 1, GPUs: 8},
					{Release: "b", Replicas: 1, GPUs: 8},
				},
				Current: map[string]Placement{"b": {"n1": 1}},
			},
			want: Result{Placements: map[string]Placement{"a": {"n2": 1}, "b": {"n1": 1}}},
		},
		{
			name: "spread prefers nodes without the release",
			// without spread: n1 0 -> 1, 1 < 5 -> n1 again. With spread n2
			// (5) is taken because n1 already holds r; third: both hold r,
			// n1 1 < n2 6 -> n1.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 5)},
				Requests: []Request{{Release: "r", Replicas: 3, GPUs: 1, Spread: true}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 2, "n2": 1}}},
		},
		{
			name: "spread trims doubled nodes first",
			// n1 0+2=2, n2 9+1=10; 3 -> 2: n1 holds 2 so it goes first
			// despite 2 < 10.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 9)},
				Requests: []Request{{Release: "r", Replicas: 2, GPUs: 1, Spread: true}},
				Current:  map[string]Placement{"r": {"n1": 2, "n2": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1, "n2": 1}}},
		},
		{
			name: "unrequested releases are not load",
			// old runs 5 on n1 but is not requested: n1 0 ties n2 0 -> n1.
			p: Problem{
				Nodes:    []Node{n("n1", 0), n("n2", 0)},
				Requests: []Request{req("r", 1)},
				Current:  map[string]Placement{"old": {"n1": 5}},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1}}},
		},
		{
			name: "duplicate request ignored",
			p: Problem{
				Nodes:    []Node{n("n1", 0)},
				Requests: []Request{req("r", 1), req("r", 3)},
			},
			want: Result{Placements: map[string]Placement{"r": {"n1": 1}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.p)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Place() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(placeNaive(tc.p), got); diff != "" {
				t.Errorf("Place() differs from placeNaive (-naive +got):\n%s", diff)
			}
		})
	}
}

func TestUnplacedReasons(t *testing.T) {
	// Four nodes, one reason each, checked in the order pool, memory,
	// max_per_node, GPUs:
	//   a: pool "cpu" not allowed (also too little memory: pool wins)
	//   b: 40Gi < 80Gi
	//   c: holds 1 kept replica = max 1
	//   d: 8 - 6 used - 1 reserve = 1 free < 2
	// Nodes c and d would also fail other checks only after their reason.
	p := Problem{
		Nodes: []Node{
			withMem(inPool(n("a", 0), "cpu"), 16*gi),
			inPool(withMem(n("b", 0), 40*gi), "gpu"),
			inPool(n("c", 0), "gpu"),
			inPool(withGPUs(n("d", 0), 8, 6), "gpu"),
		},
		Pools: map[string]Pool{"gpu": {Reserve: 1}},
		Requests: []Request{{
			Release: "r", Replicas: 3, GPUs: 2, GPUMemory: 80 * gi,
			Pools: []string{"gpu", "gpu2", "gpu"}, MaxPerNode: 1,
		}},
		Current: map[string]Placement{"r": {"c": 1}},
	}
	got := Place(p)
	want := []Unplaced{{Release: "r", Count: 2, Rejected: []Rejection{
		{"a", PoolNotAllowed{Pool: "cpu", Allowed: []string{"gpu", "gpu2"}}},
		{"b", InsufficientGPUMemory{Requested: 80 * gi, Capacity: 40 * gi}},
		{"c", MaxPerNodeReached{Max: 1}},
		{"d", InsufficientResource{Resource: GPUResource, Requested: 2, Used: 6, Reserved: 1, Capacity: 8}},
	}}}
	if diff := cmp.Diff(want, got.Unplaced); diff != "" {
		t.Fatalf("Unplaced mismatch (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, r := range got.Unplaced[0].Rejected {
		msgs = append(msgs, r.String())
	}
	wantMsgs := []string{
		`a: node pool "cpu" not in allowed pools [gpu gpu2]`,
		"b: Insufficient GPU memory per GPU (requested 80Gi, capacity 40Gi)",
		"c: node already has max_per_node (1) replicas of the release",
		"d: Insufficient nvidia.com/gpu (requested 2, used 6, reserved 1, capacity 8)",
	}
	if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	wantSummary := "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, " +
		"1 node(s) at max_per_node for the release, 1 node(s) had insufficient GPU memory per GPU, " +
		"1 node(s) not in allowed pools"
	if s := got.Unplaced[0].String(); s != wantSummary {
		t.Errorf("String() = %q, want %q", s, wantSummary)
	}
}

func TestReasonMessages(t *testing.T) {
	tests := []struct {
		r    Reason
		want string
	}{
		{InsufficientResource{Resource: GPUResource, Requested: 2, Used: 7, Capacity: 8},
			"Insufficient nvidia.com/gpu (requested 2, used 7, capacity 8)"},
		{InsufficientGPUMemory{Requested: 80 * gi, Capacity: 24*gi + 1},
			"Insufficient GPU memory per GPU (requested 80Gi, capacity 25769803777)"},
		{InsufficientGPUMemory{Requested: 512 << 20, Capacity: 0},
			"Insufficient GPU memory per GPU (requested 512Mi, capacity 0)"},
		{PoolNotAllowed{Pool: "", Allowed: []string{"a"}}, "node is in no pool; allowed pools [a]"},
		{MaxPerNodeReached{Max: 2}, "node already has max_per_node (2) replicas of the release"},
	}
	for _, tc := range tests {
		if got := tc.r.Message(); got != tc.want {
			t.Errorf("%#v.Message() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestUnplacedSummaryCounts(t *testing.T) {
	// 3 nodes out of GPUs, 2 in the wrong pool: most frequent first.
	u := Unplaced{Rejected: []Rejection{
		{"a", PoolNotAllowed{Pool: "x", Allowed: []string{"y"}}},
		{"b", InsufficientResource{Resource: GPUResource, Requested: 1, Used: 8, Capacity: 8}},
		{"c", InsufficientResource{Resource: GPUResource, Requested: 1, Used: 8, Capacity: 8}},
		{"d", PoolNotAllowed{Pool: "x", Allowed: []string{"y"}}},
		{"e", InsufficientResource{Resource: GPUResource, Requested: 1, Used: 4, Capacity: 4}},
	}}
	want := "0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) not in allowed pools"
	if got := u.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (Unplaced{}).String(), "0/0 nodes are available: no nodes"; got != want {
		t.Errorf("empty String() = %q, want %q", got, want)
	}
}

func TestDeterministicAcrossNodeOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 200 {
		p := randomProblem(rng)
		want := Place(p)
		for range 5 {
			q := p
			q.Nodes = append([]Node(nil), p.Nodes...)
			rng.Shuffle(len(q.Nodes), func(i, j int) { q.Nodes[i], q.Nodes[j] = q.Nodes[j], q.Nodes[i] })
			if diff := cmp.Diff(want, Place(q)); diff != "" {
				t.Fatalf("problem %d: shuffled nodes changed the result (-want +got):\n%s", i, diff)
			}
		}
	}
}

// TestPlaceMatchesNaive checks the heap implementation against the linear
// scan reference on random small problems with many ties, shared request
// classes, stale current placements and unplaceable replicas.
func TestPlaceMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 3000 {
		p := randomProblem(rng)
		if diff := cmp.Diff(placeNaive(p), Place(p)); diff != "" {
			t.Fatalf("problem %d %+v: (-naive +got):\n%s", i, p, diff)
		}
	}
}

// TestReplanIsStable checks the churn promises on random problems: feeding
// a result back moves nothing and places nothing more, and raising one
// release's replicas only adds.
func TestReplanIsStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		p := randomProblem(rng)
		first := Place(p)
		p.Current = first.Placements
		again := Place(p)
		if diff := cmp.Diff(first.Placements, again.Placements); diff != "" {
			t.Fatalf("problem %d: replan moved replicas (-first +again):\n%s", i, diff)
		}
		if diff := cmp.Diff(unplacedCounts(first), unplacedCounts(again)); diff != "" {
			t.Fatalf("problem %d: replan changed unplaced counts (-first +again):\n%s", i, diff)
		}
		if len(p.Requests) == 0 {
			continue
		}
		p.Requests = append([]Request(nil), p.Requests...)
		k := rng.IntN(len(p.Requests))
		p.Requests[k].Replicas += 1 + rng.IntN(3)
		grown := Place(p)
		for rel, before := range first.Placements {
			for node, c := range before {
				if grown.Placements[rel][node] < c {
					t.Fatalf("problem %d: scaling %s up moved %s off %s (%d -> %d)",
						i, p.Requests[k].Release, rel, node, c, grown.Placements[rel][node])
				}
			}
		}
	}
}

func TestPlaceRespectsConstraints(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		p := randomProblem(rng)
		checkInvariants(t, fmt.Sprint("problem ", i), p, Place(p))
	}
}

func TestPlaceDoesNotModifyProblem(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for range 100 {
		p := randomProblem(rng)
		before := clone(p)
		Place(p)
		if diff := cmp.Diff(before, p); diff != "" {
			t.Fatalf("Place modified its problem (-before +after):\n%s", diff)
		}
	}
}

func unplacedCounts(r Result) map[string]int {
	m := map[string]int{}
	for _, u := range r.Unplaced {
		m[u.Release] = u.Count
	}
	return m
}

func checkInvariants(t *testing.T, name string, p Problem, res Result) {
	t.Helper()
	byName := map[string]Node{} // by ID
	for _, nd := range p.Nodes {
		if old, ok := byName[nd.ID()]; !ok || compareNodes(nd, old) < 0 {
			byName[nd.ID()] = nd
		}
	}
	gpus := map[string]int{}
	seen := map[string]bool{}
	unplaced := unplacedCounts(res)
	for _, r := range p.Requests {
		if seen[r.Release] {
			continue
		}
		seen[r.Release] = true
		pl, ok := res.Placements[r.Release]
		if !ok {
			t.Fatalf("%s: no placement for %s", name, r.Release)
		}
		if got := pl.Total() + unplaced[r.Release]; got != max(r.Replicas, 0) {
			t.Fatalf("%s: %s placed+unplaced = %d, want %d", name, r.Release, got, r.Replicas)
		}
		for node, c := range pl {
			nd, ok := byName[node]
			switch {
			case !ok:
				t.Fatalf("%s: %s on unknown node %s", name, r.Release, node)
			case nd.Unusable != nil:
				t.Fatalf("%s: %s on unusable node %s (%s)", name, r.Release, node, nd.Unusable.Message())
			case c <= 0:
				t.Fatalf("%s: %s has %d on %s", name, r.Release, c, node)
			case len(r.Pools) > 0 && !contains(r.Pools, nd.Pool):
				t.Fatalf("%s: %s on %s in pool %q", name, r.Release, node, nd.Pool)
			case r.GPUs > 0 && nd.GPUMemory < r.GPUMemory:
				t.Fatalf("%s: %s on %s with too little memory", name, r.Release, node)
			case r.MaxPerNode > 0 && c > r.MaxPerNode:
				t.Fatalf("%s: %s has %d > max %d on %s", name, r.Release, c, r.MaxPerNode, node)
			}
			gpus[node] += c * max(r.GPUs, 0)
		}
	}
	for node, g := range gpus {
		nd := byName[node]
		reserve := 0
		if nd.Pool != "" {
			reserve = max(p.Pools[nd.Pool].Reserve, 0)
		}
		if g > 0 && g > max(nd.GPUs, 0)-max(nd.Used, 0)-reserve {
			t.Fatalf("%s: node %s overcommitted: %d GPUs placed, %+v reserve %d", name, node, g, nd, reserve)
		}
	}
	for _, u := range res.Unplaced {
		if len(u.Rejected) != len(byName) {
			t.Fatalf("%s: %s rejected %d of %d nodes", name, u.Release, len(u.Rejected), len(byName))
		}
		for _, rj := range u.Rejected {
			if why := byName[rj.Node].Unusable; why != nil && rj.Reason != why {
				t.Fatalf("%s: %s: unusable node %s rejected for %v, want %v", name, u.Release, rj.Node, rj.Reason, why)
			}
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func clone(p Problem) Problem {
	q := p
	q.Nodes = append([]Node(nil), p.Nodes...)
	q.Requests = nil
	for _, r := range p.Requests {
		r.Pools = append([]string(nil), r.Pools...)
		q.Requests = append(q.Requests, r)
	}
	if p.Current != nil {
		q.Current = map[string]Placement{}
		for k, v := range p.Current {
			c := Placement{}
			for n, x := range v {
				c[n] = x
			}
			q.Current[k] = c
		}
	}
	if p.Pools != nil {
		q.Pools = map[string]Pool{}
		for k, v := range p.Pools {
			q.Pools[k] = v
		}
	}
	return q
}

// randomProblem makes small worlds dense in ties (integer connections, few
// weights), shared classes (few pools, memory sizes and GPU counts), and
// edge cases (duplicate nodes, stale current placements, full nodes).
func randomProblem(rng *rand.Rand) Problem {
	pools := []string{"", "a", "b", "c"}
	mems := []int64{16 * gi, 40 * gi, 80 * gi}
	p := Problem{
		Pools:       map[string]Pool{},
		Current:     map[string]Placement{},
		ReplicaLoad: []float64{0, 1, 2.5}[rng.IntN(3)],
	}
	for _, name := range pools[1:] {
		if rng.IntN(4) > 0 {
			p.Pools[name] = Pool{Weight: []float64{0, 1, 2, 0.5, 3}[rng.IntN(5)], Reserve: rng.IntN(3)}
		}
	}
	nodes := 1 + rng.IntN(15)
	// Most nodes usable; the others for one of the node reasons, two of
	// them taints that count apart.
	unusable := []Reason{nil, nil, nil, nil, nil, nil, nil, nil, NodeUnschedulable{}, NodeNotReady{},
		UntoleratedTaint{"dedicated", "train", "NoSchedule"}, UntoleratedTaint{"gpu-broken", "", "NoExecute"},
		NoAllocatableGPUs{Reported: "4"}, NoMatchingPool{}}
	var names []string
	for i := range nodes {
		name := fmt.Sprintf("n%02d", i)
		if i > 0 && rng.IntN(15) == 0 {
			name = names[rng.IntN(len(names))] // duplicate name
		}
		names = append(names, name)
		gpus := rng.IntN(13)
		p.Nodes = append(p.Nodes, Node{
			Name:        name,
			Pool:        pools[rng.IntN(len(pools))],
			GPUs:        gpus,
			Used:        rng.IntN(4),
			GPUMemory:   mems[rng.IntN(len(mems))],
			Connections: float64(rng.IntN(6)),
			Unusable:    unusable[rng.IntN(len(unusable))],
		})
	}
	names = append(names, "gone")
	for i := range rng.IntN(7) {
		r := Request{
			Release:    fmt.Sprintf("r%d", i),
			Replicas:   rng.IntN(10),
			GPUs:       rng.IntN(4),
			GPUMemory:  []int64{0, 0, 16 * gi, 24 * gi, 40 * gi, 80 * gi}[rng.IntN(6)],
			MaxPerNode: rng.IntN(4),
			Spread:     rng.IntN(3) == 0,
		}
		for _, pool := range []string{"a", "b", "c", "a"} {
			if rng.IntN(4) == 0 {
				r.Pools = append(r.Pools, pool) // maybe twice
			}
		}
		if rng.IntN(15) == 0 {
			r.Pools = append(r.Pools, "zz") // no such pool
		}
		if rng.IntN(10) == 0 {
			r.Release = "r0" // duplicate release
		}
		p.Requests = append(p.Requests, r)
	}
	for i := range rng.IntN(8) {
		pl := Placement{}
		for range rng.IntN(4) {
			pl[names[rng.IntN(len(names))]] += rng.IntN(4)
		}
		p.Current[fmt.Sprintf("r%d", i)] = pl
	}
	return p
}

// FuzzPlace explores random worlds beyond the fixed seeds of the tests
// above: Place must agree with the reference and keep its constraints.
func FuzzPlace(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*31+1)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		p := randomProblem(rand.New(rand.NewPCG(a, b)))
		got := Place(p)
		if diff := cmp.Diff(placeNaive(p), got); diff != "" {
			t.Fatalf("(-naive +got):\n%s", diff)
		}
		checkInvariants(t, "fuzz", p, got)
	})
}
