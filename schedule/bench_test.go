package schedule

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// placeNaive is the reference: the rules of the package doc applied by
// linear scans over all nodes for every replica, O(replicas × nodes), with no
// heaps and no shared classes. It serves as the benchmark baseline and as
// the oracle TestPlaceMatchesNaive and TestFleetMatchesNaive compare Place
// against. It shares only the node sort order and the Reason types with the
// real implementation, and knows nothing of image locality.
func placeNaive(p Problem) Result {
	rl := p.ReplicaLoad
	if !(rl > 0) || math.IsInf(rl, 1) {
		rl = 1
	}
	in := slices.Clone(p.Nodes)
	slices.SortFunc(in, compareNodes)
	in = slices.CompactFunc(in, func(a, b Node) bool { return a.ID() == b.ID() })

	type nd struct {
		Node
		weight   float64
		reserve  int
		free     int
		replicas int
	}
	nodes := make([]nd, len(in))
	index := map[string]int{}
	var clusters []string // every node's cluster, sorted
	for i, n := range in {
		d := nd{Node: n, weight: 1}
		if pool, ok := p.Pools[n.Pool]; ok && n.Pool != "" {
			if pool.Weight > 0 && !math.IsInf(pool.Weight, 1) {
				d.weight = pool.Weight
			}
			d.reserve = max(pool.Reserve, 0)
		}
		if cw := p.ClusterWeights[n.Cluster]; cw > 0 && !math.IsInf(cw, 1) {
			d.weight = min(d.weight*cw, math.MaxFloat64)
		}
		if math.IsNaN(d.Connections) {
			d.Connections = math.Inf(1)
		}
		d.GPUs, d.Used = max(d.GPUs, 0), max(d.Used, 0)
		d.free = d.GPUs - d.Used - d.reserve
		nodes[i] = d
		index[n.ID()] = i
		clusters = append(clusters, n.Cluster)
	}
	clusters = slices.Compact(slices.Sorted(slices.Values(clusters)))
	score := func(i int) float64 {
		return (nodes[i].Connections + rl*float64(nodes[i].replicas)) / nodes[i].weight
	}

	type rq struct {
		Request
		minPC   int      // MinPerCluster, at most MaxPerCluster when set
		targets []string // clusters the minimum applies to
		counts  []int    // per node
	}
	var reqs []*rq
	seen := map[string]bool{}
	for _, r := range p.Requests {
		if seen[r.Release] {
			continue
		}
		seen[r.Release] = true
		r.Replicas, r.GPUs, r.MaxPerNode = max(r.Replicas, 0), max(r.GPUs, 0), max(r.MaxPerNode, 0)
		r.MinPerCluster, r.MaxPerCluster = max(r.MinPerCluster, 0), max(r.MaxPerCluster, 0)
		r.GPUMemory = max(r.GPUMemory, 0)
		if r.GPUs == 0 {
			r.GPUMemory = 0
		}
		if len(r.Pools) > 0 {
			r.Pools = slices.Compact(slices.Sorted(slices.Values(r.Pools)))
		} else {
			r.Pools = nil
		}
		q := &rq{Request: r, minPC: r.MinPerCluster, counts: make([]int, len(nodes))}
		if len(r.Clusters) > 0 {
			q.Clusters = slices.Compact(slices.Sorted(slices.Values(r.Clusters)))
			q.targets = q.Clusters
		} else {
			q.Clusters = nil
			q.targets = clusters
		}
		if r.MaxPerCluster > 0 {
			q.minPC = min(q.minPC, r.MaxPerCluster)
		}
		if r.MinPerCluster == 0 {
			q.targets = nil
		}
		reqs = append(reqs, q)
	}
	inCluster := func(r *rq, c string) bool { return r.Clusters == nil || slices.Contains(r.Clusters, c) }
	// An unusable node stays in the list but is never allowed, so it
	// keeps nothing, takes nothing and is rejected for its own reason.
	allowed := func(r *rq, i int) bool {
		return nodes[i].Unusable == nil && inCluster(r, nodes[i].Cluster) &&
			(r.Pools == nil || slices.Contains(r.Pools, nodes[i].Pool))
	}
	memOK := func(r *rq, i int) bool { return nodes[i].GPUMemory >= r.GPUMemory }
	gpuOK := func(r *rq, i int) bool { return r.GPUs == 0 || nodes[i].free >= r.GPUs }
	mpnOK := func(r *rq, i int) bool { return r.MaxPerNode == 0 || r.counts[i] < r.MaxPerNode }
	inC := func(r *rq, c string) int {
		n := 0
		for i := range nodes {
			if nodes[i].Cluster == c {
				n += r.counts[i]
			}
		}
		return n
	}
	mpcOK := func(r *rq, i int) bool { return r.MaxPerCluster == 0 || inC(r, nodes[i].Cluster) < r.MaxPerCluster }
	// trimOne removes one replica of r from the node with the highest
	// score among those ok allows (Spread: holding two or more first),
	// ties to the later node, and reports whether there was one.
	trimOne := func(r *rq, ok func(i int) bool) bool {
		best := -1
		for i := range nodes {
			if r.counts[i] == 0 || !ok(i) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			bi, ii := r.counts[best] >= 2, r.counts[i] >= 2
			if r.Spread && bi != ii {
				if ii {
					best = i
				}
				continue
			}
			if score(i) >= score(best) { // later node wins ties
				best = i
			}
		}
		if best < 0 {
			return false
		}
		r.counts[best]--
		nodes[best].replicas--
		return true
	}
	aboveMin := func(r *rq) func(i int) bool {
		return func(i int) bool { return inC(r, nodes[i].Cluster) > r.minPC }
	}
	total := func(r *rq) int {
		t := 0
		for _, c := range r.counts {
			t += c
		}
		return t
	}

	// Keep: provisional load of everything statically feasible.
	for _, r := range reqs {
		for id, c := range p.Current[r.Release] {
			i, ok := index[id]
			if !ok || c <= 0 || !allowed(r, i) || !memOK(r, i) {
				continue
			}
			if r.MaxPerNode > 0 && c > r.MaxPerNode {
				c = r.MaxPerNode
			}
			r.counts[i] = c
			nodes[i].replicas += c
		}
	}
	for _, r := range reqs {
		for i := range nodes {
			if r.GPUs > 0 && r.counts[i] > 0 {
				if fit := max(nodes[i].free, 0) / r.GPUs; r.counts[i] > fit {
					nodes[i].replicas -= r.counts[i] - fit
					r.counts[i] = fit
				}
			}
		}
		if r.MaxPerCluster > 0 {
			for _, c := range clusters {
				for inC(r, c) > r.MaxPerCluster {
					trimOne(r, func(i int) bool { return nodes[i].Cluster == c })
				}
			}
		}
		for total(r) > r.Replicas {
			if !trimOne(r, aboveMin(r)) {
				trimOne(r, func(int) bool { return true })
			}
		}
		for i := range nodes {
			nodes[i].free -= r.counts[i] * r.GPUs
		}
	}
	// Keep: make room for the minimums of clusters that have room.
	for changed := true; changed; {
		changed = false
		for _, r := range reqs {
			if r.minPC == 0 || r.Replicas == 0 {
				continue
			}
			fit := 0
			for _, c := range r.targets {
				deficit, room := max(r.minPC-inC(r, c), 0), 0
				for i := range nodes {
					if nodes[i].Cluster != c || !allowed(r, i) || !memOK(r, i) {
						continue
					}
					k := deficit
					if r.GPUs > 0 {
						k = min(k, max(nodes[i].free, 0)/r.GPUs)
					}
					if r.MaxPerNode > 0 {
						k = min(k, r.MaxPerNode-r.counts[i])
					}
					room += max(k, 0)
				}
				fit += min(room, deficit)
			}
			for excess := total(r) - (r.Replicas - fit); excess > 0; excess-- {
				before := slices.Clone(r.counts)
				if !trimOne(r, aboveMin(r)) {
					break
				}
				for i := range nodes {
					nodes[i].free += (before[i] - r.counts[i]) * r.GPUs
				}
				changed = true
			}
		}
	}

	// Place.
	res := Result{Placements: map[string]Placement{}}
	for _, r := range reqs {
		need := r.Replicas - total(r)
		// fill places up to n replicas on the nodes in reports usable.
		fill := func(n int, in func(i int) bool) int {
			placed := 0
			for ; placed < n; placed++ {
				best := -1
				for i := range nodes {
					if !in(i) || !allowed(r, i) || !memOK(r, i) || !mpcOK(r, i) || !mpnOK(r, i) || !gpuOK(r, i) {
						continue
					}
					if best < 0 {
						best = i
						continue
					}
					bh, ih := r.counts[best] > 0, r.counts[i] > 0
					if r.Spread && bh != ih {
						if !ih {
							best = i
						}
						continue
					}
					if score(i) < score(best) {
						best = i
					}
				}
				if best < 0 {
					break
				}
				r.counts[best]++
				nodes[best].replicas++
				nodes[best].free -= r.GPUs
			}
			return placed
		}
		for _, c := range r.targets {
			if d := min(r.minPC-inC(r, c), need); d > 0 {
				need -= fill(d, func(i int) bool { return nodes[i].Cluster == c })
			}
		}
		need -= fill(need, func(int) bool { return true })
		if need > 0 {
			u := Unplaced{Release: r.Release, Count: need, Rejected: []Rejection{}}
			for i, n := range nodes {
				var why Reason
				switch {
				case n.Unusable != nil:
					why = n.Unusable
				case !inCluster(r, n.Cluster):
					why = ClusterNotSelected{Cluster: n.Cluster}
				case !allowed(r, i):
					why = PoolNotAllowed{Pool: n.Pool, Allowed: r.Pools}
				case !memOK(r, i):
					why = InsufficientGPUMemory{Requested: r.GPUMemory, Capacity: n.GPUMemory}
				case !mpcOK(r, i):
					why = MaxPerClusterReached{Cluster: n.Cluster, Max: r.MaxPerCluster}
				case !mpnOK(r, i):
					why = MaxPerNodeReached{Max: r.MaxPerNode}
				case !gpuOK(r, i):
					why = InsufficientResource{Resource: GPUResource, Requested: int64(r.GPUs),
						Used: int64(n.GPUs - n.reserve - n.free), Reserved: int64(n.reserve), Capacity: int64(n.GPUs)}
				default:
					panic("feasible node left with unplaced replicas")
				}
				u.Rejected = append(u.Rejected, Rejection{Node: n.ID(), Reason: why})
			}
			res.Unplaced = append(res.Unplaced, u)
		}
		if r.Replicas > 0 {
			for _, c := range r.targets {
				if got := inC(r, c); got < r.MinPerCluster {
					res.Short = append(res.Short, ClusterShort{Release: r.Release, Cluster: c, Min: r.MinPerCluster, Placed: got})
				}
			}
		}
		pl := Placement{}
		for i, c := range r.counts {
			if c > 0 {
				pl[nodes[i].ID()] = c
			}
		}
		res.Placements[r.Release] = pl
	}
	slices.SortFunc(res.Unplaced, func(a, b Unplaced) int { return strings.Compare(a.Release, b.Release) })
	slices.SortFunc(res.Short, func(a, b ClusterShort) int {
		return cmp.Or(strings.Compare(a.Release, b.Release), strings.Compare(a.Cluster, b.Cluster))
	})
	return res
}

// bigProblem builds the benchmark world: nodes in four pools with different
// GPU products, weights and reserves, and requests × replicas replicas with
// a mix of pool sets, memory needs, GPUs per replica, max_per_node and
// spread. Free capacity (16 GPUs per node less about 0.5 used and 0.5
// reserved: about 150k) exceeds demand (about 110k GPUs for 100k replicas),
// so everything places and the benchmark measures placement, not rejection
// reports.
func bigProblem(nodes, requests, replicas int) Problem {
	rng := rand.New(rand.NewPCG(1, 2))
	type kind struct {
		pool    string
		mem     int64
		product string
	}
	kinds := []kind{
		{"h100", 80 << 30, "NVIDIA-H100-80GB-HBM3"},
		{"a100", 80 << 30, "NVIDIA-A100-SXM4-80GB"},
		{"a100-40", 40 << 30, "NVIDIA-A100-SXM4-40GB"},
		{"l4", 24 << 30, "NVIDIA-L4"},
	}
	p := Problem{
		Pools: map[string]Pool{
			"h100":    {Weight: 3, Reserve: 1},
			"a100":    {Weight: 2, Reserve: 1},
			"a100-40": {Weight: 1},
			"l4":      {Weight: 0.5},
		},
		Current: map[string]Placement{},
	}
	for i := range nodes {
		k := kinds[i%len(kinds)]
		p.Nodes = append(p.Nodes, Node{
			Name:        fmt.Sprintf("node-%05d", i),
			Pool:        k.pool,
			GPUs:        16,
			Used:        rng.IntN(2),
			GPUMemory:   k.mem,
			Product:     k.product,
			Connections: float64(rng.IntN(1000)),
		})
	}
	poolSets := [][]string{nil, {"h100", "a100"}, {"a100-40", "l4"}, {"l4"}, {"a100"}}
	mems := []int64{0, 16 << 30, 24 << 30, 40 << 30, 80 << 30}
	for i := range requests {
		r := Request{
			Release:  fmt.Sprintf("release-%05d", i),
			Replicas: replicas,
			GPUs:     1 + rng.IntN(10)/9, // mostly 1, sometimes 2
			Pools:    poolSets[i%len(poolSets)],
		}
		switch {
		case r.Pools == nil || r.Pools[0] == "h100" || r.Pools[0] == "a100":
			r.GPUMemory = mems[rng.IntN(len(mems))]
		case r.Pools[0] == "a100-40":
			r.GPUMemory = mems[rng.IntN(3)] // small enough for L4 too
		}
		if i%3 == 0 {
			r.MaxPerNode = 2
		}
		r.Spread = i%7 == 0
		p.Requests = append(p.Requests, r)
	}
	return p
}

func benchPlace(b *testing.B, place func(Problem) Result, p Problem) {
	b.Helper()
	want := 0
	for _, r := range p.Requests {
		want += r.Replicas
	}
	b.ReportAllocs()
	b.ResetTimer()
	var res Result
	for b.Loop() {
		res = place(p)
	}
	b.StopTimer()
	got := 0
	for _, pl := range res.Placements {
		got += pl.Total()
	}
	if len(res.Unplaced) > 0 || got != want {
		b.Fatalf("placed %d of %d, %d releases unplaced", got, want, len(res.Unplaced))
	}
}

// 1,000 requests × 100 replicas = 100,000 replicas on 10,000 nodes.
func BenchmarkPlace100kOn10k(b *testing.B) {
	benchPlace(b, Place, bigProblem(10_000, 1_000, 100))
}

func BenchmarkNaivePlace100kOn10k(b *testing.B) {
	benchPlace(b, placeNaive, bigProblem(10_000, 1_000, 100))
}

// 100,000 requests of one replica each: the case a heap per request (an
// O(nodes) build every time) would make quadratic.
func BenchmarkPlace100kSingletonsOn10k(b *testing.B) {
	benchPlace(b, Place, bigProblem(10_000, 100_000, 1))
}

// Re-planning the placement Place just made: everything is kept.
func BenchmarkReplanUnchanged100kOn10k(b *testing.B) {
	p := bigProblem(10_000, 1_000, 100)
	p.Current = Place(p).Placements
	benchPlace(b, Place, p)
}

// The same with image locality on: every request has its own model
// image, which 2% of the nodes (200) already hold, and every node holds
// 20 images in all.
func BenchmarkPlace100kOn10kWithImages(b *testing.B) {
	p := bigProblem(10_000, 1_000, 100)
	p.ImageLocality = 0.2
	for i := range p.Requests {
		p.Requests[i].Image = fmt.Sprintf("sha256:%064x", i)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for x := range p.Nodes {
		p.Nodes[x].Images = map[string]int64{}
		for range 20 {
			p.Nodes[x].Images[fmt.Sprintf("sha256:%064x", rng.IntN(len(p.Requests)))] = 20 << 30
		}
	}
	benchPlace(b, Place, p)
}

// Re-planning with one node in 19 (527, of every pool) made unusable,
// cordoned or tainted, its replicas to move: unusable nodes cost nothing.
func BenchmarkPlace100kOn10kSomeUnusable(b *testing.B) {
	p := bigProblem(10_000, 1_000, 100)
	p.Current = Place(p).Placements
	for x := 0; x < len(p.Nodes); x += 19 {
		p.Nodes[x].Unusable = NodeUnschedulable{}
		if x%38 == 0 {
			p.Nodes[x].Unusable = UntoleratedTaint{Key: "dedicated", Value: "train", Effect: "NoSchedule"}
		}
	}
	benchPlace(b, Place, p)
}

// fleetProblem is the fleet benchmark world: 3 clusters × 1,000 nodes of
// bigProblem's pools (the same node names in every cluster), cluster
// weights, and 300 releases of bigProblem's mix, a quarter each:
//   - replicas per cluster: min = max = 10 in all three, 30 replicas;
//   - two clusters, eu-1 and eu-2, 40 replicas, min 5, max 25;
//   - any cluster, 30 replicas, min 3;
//   - us-1 only, 20 replicas.
//
// 9,000 replicas on 3,000 nodes: everything places.
func fleetProblem() Problem {
	clusters := []string{"eu-1", "eu-2", "us-1"}
	p := bigProblem(3_000, 300, 1)
	for i := range p.Nodes {
		p.Nodes[i].Cluster = clusters[i/1_000]
		p.Nodes[i].Name = fmt.Sprintf("node-%04d", i%1_000)
	}
	p.ClusterWeights = map[string]float64{"eu-1": 1, "eu-2": 1.5, "us-1": 0.8}
	for i := range p.Requests {
		r := &p.Requests[i]
		switch i % 4 {
		case 0:
			r.Replicas, r.MinPerCluster, r.MaxPerCluster, r.Clusters = 30, 10, 10, clusters
		case 1:
			r.Replicas, r.MinPerCluster, r.MaxPerCluster, r.Clusters = 40, 5, 25, clusters[:2]
		case 2:
			r.Replicas, r.MinPerCluster = 30, 3
		case 3:
			r.Replicas, r.Clusters = 20, clusters[2:]
		}
	}
	return p
}

func benchFleet(b *testing.B, p Problem) {
	b.Helper()
	if res := Place(p); len(res.Short) > 0 {
		b.Fatalf("short: %v", res.Short)
	}
	benchPlace(b, Place, p)
}

// 300 releases, 9,000 replicas on 3 clusters × 1,000 nodes.
func BenchmarkPlaceFleet(b *testing.B) {
	benchFleet(b, fleetProblem())
}

// Re-planning the fleet placement Place just made: everything is kept.
func BenchmarkReplanUnchangedFleet(b *testing.B) {
	p := fleetProblem()
	p.Current = Place(p).Placements
	benchFleet(b, p)
}
