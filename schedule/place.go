package schedule

import (
	"cmp"
	"math"
	"slices"
	"strings"
)

// Place computes a placement for p. See the package documentation for the
// rules; in short: keep what is still feasible, trim from the most loaded
// nodes, then put each missing replica on the feasible node with the least
// (connections + replica load) / weight, ties by node ID, each cluster's
// MinPerCluster first.
func Place(p Problem) Result {
	s := newState(p)
	reqs := s.requests(p.Requests)
	s.indexImages(p, reqs)
	s.keep(reqs, p.Current)

	res := Result{Placements: make(map[string]Placement, len(reqs))}
	for _, r := range reqs {
		pl, un := s.place(r)
		res.Placements[r.release] = pl
		if un != nil {
			res.Unplaced = append(res.Unplaced, *un)
		}
		res.Short = s.short(r, res.Short)
		s.reset(r)
		if local := s.localNodes(r, pl); len(local) > 0 {
			if res.ImageLocal == nil {
				res.ImageLocal = map[string][]string{}
			}
			res.ImageLocal[r.release] = local
		}
	}
	slices.SortFunc(res.Unplaced, func(a, b Unplaced) int { return strings.Compare(a.Release, b.Release) })
	slices.SortFunc(res.Short, func(a, b ClusterShort) int {
		return cmp.Or(strings.Compare(a.Release, b.Release), strings.Compare(a.Cluster, b.Cluster))
	})
	return res
}

// node is the mutable working copy of a Node. Nodes live in a slice sorted
// by ID, so a node's index doubles as its tie-break rank.
type node struct {
	id       string // Node.ID
	ci       int32  // index of its cluster in state.clusters
	pool     string
	weight   float64
	conns    float64
	gpus     int
	used     int
	reserve  int
	mem      int64
	free     int // gpus - used - reserve - GPUs placed here; may be negative
	replicas int // replicas of requested releases here, each ReplicaLoad of load
	score    float64
	images   map[string]int64 // the Node's; read only
}

type state struct {
	nodes       []node
	byID        map[string]int32
	byPool      []map[string][]int32 // by cluster index, then pool: ascending node indices
	memTiers    []int64              // distinct node GPU memory sizes, ascending
	replicaLoad float64
	classes     map[classKey]*class

	// clusters are the distinct Node.Cluster of all nodes, usable or not,
	// sorted, so that a cluster index orders clusters by name; byCluster
	// lists each cluster's usable nodes, ascending; allClusters is
	// 0..len(clusters)-1, the candidates of a request naming none.
	clusters    []string
	clusterIx   map[string]int32
	byCluster   [][]int32
	allClusters []int32
	anyCluster  *fleet // the fleet of a request naming no cluster and no bound

	// Per-request scratch, dense by node index (cnt) and cluster index
	// (ccnt), reset after each request so that one allocation serves
	// every request.
	cnt     []int
	ccnt    []int
	touched []int32

	// unusable are the rejections of the nodes with Node.Unusable set,
	// sorted by node ID; no other part of the state knows them.
	unusable []Rejection

	// locality is Problem.ImageLocality, clamped; holders maps each
	// requested image digest to the nodes holding it and the fraction of
	// their score holding it takes off (see Problem.ImageLocality).
	locality float64
	holders  map[string][]localNode
}

// localNode is a node holding an image, with its locality discount.
type localNode struct {
	node     int32
	discount float64 // in (0, locality]
}

// request is a normalised Request plus what the keep phase kept of it.
type request struct {
	release string
	want    int
	gpus    int
	mem     int64
	pools   []string // sorted, deduplicated; nil = any node
	mpn     int
	spread  bool
	image   string
	kept    []slot            // ascending node
	local   map[int32]float64 // nodes holding image -> their discount (see localHeap)
	*fleet                    // never nil; shared by the requests that name no cluster and no bound
}

// fleet is what a request asks of the clusters.
type fleet struct {
	// allowC says by cluster index which clusters r may use; nil: all.
	// cands are those cluster indices, ascending.
	allowC []bool
	cands  []int32
	// minReq is Request.MinPerCluster; minPC the minimum placement aims
	// at, never above maxPC when that is set (0: no bound). targets are
	// the clusters the minimum applies to, sorted; nil when minReq is 0.
	minReq  int
	minPC   int
	maxPC   int
	targets []string
	// bounded: r has a per-cluster bound, so its replicas are counted
	// per cluster (state.ccnt) as they are kept and placed.
	bounded bool
}

type slot struct {
	node int32
	n    int
}

func newState(p Problem) *state {
	rl := p.ReplicaLoad
	// A non-positive or non-finite replica load would stop replicas from
	// spreading (or produce NaN scores), so it falls back to the default.
	if !(rl > 0) || math.IsInf(rl, 1) {
		rl = 1
	}
	in := slices.Clone(p.Nodes)
	// Sorting on every field, not only the ID, makes the choice among
	// duplicate IDs independent of the caller's order.
	slices.SortFunc(in, compareNodes)
	in = slices.CompactFunc(in, func(a, b Node) bool { return compareID(a, b) == 0 })

	// Clusters are known from every node, unusable ones included, so that
	// a cluster whose nodes are all unusable is still one a minimum
	// applies to. Sorted by ID, a cluster's nodes come in runs.
	s := &state{clusterIx: map[string]int32{}}
	for i, n := range in {
		if i > 0 && n.Cluster == in[i-1].Cluster {
			continue
		}
		if _, ok := s.clusterIx[n.Cluster]; !ok {
			s.clusterIx[n.Cluster] = 0
			s.clusters = append(s.clusters, n.Cluster)
		}
	}
	slices.Sort(s.clusters)
	s.byCluster = make([][]int32, len(s.clusters))
	s.byPool = make([]map[string][]int32, len(s.clusters))
	s.ccnt = make([]int, len(s.clusters))
	clusterWeight := make([]float64, len(s.clusters))
	for i, c := range s.clusters {
		s.clusterIx[c] = int32(i)
		s.allClusters = append(s.allClusters, int32(i))
		s.byPool[i] = map[string][]int32{}
		clusterWeight[i] = 1
		if cw := p.ClusterWeights[c]; cw > 0 && !math.IsInf(cw, 1) {
			clusterWeight[i] = cw
		}
	}
	s.anyCluster = &fleet{cands: s.allClusters}

	// Unusable nodes are not nodes to place on: they only appear in the
	// rejections of unplaced requests. Left out of nodes, byID and the
	// pools, they hold no capacity, no score and no image, and a current
	// replica on one is dropped as on a node that no longer exists.
	if slices.ContainsFunc(in, func(n Node) bool { return n.Unusable != nil }) {
		usable := make([]Node, 0, len(in))
		for _, n := range in {
			if n.Unusable != nil {
				s.unusable = append(s.unusable, Rejection{Node: n.ID(), Reason: n.Unusable})
			} else {
				usable = append(usable, n)
			}
		}
		in = usable
	}

	s.nodes = make([]node, len(in))
	s.byID = make(map[string]int32, len(in))
	s.replicaLoad = rl
	s.classes = map[classKey]*class{}
	s.cnt = make([]int, len(in))
	ci := int32(-1)
	for i, n := range in {
		if ci < 0 || n.Cluster != s.clusters[ci] {
			ci = s.clusterIx[n.Cluster]
		}
		weight, reserve := 1.0, 0
		if n.Pool != "" {
			if pool, ok := p.Pools[n.Pool]; ok {
				if pool.Weight > 0 && !math.IsInf(pool.Weight, 1) {
					weight = pool.Weight
				}
				reserve = max(pool.Reserve, 0)
			}
		}
		if cw := clusterWeight[ci]; cw != 1 {
			weight = min(weight*cw, math.MaxFloat64)
		}
		conns := n.Connections
		if math.IsNaN(conns) {
			// Unknown load: least preferred rather than a poisoned ordering.
			conns = math.Inf(1)
		}
		gpus, used := max(n.GPUs, 0), max(n.Used, 0)
		s.nodes[i] = node{
			id: n.ID(), ci: ci,
			pool: n.Pool, weight: weight, conns: conns,
			gpus: gpus, used: used, reserve: reserve, mem: n.GPUMemory,
			free: gpus - used - reserve, images: n.Images,
		}
		s.nodes[i].rescore(rl)
		s.byID[s.nodes[i].id] = int32(i)
		s.byCluster[ci] = append(s.byCluster[ci], int32(i))
		s.byPool[ci][n.Pool] = append(s.byPool[ci][n.Pool], int32(i))
		s.memTiers = append(s.memTiers, n.GPUMemory)
	}
	slices.Sort(s.memTiers)
	s.memTiers = slices.Compact(s.memTiers)
	return s
}

func compareNodes(a, b Node) int {
	// IDs almost always differ: only then are the other fields compared
	// (cmp.Or evaluates all of its arguments).
	if c := compareID(a, b); c != 0 {
		return c
	}
	return cmp.Or(
		// Of two Nodes with one ID, an unusable one wins: a node some
		// report says is no use is not filled on the word of another.
		compareUnusable(a.Unusable, b.Unusable),
		// One ID, two identities: a name holding a "/" (not a
		// Kubernetes node name) outside a fleet.
		strings.Compare(a.Cluster, b.Cluster),
		strings.Compare(a.Pool, b.Pool),
		cmp.Compare(a.GPUs, b.GPUs),
		cmp.Compare(a.Used, b.Used),
		cmp.Compare(a.GPUMemory, b.GPUMemory),
		strings.Compare(a.Product, b.Product),
		cmp.Compare(a.Connections, b.Connections),
	)
}

// compareID is strings.Compare(a.ID(), b.ID()) without building the IDs.
func compareID(a, b Node) int {
	if a.Cluster == b.Cluster {
		return strings.Compare(a.Name, b.Name)
	}
	pa, pb := idParts(a), idParts(b)
	ai, aj, bi, bj := 0, 0, 0, 0 // part, byte in part
	for {
		for ai < len(pa) && aj == len(pa[ai]) {
			ai, aj = ai+1, 0
		}
		for bi < len(pb) && bj == len(pb[bi]) {
			bi, bj = bi+1, 0
		}
		switch {
		case ai == len(pa) && bi == len(pb):
			return 0
		case ai == len(pa):
			return -1
		case bi == len(pb):
			return 1
		}
		if ca, cb := pa[ai][aj], pb[bi][bj]; ca != cb {
			return cmp.Compare(ca, cb)
		}
		aj, bj = aj+1, bj+1
	}
}

func idParts(n Node) [3]string {
	if n.Cluster == "" {
		return [3]string{n.Name}
	}
	return [3]string{n.Cluster, "/", n.Name}
}

// compareUnusable orders unusable before usable, then by kind and text.
// Texts are only made for two unusable Nodes of one ID.
func compareUnusable(a, b Reason) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Or(strings.Compare(reasonKind(a), reasonKind(b)), strings.Compare(a.Message(), b.Message()))
}

func (n *node) rescore(replicaLoad float64) {
	n.score = (n.conns + replicaLoad*float64(n.replicas)) / n.weight
}

// requests normalises the requests, dropping later duplicates of a release:
// results are keyed by release, so two requests for one release cannot both
// be honoured.
func (s *state) requests(in []Request) []*request {
	seen := make(map[string]bool, len(in))
	out := make([]*request, 0, len(in))
	for _, r := range in {
		if seen[r.Release] {
			continue
		}
		seen[r.Release] = true
		q := &request{
			release: r.Release,
			want:    max(r.Replicas, 0),
			gpus:    max(r.GPUs, 0),
			mpn:     max(r.MaxPerNode, 0),
			spread:  r.Spread,
			image:   r.Image,
			fleet:   s.anyCluster,
		}
		// Memory per GPU means nothing to a replica that uses no GPU.
		if q.gpus > 0 {
			q.mem = max(r.GPUMemory, 0)
		}
		if len(r.Pools) > 0 {
			q.pools = slices.Clone(r.Pools)
			slices.Sort(q.pools)
			q.pools = slices.Compact(q.pools)
		}
		if len(r.Clusters) > 0 || r.MinPerCluster > 0 || r.MaxPerCluster > 0 {
			q.fleet = s.newFleet(r)
		}
		out = append(out, q)
	}
	return out
}

// newFleet normalises what r asks of the clusters.
func (s *state) newFleet(r Request) *fleet {
	f := &fleet{cands: s.allClusters, minReq: max(r.MinPerCluster, 0), maxPC: max(r.MaxPerCluster, 0)}
	f.minPC = f.minReq
	if f.maxPC > 0 {
		f.minPC = min(f.minPC, f.maxPC)
	}
	f.targets = s.clusters
	if len(r.Clusters) > 0 {
		named := slices.Compact(slices.Sorted(slices.Values(r.Clusters)))
		f.targets = named
		f.allowC = make([]bool, len(s.clusters))
		f.cands = nil
		for _, c := range named {
			if ci, ok := s.clusterIx[c]; ok {
				f.allowC[ci] = true
				f.cands = append(f.cands, ci)
			}
		}
	}
	if f.minReq == 0 {
		f.targets = nil
	}
	f.bounded = f.minReq > 0 || f.maxPC > 0
	return f
}

// gpuFit reports whether n has the GPUs for one more replica. A CPU-only
// replica fits even on a node whose unmanaged pods overcommit it.
func (r *request) gpuFit(n *node) bool {
	return r.gpus == 0 || n.free >= r.gpus
}

func (r *request) allows(pool string) bool {
	if r.pools == nil {
		return true
	}
	_, ok := slices.BinarySearch(r.pools, pool)
	return ok
}

// allowsCluster reports whether r may use the nodes of cluster ci.
func (r *request) allowsCluster(ci int32) bool {
	return r.allowC == nil || r.allowC[ci]
}

// open reports whether cluster ci may take one more replica of the
// request being placed: it holds fewer than MaxPerCluster.
func (s *state) open(r *request, ci int32) bool {
	return r.maxPC == 0 || s.ccnt[ci] < r.maxPC
}

// keep decides, for every request before any new placement, which current
// replicas stay. Doing all keeps first matters: if request A placed new
// replicas before request B kept its own, A could take the GPUs B's running
// replicas sit on, and an unchanged world would move.
func (s *state) keep(reqs []*request, current map[string]Placement) {
	// Count every current replica that is still statically feasible as load,
	// so that trimming sees the world as it is now.
	cands := make([][]slot, len(reqs))
	for i, r := range reqs {
		for id, c := range current[r.release] {
			x, ok := s.byID[id]
			if !ok || c <= 0 {
				continue
			}
			n := &s.nodes[x]
			if !r.allowsCluster(n.ci) || !r.allows(n.pool) || n.mem < r.mem {
				continue
			}
			if r.mpn > 0 {
				c = min(c, r.mpn)
			}
			cands[i] = append(cands[i], slot{x, c})
		}
		slices.SortFunc(cands[i], func(a, b slot) int { return cmp.Compare(a.node, b.node) })
		for _, c := range cands[i] {
			s.nodes[c.node].replicas += c.n
		}
	}
	for i := range s.nodes {
		s.nodes[i].rescore(s.replicaLoad)
	}

	for i, r := range reqs {
		cs := cands[i]
		total := 0
		// GPU fit first, then trimming: a replica that no longer fits is gone
		// anyway, and dropping it may already bring the count down to the
		// request, so fewer replicas move.
		for k := range cs {
			c := &cs[k]
			if r.gpus > 0 {
				n := &s.nodes[c.node]
				if fit := max(n.free, 0) / r.gpus; c.n > fit {
					n.replicas -= c.n - fit
					n.rescore(s.replicaLoad)
					c.n = fit
				}
			}
			total += c.n
			if r.bounded {
				s.ccnt[s.nodes[c.node].ci] += c.n
			}
		}
		// A cluster above MaxPerCluster sheds its excess, cluster by
		// cluster in name order, before the total is looked at.
		if r.maxPC > 0 {
			for ci, c := range s.ccnt {
				if c > r.maxPC {
					total -= s.trim(r, cs, c-r.maxPC, int32(ci), -1)
				}
			}
		}
		if total > r.want {
			if r.want == 0 {
				s.trimAll(cs)
			} else {
				// Clusters above their minimum give first, so that
				// scaling down does not empty a cluster that has
				// replicas to spare elsewhere.
				excess := total - r.want
				if r.minPC > 0 {
					excess -= s.trim(r, cs, excess, -1, r.minPC)
				}
				s.trim(r, cs, excess, -1, -1)
			}
		}
		for _, c := range cs {
			if r.bounded {
				s.ccnt[s.nodes[c.node].ci] = 0
			}
			if c.n > 0 {
				s.nodes[c.node].free -= c.n * r.gpus
				r.kept = append(r.kept, c)
			}
		}
	}
	s.keepMinimums(reqs)
}

// keepMinimums moves kept replicas to clusters below their MinPerCluster:
// when a release's kept replicas leave too few missing ones to bring
// every cluster below its minimum up to it, as far as those clusters have
// room now, kept replicas of clusters above the minimum are trimmed (in
// the usual order) until they do. Room is judged after every keep, so a
// cluster that is short for want of GPUs moves nothing, and a replan of
// the result moves nothing either. A trim gives GPUs back, which may give
// another release's short cluster room, so the pass repeats until it
// trims nothing; each round that trims removes a replica, so it ends.
func (s *state) keepMinimums(reqs []*request) {
	for changed := true; changed; {
		changed = false
		for _, r := range reqs {
			if r.minPC == 0 || r.want == 0 || len(r.kept) == 0 {
				continue
			}
			kept := 0
			for _, c := range r.kept {
				kept += c.n
				s.cnt[c.node] = c.n
				s.ccnt[s.nodes[c.node].ci] += c.n
			}
			deficit := 0
			for _, c := range r.targets {
				if ci, ok := s.clusterIx[c]; ok {
					deficit += max(r.minPC-s.ccnt[ci], 0)
				} else {
					deficit += r.minPC
				}
			}
			if kept+deficit > r.want {
				fit := 0
				for _, c := range r.targets {
					if ci, ok := s.clusterIx[c]; ok && s.ccnt[ci] < r.minPC {
						fit += s.room(r, ci, r.minPC-s.ccnt[ci])
					}
				}
				for _, c := range r.kept {
					s.cnt[c.node] = 0
				}
				if excess := kept - (r.want - fit); excess > 0 {
					for _, c := range r.kept {
						s.nodes[c.node].free += c.n * r.gpus
					}
					if s.trim(r, r.kept, excess, -1, r.minPC) > 0 {
						changed = true
					}
					r.kept = slices.DeleteFunc(r.kept, func(c slot) bool { return c.n == 0 })
					for _, c := range r.kept {
						s.nodes[c.node].free -= c.n * r.gpus
					}
				}
			}
			for _, c := range r.kept {
				s.cnt[c.node] = 0
				s.ccnt[s.nodes[c.node].ci] = 0
			}
		}
	}
}

// room is how many more replicas of r, up to limit, the nodes of cluster
// ci can take now, with s.cnt holding r's replicas per node.
func (s *state) room(r *request, ci int32, limit int) int {
	got := 0
	for _, x := range s.byCluster[ci] {
		n := &s.nodes[x]
		if !r.allows(n.pool) || n.mem < r.mem {
			continue
		}
		k := limit - got
		if r.gpus > 0 {
			k = min(k, max(n.free, 0)/r.gpus)
		}
		if r.mpn > 0 {
			k = min(k, r.mpn-s.cnt[x])
		}
		if got += max(k, 0); got >= limit {
			break
		}
	}
	return got
}

// trimAll removes every replica of cs.
func (s *state) trimAll(cs []slot) {
	for k := range cs {
		n := &s.nodes[cs[k].node]
		n.replicas -= cs[k].n
		n.rescore(s.replicaLoad)
		cs[k].n = 0
	}
}

// trim removes up to excess replicas one at a time from the most loaded
// node (highest score, ties by the later node ID), re-scoring after each
// removal, so that scaling down mirrors the order placement fills nodes
// in, and returns how many it removed. With Spread, nodes holding two or
// more replicas of the release go first. Only nodes of cluster only are
// trimmed when it is not -1, and only nodes of clusters holding more than
// floor replicas (s.ccnt, which trim keeps current; r must be bounded) when
// floor is not -1.
func (s *state) trim(r *request, cs []slot, excess int, only int32, floor int) int {
	h := heapOf[int]{less: func(a, b int) bool {
		ca, cb := cs[a], cs[b]
		if r.spread && (ca.n >= 2) != (cb.n >= 2) {
			return ca.n >= 2
		}
		sa, sb := s.nodes[ca.node].score, s.nodes[cb.node].score
		if sa != sb {
			return sa > sb
		}
		return ca.node > cb.node
	}}
	for k := range cs {
		if cs[k].n > 0 && (only < 0 || s.nodes[cs[k].node].ci == only) {
			h.items = append(h.items, k)
		}
	}
	h.init()
	removed := 0
	for removed < excess && len(h.items) > 0 {
		k := h.items[0]
		n := &s.nodes[cs[k].node]
		if floor >= 0 && s.ccnt[n.ci] <= floor {
			h.pop() // its cluster is at the floor, for good: counts only fall
			continue
		}
		cs[k].n--
		n.replicas--
		n.rescore(s.replicaLoad)
		if r.bounded {
			s.ccnt[n.ci]--
		}
		removed++
		if cs[k].n == 0 {
			h.pop()
		} else {
			h.down(0) // its key only went down
		}
	}
	return removed
}

// classKey groups requests that see the same statically eligible nodes: the
// same pools, the same memory tier (the smallest node memory size that fits)
// and the same GPUs per replica. Real clusters have few pools, GPU products
// and replica sizes, so few classes share the work of many requests.
type classKey struct {
	anyPool bool
	pools   string
	tier    int
	gpus    int
}

// class holds a class's node heaps, one per cluster (by cluster index),
// each built on first use: requests naming different clusters share the
// heaps of the clusters they have in common.
type class struct {
	tier  int
	heaps []*heapOf[entry]
}

// entry is a node in a class heap with the score it had when last looked at.
type entry struct {
	score float64
	node  int32
}

func entryLess(a, b entry) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return a.node < b.node
}

// class returns r's class.
func (s *state) class(r *request) *class {
	tier, _ := slices.BinarySearch(s.memTiers, r.mem)
	key := classKey{anyPool: r.pools == nil, pools: strings.Join(r.pools, "\x00"), tier: tier, gpus: r.gpus}
	if c, ok := s.classes[key]; ok {
		return c
	}
	c := &class{tier: tier, heaps: make([]*heapOf[entry], len(s.clusters))}
	s.classes[key] = c
	return c
}

// heap returns the heap of the nodes of cluster ci eligible for r's class
// c, building it on first use. Class heaps are only built in the placement
// phase, after which node scores never decrease; that is what makes lazy
// updates sound (see next).
func (s *state) heap(r *request, c *class, ci int32) *heapOf[entry] {
	if h := c.heaps[ci]; h != nil {
		return h
	}
	h := &heapOf[entry]{less: entryLess}
	c.heaps[ci] = h
	if c.tier == len(s.memTiers) {
		return h // no node has enough memory
	}
	add := func(x int32) {
		if n := &s.nodes[x]; n.mem >= r.mem && r.gpuFit(n) {
			h.items = append(h.items, entry{n.score, x})
		}
	}
	if r.pools == nil {
		h.items = make([]entry, 0, len(s.byCluster[ci]))
		for _, x := range s.byCluster[ci] {
			add(x)
		}
	} else {
		for _, p := range r.pools {
			for _, x := range s.byPool[ci][p] {
				add(x)
			}
		}
	}
	h.init()
	return h
}

// picker chooses among the class heaps of some clusters: of one directly,
// of several through a heap of their tops.
type picker struct {
	c      *class
	single int32 // >= 0: the one cluster; -1: meta
	meta   heapOf[metaEntry]
}

// metaEntry is cluster ci's heap top as last seen: a lower bound of its
// true top, since scores only grow and feasible nodes only leave.
type metaEntry struct {
	entry
	ci int32
}

// place completes r after the keep phase and returns its placement and, if
// some replicas found no node, why. It leaves r's counts per cluster in
// the scratch for short; reset clears them.
func (s *state) place(r *request) (Placement, *Unplaced) {
	need := r.want
	for _, c := range r.kept {
		s.cnt[c.node] = c.n
		if r.bounded {
			s.ccnt[s.nodes[c.node].ci] += c.n
		}
		s.touched = append(s.touched, c.node)
		need -= c.n
	}

	if need > 0 {
		c := s.class(r)
		var aside []int32         // popped for this request only; go back afterwards
		var holders heapOf[entry] // Spread: nodes already holding r, the second choice
		holders.less = entryLess
		// The minimums first, cluster by cluster in name order, each
		// from its own nodes only.
		for _, name := range r.targets {
			ci, ok := s.clusterIx[name]
			if !ok {
				continue
			}
			d := min(r.minPC-s.ccnt[ci], need)
			if d <= 0 {
				continue
			}
			pk := picker{c: c, single: ci}
			s.heap(r, c, ci)
			ph := heapOf[entry]{less: entryLess}
			need -= s.fill(r, &pk, &ph, &aside, s.localHeap(r, ci), d)
			holders.items = append(holders.items, ph.items...)
		}
		if need > 0 {
			holders.init()
			pk := s.picker(r, c, &holders, &aside)
			need -= s.fill(r, &pk, &holders, &aside, s.localHeap(r, -1), need)
		}
		for _, x := range aside {
			// A node too full for this class stays out for good: free
			// GPUs only shrink from here on.
			if n := &s.nodes[x]; r.gpuFit(n) {
				c.heaps[n.ci].push(entry{n.score, x})
			}
		}
	}

	var un *Unplaced
	if need > 0 {
		un = &Unplaced{Release: r.release, Count: need, Rejected: s.rejections(r)}
	}
	pl := make(Placement, len(s.touched))
	for _, x := range s.touched {
		pl[s.nodes[x].id] = s.cnt[x]
		s.cnt[x] = 0
	}
	return pl, un
}

// short appends to out the target clusters of r holding fewer than its
// MinPerCluster. A release with no replicas is short nowhere.
func (s *state) short(r *request, out []ClusterShort) []ClusterShort {
	if r.want == 0 {
		return out
	}
	for _, name := range r.targets {
		placed := 0
		if ci, ok := s.clusterIx[name]; ok {
			placed = s.ccnt[ci]
		}
		if placed < r.minReq {
			out = append(out, ClusterShort{Release: r.release, Cluster: name, Min: r.minReq, Placed: placed})
		}
	}
	return out
}

// reset clears the per-request scratch place left for short.
func (s *state) reset(r *request) {
	if r.bounded {
		for _, x := range s.touched {
			s.ccnt[s.nodes[x].ci] = 0
		}
	}
	s.touched = s.touched[:0]
}

// picker returns the picker over r's candidate clusters for the second
// phase. With several, each open cluster's heap top goes into the meta
// heap; a cluster with no top now has none later either (bar holders,
// which holders keeps).
func (s *state) picker(r *request, c *class, holders *heapOf[entry], aside *[]int32) picker {
	pk := picker{c: c, single: -1}
	if len(r.cands) == 1 {
		pk.single = r.cands[0]
		s.heap(r, c, pk.single)
		return pk
	}
	pk.meta.less = func(a, b metaEntry) bool { return entryLess(a.entry, b.entry) }
	for _, ci := range r.cands {
		if !s.open(r, ci) {
			continue
		}
		if e, ok := s.top(r, s.heap(r, c, ci), holders, aside); ok {
			pk.meta.items = append(pk.meta.items, metaEntry{e, ci})
		}
	}
	pk.meta.init()
	return pk
}

// fill places up to limit replicas of r, each on the best node pk,
// holders and local offer, and returns how many it placed.
func (s *state) fill(r *request, pk *picker, holders *heapOf[entry], aside *[]int32, local *heapOf[localEntry], limit int) int {
	placed := 0
	for ; placed < limit; placed++ {
		x, fromClass, ok := s.next(r, pk, holders, aside)
		if y, found := s.nextLocal(r, local); found && (!ok || s.betterLocal(r, y, x, fromClass)) {
			x, fromClass, ok = y, false, true
		}
		if !ok {
			break
		}
		n := &s.nodes[x]
		if s.cnt[x] == 0 {
			s.touched = append(s.touched, x)
		}
		s.cnt[x]++
		if r.bounded {
			s.ccnt[n.ci]++
		}
		n.free -= r.gpus
		n.replicas++
		n.rescore(s.replicaLoad)
		if r.spread && fromClass {
			// x is still its class heap's top; it now holds r, so it
			// moves to the second-choice heap.
			pk.c.heaps[n.ci].pop()
			*aside = append(*aside, x)
			holders.push(entry{n.score, x})
		}
		// Otherwise x stays in its heap with a stale (lower) score,
		// which the next look at the top corrects.
	}
	return placed
}

// next returns the best feasible node for one more replica of r among
// pk's clusters.
//
// Class heaps are shared by requests and not updated when another request
// places on a node; entries instead carry the score seen when last looked
// at. During placement scores only grow, so a stale entry is never above its
// true position: when the top's score is current it is the true minimum, and
// when it is stale we refresh it and sift it down. Nodes infeasible for this
// request only (max_per_node reached, or already holding r under Spread) are
// set aside and returned to the heap by place; nodes with too few free GPUs
// for the class are dropped for good. Each set-aside node holds a replica of
// r, so the extra work per request is bounded by the size of its placement.
// The meta heap over several clusters is lazy the same way: a cluster's
// feasible top only grows, so a stale key is a lower bound, and a cluster
// at MaxPerCluster leaves it when it reaches the top, without its nodes
// being looked at.
func (s *state) next(r *request, pk *picker, holders *heapOf[entry], aside *[]int32) (x int32, fromClass, ok bool) {
	if pk.single >= 0 {
		if s.open(r, pk.single) {
			if e, ok := s.top(r, pk.c.heaps[pk.single], holders, aside); ok {
				return e.node, true, true
			}
		}
	} else {
		for len(pk.meta.items) > 0 {
			m := pk.meta.items[0]
			if !s.open(r, m.ci) {
				pk.meta.pop()
				continue
			}
			e, ok := s.top(r, pk.c.heaps[m.ci], holders, aside)
			switch {
			case !ok:
				pk.meta.pop()
			case e != m.entry:
				pk.meta.items[0].entry = e
				pk.meta.down(0)
			default:
				return e.node, true, true
			}
		}
	}
	// Only Spread requests reach here with candidates: every node not yet
	// holding r is full, so fall back to those that do. All of these are
	// already in aside.
	for len(holders.items) > 0 {
		e := holders.items[0]
		n := &s.nodes[e.node]
		switch {
		case e.score != n.score:
			holders.items[0].score = n.score
			holders.down(0)
		case !r.gpuFit(n), r.mpn > 0 && s.cnt[e.node] >= r.mpn, !s.open(r, n.ci):
			holders.pop()
		default:
			return e.node, false, true
		}
	}
	return 0, false, false
}

// top brings the best node of h that can take one more replica of r to
// the top of h and returns it, setting aside (see next) the nodes only r
// cannot use.
func (s *state) top(r *request, h *heapOf[entry], holders *heapOf[entry], aside *[]int32) (entry, bool) {
	for len(h.items) > 0 {
		e := h.items[0]
		n := &s.nodes[e.node]
		switch {
		case e.score != n.score:
			h.items[0].score = n.score
			h.down(0)
		case !r.gpuFit(n):
			h.pop()
		case r.mpn > 0 && s.cnt[e.node] >= r.mpn:
			h.pop()
			*aside = append(*aside, e.node)
		case r.spread && s.cnt[e.node] > 0:
			h.pop()
			*aside = append(*aside, e.node)
			holders.push(entry{n.score, e.node})
		default:
			return e, true
		}
	}
	return entry{}, false
}

// indexImages finds, for each image a request names, the nodes holding
// it: one pass over the nodes' images, only when locality is on.
func (s *state) indexImages(p Problem, reqs []*request) {
	s.locality = min(p.ImageLocality, MaxImageLocality)
	if !(s.locality > 0) {
		s.locality = 0
		return
	}
	wanted := map[string]bool{}
	for _, r := range reqs {
		if r.image != "" {
			wanted[r.image] = true
		}
	}
	if len(wanted) == 0 {
		return
	}
	s.holders = map[string][]localNode{}
	for x := range s.nodes {
		for img, size := range s.nodes[x].images {
			if !wanted[img] {
				continue
			}
			d := s.locality
			if size > 0 && size < LocalityFullSize {
				d *= float64(size) / LocalityFullSize
			}
			if d > 0 {
				s.holders[img] = append(s.holders[img], localNode{int32(x), d})
			}
		}
	}
	for img := range s.holders { // map order must not leak into the result
		slices.SortFunc(s.holders[img], func(a, b localNode) int { return cmp.Compare(a.node, b.node) })
	}
}

// discount is the fraction of node x's score that holding r's image takes
// off: 0 when it does not hold it.
func (r *request) discount(x int32) float64 { return r.local[x] }

// localHeap is the heap of nodes holding r's image that r may use, of
// cluster only unless it is -1, by their discounted score; nil when there
// are none.
func (s *state) localHeap(r *request, only int32) *heapOf[localEntry] {
	ls := s.holders[r.image]
	if r.image == "" || len(ls) == 0 {
		return nil
	}
	h := &heapOf[localEntry]{less: func(a, b localEntry) bool {
		if a.score != b.score {
			return a.score < b.score
		}
		return a.node < b.node
	}}
	if r.local == nil {
		r.local = make(map[int32]float64, len(ls))
		for _, l := range ls {
			r.local[l.node] = l.discount
		}
	}
	for _, l := range ls {
		n := &s.nodes[l.node]
		if only >= 0 && n.ci != only || !r.allowsCluster(n.ci) {
			continue
		}
		if r.allows(n.pool) && n.mem >= r.mem && r.gpuFit(n) {
			h.items = append(h.items, localEntry{entry{n.score * (1 - l.discount), l.node}, l.discount})
		}
	}
	h.init()
	return h
}

// localEntry is an entry of a local heap: the score is discounted.
type localEntry struct {
	entry
	discount float64
}

// nextLocal returns the best node holding r's image that can take one
// more replica now, by discounted score, with the same lazy updates as
// next. With Spread, a node already holding r leaves the local heap: the
// preference for new nodes comes first, locality only among them.
func (s *state) nextLocal(r *request, h *heapOf[localEntry]) (int32, bool) {
	if h == nil {
		return 0, false
	}
	for len(h.items) > 0 {
		e := h.items[0]
		n := &s.nodes[e.node]
		switch cur := n.score * (1 - e.discount); {
		case e.score != cur:
			h.items[0].score = cur
			h.down(0)
		case !r.gpuFit(n), r.mpn > 0 && s.cnt[e.node] >= r.mpn, r.spread && s.cnt[e.node] > 0, !s.open(r, n.ci):
			h.pop()
		default:
			return e.node, true
		}
	}
	return 0, false
}

// betterLocal reports whether the local node y beats x, next's choice,
// for r: by spread tier first (a node not holding r beats one that does),
// then by effective score (x's own discount counts, if it holds the image
// too), then by node index.
func (s *state) betterLocal(r *request, y, x int32, xFromClass bool) bool {
	if y == x {
		return false
	}
	if r.spread && !xFromClass {
		return true // x holds r already (the fallback); y does not
	}
	ey := s.nodes[y].score * (1 - r.discount(y))
	ex := s.nodes[x].score * (1 - r.discount(x))
	if ey != ex {
		return ey < ex
	}
	return y < x
}

// localNodes lists the nodes of pl holding r's image, sorted, whether
// or not locality is on.
func (s *state) localNodes(r *request, pl Placement) []string {
	if r.image == "" {
		return nil
	}
	var out []string
	for id, c := range pl {
		if x, ok := s.byID[id]; ok && c > 0 {
			if _, ok := s.nodes[x].images[r.image]; ok {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// rejections says, for every node, why it cannot take one more replica of
// r, checking cluster, pool, memory, max_per_cluster, max_per_node and
// GPUs in that order so each node gets its most fundamental reason.
// Unusable nodes give their Unusable reason, merged in by ID.
func (s *state) rejections(r *request) []Rejection {
	out := make([]Rejection, 0, len(s.nodes)+len(s.unusable))
	un := s.unusable
	for x := range s.nodes {
		n := &s.nodes[x]
		for len(un) > 0 && un[0].Node < n.id {
			out = append(out, un[0])
			un = un[1:]
		}
		var why Reason
		switch {
		case !r.allowsCluster(n.ci):
			why = ClusterNotSelected{Cluster: s.clusters[n.ci]}
		case !r.allows(n.pool):
			why = PoolNotAllowed{Pool: n.pool, Allowed: r.pools}
		case n.mem < r.mem:
			why = InsufficientGPUMemory{Requested: r.mem, Capacity: n.mem}
		case !s.open(r, n.ci):
			why = MaxPerClusterReached{Cluster: s.clusters[n.ci], Max: r.maxPC}
		case r.mpn > 0 && s.cnt[x] >= r.mpn:
			why = MaxPerNodeReached{Max: r.mpn}
		case !r.gpuFit(n):
			why = InsufficientResource{
				Resource:  GPUResource,
				Requested: int64(r.gpus),
				Used:      int64(n.gpus - n.reserve - n.free),
				Reserved:  int64(n.reserve),
				Capacity:  int64(n.gpus),
			}
		default:
			continue // feasible; cannot happen when replicas are left over
		}
		out = append(out, Rejection{Node: n.id, Reason: why})
	}
	return append(out, un...)
}

// heapOf is a binary min-heap ordered by less. It is used instead of
// container/heap to keep typed items without interface boxing, and because
// the lazy updates above need to sift the top in place.
type heapOf[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *heapOf[T]) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *heapOf[T]) push(x T) {
	h.items = append(h.items, x)
	h.up(len(h.items) - 1)
}

func (h *heapOf[T]) pop() T {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
	return top
}

func (h *heapOf[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			return
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *heapOf[T]) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			m = r
		}
		if !h.less(h.items[m], h.items[i]) {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
