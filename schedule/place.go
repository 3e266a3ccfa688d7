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
// (connections + replica load) / weight, ties by node name.
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
		if local := s.localNodes(r, pl); len(local) > 0 {
			if res.ImageLocal == nil {
				res.ImageLocal = map[string][]string{}
			}
			res.ImageLocal[r.release] = local
		}
	}
	slices.SortFunc(res.Unplaced, func(a, b Unplaced) int { return strings.Compare(a.Release, b.Release) })
	return res
}

// node is the mutable working copy of a Node. Nodes live in a slice sorted
// by name, so a node's index doubles as its tie-break rank.
type node struct {
	name     string
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
	byName      map[string]int32
	byPool      map[string][]int32 // ascending node indices
	memTiers    []int64            // distinct node GPU memory sizes, ascending
	replicaLoad float64
	classes     map[classKey]*heapOf[entry]

	// Per-request scratch, dense by node index, reset after each request so
	// that one allocation serves every request.
	cnt     []int
	touched []int32

	// unusable are the rejections of the nodes with Node.Unusable set,
	// sorted by node name; no other part of the state knows them.
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
	// Sorting on every field, not only the name, makes the choice among
	// duplicate names independent of the caller's order.
	slices.SortFunc(in, compareNodes)
	in = slices.CompactFunc(in, func(a, b Node) bool { return a.Name == b.Name })
	// Unusable nodes are not nodes to place on: they only appear in the
	// rejections of unplaced requests. Left out of nodes, byName and the
	// pools, they hold no capacity, no score and no image, and a current
	// replica on one is dropped as on a node that no longer exists.
	var unusable []Rejection
	if slices.ContainsFunc(in, func(n Node) bool { return n.Unusable != nil }) {
		usable := make([]Node, 0, len(in))
		for _, n := range in {
			if n.Unusable != nil {
				unusable = append(unusable, Rejection{Node: n.Name, Reason: n.Unusable})
			} else {
				usable = append(usable, n)
			}
		}
		in = usable
	}

	s := &state{
		nodes:       make([]node, len(in)),
		byName:      make(map[string]int32, len(in)),
		byPool:      map[string][]int32{},
		replicaLoad: rl,
		classes:     map[classKey]*heapOf[entry]{},
		cnt:         make([]int, len(in)),
		unusable:    unusable,
	}
	for i, n := range in {
		weight, reserve := 1.0, 0
		if n.Pool != "" {
			if pool, ok := p.Pools[n.Pool]; ok {
				if pool.Weight > 0 && !math.IsInf(pool.Weight, 1) {
					weight = pool.Weight
				}
				reserve = max(pool.Reserve, 0)
			}
		}
		conns := n.Connections
		if math.IsNaN(conns) {
			// Unknown load: least preferred rather than a poisoned ordering.
			conns = math.Inf(1)
		}
		gpus, used := max(n.GPUs, 0), max(n.Used, 0)
		s.nodes[i] = node{
			name: n.Name, pool: n.Pool, weight: weight, conns: conns,
			gpus: gpus, used: used, reserve: reserve, mem: n.GPUMemory,
			free: gpus - used - reserve, images: n.Images,
		}
		s.nodes[i].rescore(rl)
		s.byName[n.Name] = int32(i)
		s.byPool[n.Pool] = append(s.byPool[n.Pool], int32(i))
		s.memTiers = append(s.memTiers, n.GPUMemory)
	}
	slices.Sort(s.memTiers)
	s.memTiers = slices.Compact(s.memTiers)
	return s
}

func compareNodes(a, b Node) int {
	return cmp.Or(
		strings.Compare(a.Name, b.Name),
		// Of two Nodes with one name, an unusable one wins: a node some
		// report says is no use is not filled on the word of another.
		compareUnusable(a.Unusable, b.Unusable),
		strings.Compare(a.Pool, b.Pool),
		cmp.Compare(a.GPUs, b.GPUs),
		cmp.Compare(a.Used, b.Used),
		cmp.Compare(a.GPUMemory, b.GPUMemory),
		strings.Compare(a.Product, b.Product),
		cmp.Compare(a.Connections, b.Connections),
	)
}

// compareUnusable orders unusable before usable, then by kind and text.
// Texts are only made for two unusable Nodes of one name.
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
		out = append(out, q)
	}
	return out
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

// keep decides, for every request before any new placement, which current
// replicas stay. Doing all keeps first matters: if request A placed new
// replicas before request B kept its own, A could take the GPUs B's running
// replicas sit on, and an unchanged world would move.
func (s *state) keep(reqs []*request, current map[string]Placement) {
	// Count every current replica that is still statically feasible as load,
	// so that trimming sees the world as it is now.
	cands := make([][]slot, len(reqs))
	for i, r := range reqs {
		for name, c := range current[r.release] {
			x, ok := s.byName[name]
			if !ok || c <= 0 {
				continue
			}
			n := &s.nodes[x]
			if !r.allows(n.pool) || n.mem < r.mem {
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
		}
		if total > r.want {
			s.trim(r, cs, total-r.want)
		}
		for _, c := range cs {
			if c.n > 0 {
				s.nodes[c.node].free -= c.n * r.gpus
				r.kept = append(r.kept, c)
			}
		}
	}
}

// trim removes excess replicas one at a time from the most loaded node
// (highest score, ties by the later node name), re-scoring after each
// removal, so that scaling down mirrors the order placement fills nodes in.
// With Spread, nodes holding two or more replicas of the release go first.
func (s *state) trim(r *request, cs []slot, excess int) {
	if r.want == 0 {
		for k := range cs {
			n := &s.nodes[cs[k].node]
			n.replicas -= cs[k].n
			n.rescore(s.replicaLoad)
			cs[k].n = 0
		}
		return
	}
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
		if cs[k].n > 0 {
			h.items = append(h.items, k)
		}
	}
	h.init()
	for ; excess > 0 && len(h.items) > 0; excess-- {
		k := h.items[0]
		n := &s.nodes[cs[k].node]
		cs[k].n--
		n.replicas--
		n.rescore(s.replicaLoad)
		if cs[k].n == 0 {
			h.pop()
		} else {
			h.down(0) // its key only went down
		}
	}
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

// class returns the heap of nodes eligible for r's class, building it on
// first use. Class heaps are only built in the placement phase, after which
// node scores never decrease; that is what makes lazy updates sound (see next).
func (s *state) class(r *request) *heapOf[entry] {
	tier, _ := slices.BinarySearch(s.memTiers, r.mem)
	key := classKey{anyPool: r.pools == nil, pools: strings.Join(r.pools, "\x00"), tier: tier, gpus: r.gpus}
	if h, ok := s.classes[key]; ok {
		return h
	}
	h := &heapOf[entry]{less: entryLess}
	s.classes[key] = h
	if tier == len(s.memTiers) {
		return h // no node has enough memory
	}
	add := func(x int32) {
		if n := &s.nodes[x]; n.mem >= r.mem && r.gpuFit(n) {
			h.items = append(h.items, entry{n.score, x})
		}
	}
	if r.pools == nil {
		h.items = make([]entry, 0, len(s.nodes))
		for x := range s.nodes {
			add(int32(x))
		}
	} else {
		for _, p := range r.pools {
			for _, x := range s.byPool[p] {
				add(x)
			}
		}
	}
	h.init()
	return h
}

// place completes r after the keep phase and returns its placement and, if
// some replicas found no node, why.
func (s *state) place(r *request) (Placement, *Unplaced) {
	need := r.want
	for _, c := range r.kept {
		s.cnt[c.node] = c.n
		s.touched = append(s.touched, c.node)
		need -= c.n
	}

	if need > 0 {
		ch := s.class(r)
		var aside []int32         // popped for this request only; go back afterwards
		var holders heapOf[entry] // Spread: nodes already holding r, the second choice
		holders.less = entryLess
		local := s.localHeap(r)
		for ; need > 0; need-- {
			x, fromClass, ok := s.next(r, ch, &holders, &aside)
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
			n.free -= r.gpus
			n.replicas++
			n.rescore(s.replicaLoad)
			if r.spread && fromClass {
				// x is still the class top; it now holds r, so it
				// moves to the second-choice heap.
				ch.pop()
				aside = append(aside, x)
				holders.push(entry{n.score, x})
			}
			// Otherwise x stays in its heap with a stale (lower) score,
			// which the next look at the top corrects.
		}
		for _, x := range aside {
			// A node too full for this class stays out for good: free
			// GPUs only shrink from here on.
			if n := &s.nodes[x]; r.gpuFit(n) {
				ch.push(entry{n.score, x})
			}
		}
	}

	var un *Unplaced
	if need > 0 {
		un = &Unplaced{Release: r.release, Count: need, Rejected: s.rejections(r)}
	}
	pl := make(Placement, len(s.touched))
	for _, x := range s.touched {
		pl[s.nodes[x].name] = s.cnt[x]
		s.cnt[x] = 0
	}
	s.touched = s.touched[:0]
	return pl, un
}

// next returns the best feasible node for one more replica of r.
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
func (s *state) next(r *request, ch, holders *heapOf[entry], aside *[]int32) (x int32, fromClass, ok bool) {
	for len(ch.items) > 0 {
		e := ch.items[0]
		n := &s.nodes[e.node]
		switch {
		case e.score != n.score:
			ch.items[0].score = n.score
			ch.down(0)
		case !r.gpuFit(n):
			ch.pop()
		case r.mpn > 0 && s.cnt[e.node] >= r.mpn:
			ch.pop()
			*aside = append(*aside, e.node)
		case r.spread && s.cnt[e.node] > 0:
			ch.pop()
			*aside = append(*aside, e.node)
			holders.push(entry{n.score, e.node})
		default:
			return e.node, true, true
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
		case !r.gpuFit(n), r.mpn > 0 && s.cnt[e.node] >= r.mpn:
			holders.pop()
		default:
			return e.node, false, true
		}
	}
	return 0, false, false
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

// localHeap is the heap of nodes holding r's image that r may use, by
// their discounted score; nil when there are none.
func (s *state) localHeap(r *request) *heapOf[localEntry] {
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
	r.local = make(map[int32]float64, len(ls))
	for _, l := range ls {
		r.local[l.node] = l.discount
		if n := &s.nodes[l.node]; r.allows(n.pool) && n.mem >= r.mem && r.gpuFit(n) {
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
		case !r.gpuFit(n), r.mpn > 0 && s.cnt[e.node] >= r.mpn, r.spread && s.cnt[e.node] > 0:
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
	for name, c := range pl {
		if x, ok := s.byName[name]; ok && c > 0 {
			if _, ok := s.nodes[x].images[r.image]; ok {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// rejections says, for every node, why it cannot take one more replica of
// r, checking pool, memory, max_per_node and GPUs in that order so each node
// gets its most fundamental reason. Unusable nodes give their Unusable
// reason, merged in by name.
func (s *state) rejections(r *request) []Rejection {
	out := make([]Rejection, 0, len(s.nodes)+len(s.unusable))
	un := s.unusable
	for x := range s.nodes {
		n := &s.nodes[x]
		for len(un) > 0 && un[0].Node < n.name {
			out = append(out, un[0])
			un = un[1:]
		}
		var why Reason
		switch {
		case !r.allows(n.pool):
			why = PoolNotAllowed{Pool: n.pool, Allowed: r.pools}
		case n.mem < r.mem:
			why = InsufficientGPUMemory{Requested: r.mem, Capacity: n.mem}
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
		out = append(out, Rejection{Node: n.name, Reason: why})
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
