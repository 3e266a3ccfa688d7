package schedule

import (
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
// the oracle TestPlaceMatchesNaive compares Place against. It shares only the
// node sort order and the Reason types with the real implementation.
func placeNaive(p Problem) Result {
	rl := p.ReplicaLoad
	if !(rl > 0) || math.IsInf(rl, 1) {
		rl = 1
	}
	in := slices.Clone(p.Nodes)
	slices.SortFunc(in, compareNodes)
	in = slices.CompactFunc(in, func(a, b Node) bool { return a.Name == b.Name })

	type nd struct {
		Node
		weight   float64
		reserve  int
		free     int
		replicas int
	}
	nodes := make([]nd, len(in))
	index := map[string]int{}
	for i, n := range in {
		d := nd{Node: n, weight: 1}
		if pool, ok := p.Pools[n.Pool]; ok && n.Pool != "" {
			if pool.Weight > 0 && !math.IsInf(pool.Weight, 1) {
				d.weight = pool.Weight
			}
			d.reserve = max(pool.Reserve, 0)
		}
		if math.IsNaN(d.Connections) {
			d.Connections = math.Inf(1)
		}
		d.GPUs, d.Used = max(d.GPUs, 0), max(d.Used, 0)
		d.free = d.GPUs - d.Used - d.reserve
		nodes[i] = d
		index[n.Name] = i
	}
	score := func(i int) float64 {
		return (nodes[i].Connections + rl*float64(nodes[i].replicas)) / nodes[i].weight
	}

	type rq struct {
		Request
		counts []int // per node
	}
	var reqs []*rq
	seen := map[string]bool{}
	for _, r := range p.Requests {
		if seen[r.Release] {
			continue
		}
		seen[r.Release] = true
		r.Replicas, r.GPUs, r.MaxPerNode = max(r.Replicas, 0), max(r.GPUs, 0), max(r.MaxPerNode, 0)
		r.GPUMemory = max(r.GPUMemory, 0)
		if r.GPUs == 0 {
			r.GPUMemory = 0
		}
		if len(r.Pools) > 0 {
			r.Pools = slices.Compact(slices.Sorted(slices.Values(r.Pools)))
		} else {
			r.Pools = nil
		}
		reqs = append(reqs, &rq{Request: r, counts: make([]int, len(nodes))})
	}
	// An unusable node stays in the list but is never allowed, so it
	// keeps nothing, takes nothing and is rejected for its own reason.
	allowed := func(r *rq, i int) bool {
		return nodes[i].Unusable == nil && (r.Pools == nil || slices.Contains(r.Pools, nodes[i].Pool))
	}
	memOK := func(r *rq, i int) bool { return nodes[i].GPUMemory >= r.GPUMemory }
	gpuOK := func(r *rq, i int) bool { return r.GPUs == 0 || nodes[i].free >= r.GPUs }
	mpnOK := func(r *rq, i int) bool { return r.MaxPerNode == 0 || r.counts[i] < r.MaxPerNode }

	// Keep: provisional load of everything statically feasible.
	for _, r := range reqs {
		for name, c := range p.Current[r.Release] {
			i, ok := index[name]
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
		total := 0
		for i := range nodes {
			if r.GPUs > 0 && r.counts[i] > 0 {
				if fit := max(nodes[i].free, 0) / r.GPUs; r.counts[i] > fit {
					nodes[i].replicas -= r.counts[i] - fit
					r.counts[i] = fit
				}
			}
			total += r.counts[i]
		}
		for ; total > r.Replicas; total-- {
			best := -1
			for i := range nodes {
				if r.counts[i] == 0 {
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
				if score(i) >= score(best) { // later name wins ties
					best = i
				}
			}
			r.counts[best]--
			nodes[best].replicas--
		}
		for i := range nodes {
			nodes[i].free -= r.counts[i] * r.GPUs
		}
	}

	// Place.
	res := Result{Placements: map[string]Placement{}}
	for _, r := range reqs {
		need := r.Replicas
		for _, c := range r.counts {
			need -= c
		}
		for ; need > 0; need-- {
			best := -1
			for i := range nodes {
				if !allowed(r, i) || !memOK(r, i) || !mpnOK(r, i) || !gpuOK(r, i) {
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
		if need > 0 {
			u := Unplaced{Release: r.Release, Count: need, Rejected: []Rejection{}}
			for i, n := range nodes {
				var why Reason
				switch {
				case n.Unusable != nil:
					why = n.Unusable
				case !allowed(r, i):
					why = PoolNotAllowed{Pool: n.Pool, Allowed: r.Pools}
				case !memOK(r, i):
					why = InsufficientGPUMemory{Requested: r.GPUMemory, Capacity: n.GPUMemory}
				case !mpnOK(r, i):
					why = MaxPerNodeReached{Max: r.MaxPerNode}
				case !gpuOK(r, i):
					why = InsufficientResource{Resource: GPUResource, Requested: int64(r.GPUs),
						Used: int64(n.GPUs - n.reserve - n.free), Reserved: int64(n.reserve), Capacity: int64(n.GPUs)}
				default:
					panic("feasible node left with unplaced replicas")
				}
				u.Rejected = append(u.Rejected, Rejection{Node: n.Name, Reason: why})
			}
			res.Unplaced = append(res.Unplaced, u)
		}
		pl := Placement{}
		for i, c := range r.counts {
			if c > 0 {
				pl[nodes[i].Name] = c
			}
		}
		res.Placements[r.Release] = pl
	}
	slices.SortFunc(res.Unplaced, func(a, b Unplaced) int { return strings.Compare(a.Release, b.Release) })
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
