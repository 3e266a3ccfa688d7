package schedule

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// in puts a node in a cluster.
func in(cluster string, nd Node) Node { nd.Cluster = cluster; return nd }

// fleetReq asks for replicas of release over the given clusters (none:
// any) with per-cluster bounds.
func fleetReq(release string, replicas, minPC, maxPC int, clusters ...string) Request {
	return Request{Release: release, Replicas: replicas, GPUs: 1,
		MinPerCluster: minPC, MaxPerCluster: maxPC, Clusters: clusters}
}

func TestNodeID(t *testing.T) {
	for _, tc := range []struct {
		n    Node
		want string
	}{
		{Node{Name: "gpu-a"}, "gpu-a"},
		{Node{Name: "gpu-a", Cluster: "eu-1"}, "eu-1/gpu-a"},
	} {
		if got := tc.n.ID(); got != tc.want {
			t.Errorf("%+v.ID() = %q, want %q", tc.n, got, tc.want)
		}
		c, name := SplitID(tc.want)
		if c != tc.n.Cluster || name != tc.n.Name {
			t.Errorf("SplitID(%q) = %q, %q", tc.want, c, name)
		}
	}
	// compareID orders as the IDs do, without building them.
	nodes := []Node{{Name: "b"}, {Name: "a", Cluster: "eu"}, {Name: "x", Cluster: "eu-1"},
		{Name: "eu0"}, {Name: "a", Cluster: "e"}, {Name: "eu/a"}, {Name: "z", Cluster: "eu"}}
	for _, a := range nodes {
		for _, b := range nodes {
			if got, want := compareID(a, b), strings.Compare(a.ID(), b.ID()); got != want {
				t.Errorf("compareID(%s, %s) = %d, want %d", a.ID(), b.ID(), got, want)
			}
		}
	}
}

func TestFleetPlace(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want Result
	}{
		{
			name: "same node name in two clusters: two nodes",
			// eu/gpu-a 0, us/gpu-a 0: tie -> "eu/gpu-a" < "us/gpu-a" (1);
			// 1 > 0 -> us/gpu-a (1).
			p: Problem{
				Nodes:    []Node{in("us", n("gpu-a", 0)), in("eu", n("gpu-a", 0))},
				Requests: []Request{req("r", 2)},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/gpu-a": 1, "us/gpu-a": 1}}},
		},
		{
			name: "clusters filter",
			// us/a 0 is least loaded but us is not selected -> eu/a 5 (and
			// again: 6 is all there is).
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 5)), in("us", n("a", 0))},
				Requests: []Request{fleetReq("r", 2, 0, 0, "eu")},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 2}}},
		},
		{
			name: "max per cluster",
			// eu/a 0, eu/b 0, us/a 10. max 2: tie eu/a (1); eu/b 0 (1);
			// eu holds 2 = max, so us/a (11) although eu/a is at 1.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("eu", n("b", 0)), in("us", n("a", 10))},
				Requests: []Request{fleetReq("r", 3, 0, 2)},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 1, "eu/b": 1, "us/a": 1}}},
		},
		{
			name: "max per cluster trims kept replicas",
			// kept eu/a 2 (score 2), eu/b 1 (score 1): eu holds 3 > max 2,
			// trim the most loaded, eu/a -> 1. 2 kept of 3: the third
			// cannot go to eu (at max) -> us/a 10.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("eu", n("b", 0)), in("us", n("a", 10))},
				Requests: []Request{fleetReq("r", 3, 0, 2)},
				Current:  map[string]Placement{"r": {"eu/a": 2, "eu/b": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 1, "eu/b": 1, "us/a": 1}}},
		},
		{
			name: "min per cluster, one cluster too small",
			// min 2 in name order ap, eu, us. ap/a has 1 free GPU: 1, then
			// nothing fits -> short 1 of 2. eu: tie eu/a (1), eu/b 0 (1).
			// us: us/a (1), us/a (2). 1 left for everything: ap/a full,
			// eu/a 1 = eu/b 1 < us/a 2 -> eu/a (2).
			p: Problem{
				Nodes: []Node{
					in("ap", withGPUs(n("a", 0), 8, 7)),
					in("eu", n("a", 0)), in("eu", n("b", 0)),
					in("us", n("a", 0)),
				},
				Requests: []Request{fleetReq("r", 6, 2, 0)},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"ap/a": 1, "eu/a": 2, "eu/b": 1, "us/a": 2}},
				Short:      []ClusterShort{{Release: "r", Cluster: "ap", Min: 2, Placed: 1}},
			},
		},
		{
			name: "min per cluster, a selected cluster without nodes",
			// clusters eu and zz: zz has no node, 0 of 1; both replicas go
			// to eu: eu/a (1), eu/a (2).
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0))},
				Requests: []Request{fleetReq("r", 2, 1, 0, "zz", "eu")},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"eu/a": 2}},
				Short:      []ClusterShort{{Release: "r", Cluster: "zz", Min: 1, Placed: 0}},
			},
		},
		{
			name: "min per cluster, a cluster of unusable nodes only",
			// No cluster selected: the minimum applies to every cluster of
			// Nodes, us (cordoned) included: 0 of 1.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), unusable(in("us", n("a", 0)), NodeUnschedulable{})},
				Requests: []Request{fleetReq("r", 1, 1, 0)},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"eu/a": 1}},
				Short:      []ClusterShort{{Release: "r", Cluster: "us", Min: 1, Placed: 0}},
			},
		},
		{
			name: "min times clusters above replicas: clusters in name order",
			// min 2, 3 replicas: ap 2 (ap/a twice), eu gets the last one:
			// 1 of 2, short.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("ap", n("a", 50))},
				Requests: []Request{fleetReq("r", 3, 2, 0)},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"ap/a": 2, "eu/a": 1}},
				Short:      []ClusterShort{{Release: "r", Cluster: "eu", Min: 2, Placed: 1}},
			},
		},
		{
			name: "cluster weights shift load",
			// eu weight 3, us 1, idle. Scores after k replicas: eu k/3, us k.
			// 0=0 eu (1/3); us 0 (1); 1/3<1 eu (2/3); 2/3<1 eu (1) -> 3:1.
			p: Problem{
				Nodes:          []Node{in("eu", n("a", 0)), in("us", n("a", 0))},
				Requests:       []Request{req("r", 4)},
				ClusterWeights: map[string]float64{"eu": 3},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 3, "us/a": 1}}},
		},
		{
			name: "cluster weight multiplies pool weight",
			// eu/a: pool weight 4 × cluster 0.5 = 2, conns 10 -> 5;
			// us/a: 1 × 1 (0 means 1), conns 6 -> 6. eu/a (5.5); 5.5 < 6
			// eu/a (6); 6 = 6, tie to "eu/a" (6.5); us/a (7).
			p: Problem{
				Nodes:          []Node{inPool(in("eu", n("a", 10)), "big"), in("us", n("a", 6))},
				Pools:          map[string]Pool{"big": {Weight: 4}},
				Requests:       []Request{req("r", 4)},
				ClusterWeights: map[string]float64{"eu": 0.5, "us": 0},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 3, "us/a": 1}}},
		},
		{
			name: "replicas per cluster: min = max = 2",
			// eu is idle, ap and us busy (100): unbounded, all 6 would go to
			// eu. min 2 fills ap, eu, us with 2 each first (ap/a 100, ap/b
			// 100: tie ap/a then ap/b; eu/a, eu/b; us/a, us/b), and max 2
			// leaves nothing else.
			p: Problem{
				Nodes: []Node{
					in("ap", n("a", 100)), in("ap", n("b", 100)),
					in("eu", n("a", 0)), in("eu", n("b", 0)),
					in("us", n("a", 100)), in("us", n("b", 100)),
				},
				Requests: []Request{fleetReq("r", 6, 2, 2)},
			},
			want: Result{Placements: map[string]Placement{"r": {
				"ap/a": 1, "ap/b": 1, "eu/a": 1, "eu/b": 1, "us/a": 1, "us/b": 1}}},
		},
		{
			name: "current placement kept across clusters",
			// eu/b and us/b are idle, but eu/a and us/a hold the replicas:
			// nothing moves. The third replica: eu/a 10+1, us/a 20+1,
			// eu/b 0, us/b 0 -> tie to "eu/b".
			p: Problem{
				Nodes: []Node{
					in("eu", n("a", 10)), in("eu", n("b", 0)),
					in("us", n("a", 20)), in("us", n("b", 0)),
				},
				Requests: []Request{req("r", 3)},
				Current:  map[string]Placement{"r": {"eu/a": 1, "us/a": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 1, "eu/b": 1, "us/a": 1}}},
		},
		{
			name: "kept replica of a cluster no longer selected moves",
			// us is dropped from the clusters: us/a's replica is not kept
			// and goes to the least loaded eu node, eu/b 0.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 10)), in("eu", n("b", 0)), in("us", n("a", 0))},
				Requests: []Request{fleetReq("r", 2, 0, 0, "eu")},
				Current:  map[string]Placement{"r": {"eu/a": 1, "us/a": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 1, "eu/b": 1}}},
		},
		{
			name: "a kept replica moves to meet a minimum",
			// eu/a keeps 3 of 3, but us (min 1) has room: one replica is
			// trimmed from eu (above its minimum) and placed on us/a.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("us", n("a", 50))},
				Requests: []Request{fleetReq("r", 3, 1, 0)},
				Current:  map[string]Placement{"r": {"eu/a": 3}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 2, "us/a": 1}}},
		},
		{
			name: "a kept replica stays when the short cluster is full",
			// us/a has no free GPU: us stays short, eu keeps its 3.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("us", withGPUs(n("a", 50), 8, 8))},
				Requests: []Request{fleetReq("r", 3, 1, 0)},
				Current:  map[string]Placement{"r": {"eu/a": 3}},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"eu/a": 3}},
				Short:      []ClusterShort{{Release: "r", Cluster: "us", Min: 1, Placed: 0}},
			},
		},
		{
			name: "scaling down keeps the minimums",
			// 4 kept, 3 wanted, min 1: us/a (score 51) is the most loaded,
			// but us is at its minimum; eu/a 3 (score 3) gives one.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("us", n("a", 50))},
				Requests: []Request{fleetReq("r", 3, 1, 0)},
				Current:  map[string]Placement{"r": {"eu/a": 3, "us/a": 1}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 2, "us/a": 1}}},
		},
		{
			name: "min above max aims at max",
			// min 3, max 2: each cluster gets 2 and is short of 3.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("us", n("a", 0))},
				Requests: []Request{fleetReq("r", 6, 3, 2)},
			},
			want: Result{
				Placements: map[string]Placement{"r": {"eu/a": 2, "us/a": 2}},
				Unplaced: []Unplaced{{Release: "r", Count: 2, Rejected: []Rejection{
					{"eu/a", MaxPerClusterReached{Cluster: "eu", Max: 2}},
					{"us/a", MaxPerClusterReached{Cluster: "us", Max: 2}},
				}}},
				Short: []ClusterShort{
					{Release: "r", Cluster: "eu", Min: 3, Placed: 2},
					{Release: "r", Cluster: "us", Min: 3, Placed: 2},
				},
			},
		},
		{
			name: "spread within the minimum, then across clusters",
			// spread, min 1 on eu (eu/a 0, eu/b 5) and us (us/a 1): eu/a,
			// us/a; then the 3rd prefers a node without r: eu/b.
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0)), in("eu", n("b", 5)), in("us", n("a", 1))},
				Requests: []Request{{Release: "r", Replicas: 3, GPUs: 1, MinPerCluster: 1, Spread: true}},
			},
			want: Result{Placements: map[string]Placement{"r": {"eu/a": 1, "eu/b": 1, "us/a": 1}}},
		},
		{
			name: "no replicas: short nowhere",
			p: Problem{
				Nodes:    []Node{in("eu", n("a", 0))},
				Requests: []Request{fleetReq("r", 0, 1, 0)},
			},
			want: Result{Placements: map[string]Placement{"r": {}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.p)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Place mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, placeNaive(tc.p)); diff != "" {
				t.Errorf("placeNaive mismatch (-want +got):\n%s", diff)
			}
			checkFleetInvariants(t, tc.name, tc.p, got)
		})
	}
}

func TestClusterRejections(t *testing.T) {
	// r runs in eu only (max 1 there); 3 replicas. eu/a takes 1; then eu
	// is at max_per_cluster; the three us nodes are not selected, and the
	// cordoned eu/c keeps its own reason.
	p := Problem{
		Nodes: []Node{
			in("eu", n("a", 0)), in("eu", n("b", 0)), unusable(in("eu", n("c", 0)), NodeUnschedulable{}),
			in("us", n("a", 0)), in("us", n("b", 0)), in("us", n("gpu-a", 0)),
		},
		Requests: []Request{fleetReq("r", 3, 0, 1, "eu")},
	}
	got := Place(p)
	want := []Unplaced{{Release: "r", Count: 2, Rejected: []Rejection{
		{"eu/a", MaxPerClusterReached{Cluster: "eu", Max: 1}},
		{"eu/b", MaxPerClusterReached{Cluster: "eu", Max: 1}},
		{"eu/c", NodeUnschedulable{}},
		{"us/a", ClusterNotSelected{Cluster: "us"}},
		{"us/b", ClusterNotSelected{Cluster: "us"}},
		{"us/gpu-a", ClusterNotSelected{Cluster: "us"}},
	}}}
	if diff := cmp.Diff(want, got.Unplaced); diff != "" {
		t.Fatalf("Unplaced mismatch (-want +got):\n%s", diff)
	}
	wantSummary := "0/6 nodes are available: 3 node(s) were in clusters the release does not run in, " +
		"2 node(s) were in clusters at max_per_cluster for the release, 1 node(s) were unschedulable"
	if s := got.Unplaced[0].String(); s != wantSummary {
		t.Errorf("String() = %q, want %q", s, wantSummary)
	}
	// A saved plan reads back with the same summary.
	b, err := json.Marshal(got.Unplaced[0])
	if err != nil {
		t.Fatal(err)
	}
	var back Unplaced
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if s := back.String(); s != wantSummary {
		t.Errorf("read back: String() = %q, want %q", s, wantSummary)
	}
	if !strings.Contains(string(b), `{"node":"us/a","kind":"ClusterNotSelected","message":"node is in cluster \"us\", which the release does not run in"`) {
		t.Errorf("JSON %s", b)
	}
}

func TestFleetReasonMessages(t *testing.T) {
	tests := []struct {
		r    Reason
		want string
	}{
		{ClusterNotSelected{Cluster: "us-1"}, `node is in cluster "us-1", which the release does not run in`},
		{ClusterNotSelected{}, "node is in no cluster; the release runs only in named clusters"},
		{MaxPerClusterReached{Cluster: "eu-1", Max: 4}, `cluster "eu-1" already has max_per_cluster (4) replicas of the release`},
	}
	for _, tc := range tests {
		if got := tc.r.Message(); got != tc.want {
			t.Errorf("%#v.Message() = %q, want %q", tc.r, got, tc.want)
		}
		if got := tc.r.(fmt.Stringer).String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestOneClusterIsNoCluster: naming one cluster for every node changes
// the keys and nothing else.
func TestOneClusterIsNoCluster(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	prefix := func(pl Placement) Placement {
		out := Placement{}
		for k, v := range pl {
			out["dc/"+k] = v
		}
		return out
	}
	for i := range 500 {
		p := randomProblem(rng)
		want := Place(p)
		q := clone(p)
		for k := range q.Nodes {
			q.Nodes[k].Cluster = "dc"
		}
		for rel, pl := range q.Current {
			q.Current[rel] = prefix(pl)
		}
		got := Place(q)
		for rel, pl := range want.Placements {
			want.Placements[rel] = prefix(pl)
		}
		for k := range want.Unplaced {
			for j := range want.Unplaced[k].Rejected {
				want.Unplaced[k].Rejected[j].Node = "dc/" + want.Unplaced[k].Rejected[j].Node
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("problem %d: (-no cluster +one cluster):\n%s", i, diff)
		}
	}
}

// randomFleetProblem makes small fleets: node names shared between
// clusters, the odd node outside any cluster, cluster weights, requests
// selecting clusters (some unknown) with per-cluster bounds, and current
// placements by node ID, some stale.
func randomFleetProblem(rng *rand.Rand) Problem {
	p := randomProblem(rng)
	clusters := []string{"ap", "eu", "eu-1", "us"}
	p.ClusterWeights = map[string]float64{}
	for _, c := range clusters {
		if rng.IntN(3) == 0 {
			p.ClusterWeights[c] = []float64{0, 0.5, 2, 3}[rng.IntN(4)]
		}
	}
	var ids []string
	for k := range p.Nodes {
		if rng.IntN(10) > 0 {
			p.Nodes[k].Cluster = clusters[rng.IntN(len(clusters))]
		}
		// Fewer distinct names, so that clusters share them.
		p.Nodes[k].Name = fmt.Sprintf("n%d", rng.IntN(6))
		ids = append(ids, p.Nodes[k].ID())
	}
	ids = append(ids, "gone", "eu/gone")
	for k := range p.Requests {
		r := &p.Requests[k]
		if rng.IntN(2) == 0 {
			for _, c := range append(clusters, "zz", "eu") {
				if rng.IntN(3) == 0 {
					r.Clusters = append(r.Clusters, c)
				}
			}
		}
		r.MinPerCluster = []int{0, 0, 1, 2, 3}[rng.IntN(5)]
		r.MaxPerCluster = []int{0, 0, 1, 2, 4}[rng.IntN(5)]
		r.Replicas += rng.IntN(6)
	}
	for rel, pl := range p.Current {
		fresh := Placement{}
		for range len(pl) + rng.IntN(3) {
			fresh[ids[rng.IntN(len(ids))]] += 1 + rng.IntN(3)
		}
		p.Current[rel] = fresh
	}
	return p
}

func TestFleetMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for i := range 3000 {
		p := randomFleetProblem(rng)
		if diff := cmp.Diff(placeNaive(p), Place(p)); diff != "" {
			t.Fatalf("problem %d %+v: (-naive +got):\n%s", i, p, diff)
		}
	}
}

func TestFleetDeterministicAcrossNodeOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for i := range 300 {
		p := randomFleetProblem(rng)
		want := Place(p)
		for range 5 {
			q := p
			q.Nodes = slices.Clone(p.Nodes)
			rng.Shuffle(len(q.Nodes), func(i, j int) { q.Nodes[i], q.Nodes[j] = q.Nodes[j], q.Nodes[i] })
			if diff := cmp.Diff(want, Place(q)); diff != "" {
				t.Fatalf("problem %d: shuffled nodes changed the result (-want +got):\n%s", i, diff)
			}
		}
	}
}

func TestFleetReplanIsStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	for i := range 2000 {
		p := randomFleetProblem(rng)
		first := Place(p)
		p.Current = first.Placements
		again := Place(p)
		if diff := cmp.Diff(first.Placements, again.Placements); diff != "" {
			t.Fatalf("problem %d %+v: replan moved replicas (-first +again):\n%s", i, p, diff)
		}
		if diff := cmp.Diff(first.Short, again.Short); diff != "" {
			t.Fatalf("problem %d: replan changed Short (-first +again):\n%s", i, diff)
		}
	}
}

func TestFleetInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	for i := range 3000 {
		p := randomFleetProblem(rng)
		checkFleetInvariants(t, fmt.Sprint("problem ", i), p, Place(p))
	}
}

func TestFleetDoesNotModifyProblem(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 40))
	for range 200 {
		p := randomFleetProblem(rng)
		before := clone(p)
		before.ClusterWeights = maps.Clone(p.ClusterWeights)
		for k := range before.Requests {
			before.Requests[k].Clusters = slices.Clone(p.Requests[k].Clusters)
		}
		Place(p)
		if diff := cmp.Diff(before, p); diff != "" {
			t.Fatalf("Place modified its problem (-before +after):\n%s", diff)
		}
	}
}

// FuzzFleet explores random fleets: Place agrees with the reference and
// keeps the fleet invariants.
func FuzzFleet(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*17+3)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		p := randomFleetProblem(rand.New(rand.NewPCG(a, b)))
		got := Place(p)
		if diff := cmp.Diff(placeNaive(p), got); diff != "" {
			t.Fatalf("(-naive +got):\n%s", diff)
		}
		checkFleetInvariants(t, "fuzz", p, got)
	})
}

// checkFleetInvariants checks checkInvariants' rules and, per release:
// only selected clusters hold replicas, none holds more than
// MaxPerCluster, Short lists exactly the selected clusters below
// MinPerCluster, and, for the last request (which nothing placed after
// it could have crowded out), a cluster is short only when it has no
// room left or every other cluster holds no more than the minimum.
func checkFleetInvariants(t *testing.T, name string, p Problem, res Result) {
	t.Helper()
	checkInvariants(t, name, p, res)
	byID := map[string]Node{}
	var clusters []string
	for _, nd := range p.Nodes {
		if old, ok := byID[nd.ID()]; !ok || compareNodes(nd, old) < 0 {
			byID[nd.ID()] = nd
		}
		clusters = append(clusters, nd.Cluster)
	}
	clusters = slices.Compact(slices.Sorted(slices.Values(clusters)))
	seen := map[string]bool{}
	var wantShort []ClusterShort
	var last *Request
	for k, r := range p.Requests {
		if seen[r.Release] {
			continue
		}
		seen[r.Release] = true
		last = &p.Requests[k]
		perCluster := map[string]int{}
		for id, c := range res.Placements[r.Release] {
			cl, _ := SplitID(id)
			if nd := byID[id]; nd.Cluster != cl {
				cl = nd.Cluster // a name holding "/" outside a fleet
			}
			if len(r.Clusters) > 0 && !slices.Contains(r.Clusters, cl) {
				t.Fatalf("%s: %s on %s, cluster %q not in %v", name, r.Release, id, cl, r.Clusters)
			}
			perCluster[cl] += c
		}
		for cl, c := range perCluster {
			if r.MaxPerCluster > 0 && c > r.MaxPerCluster {
				t.Fatalf("%s: %s has %d > max %d in cluster %q", name, r.Release, c, r.MaxPerCluster, cl)
			}
		}
		if r.MinPerCluster > 0 && r.Replicas > 0 {
			targets := clusters
			if len(r.Clusters) > 0 {
				targets = slices.Compact(slices.Sorted(slices.Values(r.Clusters)))
			}
			for _, cl := range targets {
				if perCluster[cl] < r.MinPerCluster {
					wantShort = append(wantShort, ClusterShort{r.Release, cl, r.MinPerCluster, perCluster[cl]})
				}
			}
		}
	}
	slices.SortFunc(wantShort, func(a, b ClusterShort) int {
		return strings.Compare(a.Release+"\x00"+a.Cluster, b.Release+"\x00"+b.Cluster)
	})
	if diff := cmp.Diff(wantShort, res.Short); diff != "" {
		t.Fatalf("%s: Short (-want +got):\n%s", name, diff)
	}
	if last == nil || last.MinPerCluster == 0 {
		return
	}
	// The last request: free GPUs as everything placed leaves them.
	r := *last
	used := map[string]int{}
	for _, q := range p.Requests {
		for id, c := range res.Placements[q.Release] {
			used[id] += c * max(q.GPUs, 0)
		}
	}
	// Requests earlier in the slice with r's release were ignored; only
	// r's own GPUs count once, which the map above did per release.
	minPC := r.MinPerCluster
	if r.MaxPerCluster > 0 {
		minPC = min(minPC, r.MaxPerCluster)
	}
	pl := res.Placements[r.Release]
	perCluster := map[string]int{}
	for id, c := range pl {
		perCluster[byID[id].Cluster] += c
	}
	roomIn := func(cl string) bool {
		for id, nd := range byID {
			if nd.Cluster != cl || nd.Unusable != nil {
				continue
			}
			if len(r.Pools) > 0 && !contains(r.Pools, nd.Pool) {
				continue
			}
			if r.GPUs > 0 && nd.GPUMemory < r.GPUMemory {
				continue
			}
			if r.MaxPerNode > 0 && pl[id] >= r.MaxPerNode {
				continue
			}
			reserve := 0
			if nd.Pool != "" {
				reserve = max(p.Pools[nd.Pool].Reserve, 0)
			}
			if r.GPUs <= 0 || max(nd.GPUs, 0)-max(nd.Used, 0)-reserve-used[id] >= r.GPUs {
				return true
			}
		}
		return false
	}
	for _, s := range res.Short {
		if s.Release != r.Release || s.Placed >= minPC || !roomIn(s.Cluster) {
			continue
		}
		for cl, c := range perCluster {
			if c > minPC {
				t.Fatalf("%s: %s short in %q (%d of %d) with room there, while %q holds %d",
					name, r.Release, s.Cluster, s.Placed, minPC, cl, c)
			}
		}
	}
}

func TestFleetImageLocality(t *testing.T) {
	const img = "sha256:model"
	hold := func(nd Node) Node { nd.Images = map[string]int64{img: 0}; return nd }
	// Locality 0.5 (size unknown: all of it), min 1 in eu and us.
	// eu first: eu/a 10 × 0.5 = 5 < eu/b 6 -> eu/a (11, discounted 5.5).
	// us: us/a (8, discounted 4). The third, anywhere: eu/a 5.5, eu/b 6,
	// us/a 4 -> us/a.
	p := Problem{
		Nodes: []Node{
			hold(in("eu", n("a", 10))), in("eu", n("b", 6)),
			hold(in("us", n("a", 7))),
		},
		Requests:      []Request{{Release: "r", Replicas: 3, GPUs: 1, MinPerCluster: 1, Image: img}},
		ImageLocality: 0.5,
	}
	want := Result{
		Placements: map[string]Placement{"r": {"eu/a": 1, "us/a": 2}},
		ImageLocal: map[string][]string{"r": {"eu/a", "us/a"}},
	}
	if diff := cmp.Diff(want, Place(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// us not selected: its image does not draw the replicas. eu/a 5 <
	// eu/b 6 -> eu/a (5.5); 5.5 < 6 -> eu/a (6); 6 = 6, tie to the
	// smaller ID -> eu/a.
	p.Requests[0].Clusters = []string{"eu"}
	want = Result{
		Placements: map[string]Placement{"r": {"eu/a": 3}},
		ImageLocal: map[string][]string{"r": {"eu/a"}},
	}
	if diff := cmp.Diff(want, Place(p)); diff != "" {
		t.Errorf("eu only (-want +got):\n%s", diff)
	}
}
