package schedule

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Node is an immutable snapshot of one GPU node.
type Node struct {
	Name string
	// Cluster is the cluster the node belongs to in a fleet; "" outside
	// one. A node's identity is (Cluster, Name): see ID. Omitted from
	// JSON when "", so that a Node outside a fleet marshals as before
	// fleets (saved plans' observed digests stay valid).
	Cluster     string  `json:",omitempty"`
	Pool        string  // "" = belongs to no pool
	GPUs        int     // allocatable GPUs on the node
	Used        int     // GPUs used by workloads this Problem does not place (unmanaged pods); free for us = GPUs - Used - pool reserve - what we place
	GPUMemory   int64   // bytes of memory per GPU
	Product     string  // e.g. "NVIDIA-A100-SXM4-80GB"
	Connections float64 // current active connections (live load)
	// Hostname is the node's kubernetes.io/hostname label, which pods are
	// pinned by; "" means the same as Name. Placement does not use it.
	Hostname string
	// Images are the images the node holds (the kubelet's
	// node.status.images), by digest ("sha256:…"), with their size in
	// bytes (0 = unknown). See Problem.ImageLocality.
	Images map[string]int64 `json:",omitempty"`
	// Unusable, when set, says why placement may not use the node at all
	// (cordoned, not Ready, an untolerated taint, …; see NodeUnschedulable
	// and the other node reasons). Place never keeps or puts a replica on
	// it, counts none of its GPUs, and reports the reason as the node's
	// rejection for every request left unplaced, so that "0/N nodes" counts
	// every GPU node. nil: the node is usable.
	Unusable Reason `json:",omitempty"`
}

// ID is the node's identity, which placements are keyed by: its name,
// or "CLUSTER/NAME" for a node of a fleet's cluster.
func (n Node) ID() string {
	if n.Cluster == "" {
		return n.Name
	}
	return n.Cluster + "/" + n.Name
}

// SplitID is the inverse of Node.ID: the cluster ("" outside a fleet)
// and the node name of a placement key.
func SplitID(id string) (cluster, name string) {
	if i := strings.IndexByte(id, '/'); i >= 0 {
		return id[:i], id[i+1:]
	}
	return "", id
}

// Pool holds per-pool settings.
type Pool struct {
	Weight  float64 // > 0; higher weight = takes proportionally more load. 0 or unset means 1.
	Reserve int     // GPUs held back on each node of this pool
}

// Request asks for Replicas replicas of one release.
type Request struct {
	Release    string
	Replicas   int
	GPUs       int      // GPUs per replica (>= 0; 0 means CPU-only replica that still needs a node in allowed pools)
	GPUMemory  int64    // bytes of GPU memory needed per GPU; 0 = any
	Pools      []string // allowed pools; empty = any node
	MaxPerNode int      // 0 = unlimited
	Spread     bool     // prefer nodes not yet holding this release; see the package doc
	// Image is the digest ("sha256:…") of the image the replicas start
	// from (the model image); "" = none known. Nodes that hold it are
	// preferred within Problem.ImageLocality.
	Image string
	// Clusters, when set, are the only clusters (Node.Cluster) whose
	// nodes may hold the replicas; empty: any node. MinPerCluster and
	// MaxPerCluster (0: no bound) bound the replicas on each of those
	// clusters: the minimum is placed first, cluster by cluster, and a
	// cluster that cannot hold its minimum is reported in Result.Short
	// while its replicas go where they fit.
	Clusters      []string
	MinPerCluster int
	MaxPerCluster int
}

// Placement maps node ID (Node.ID) -> replicas of one release on it.
type Placement map[string]int

// Total is the number of replicas in the placement.
func (p Placement) Total() int {
	n := 0
	for _, c := range p {
		n += c
	}
	return n
}

// Problem is everything Place needs; Place does not modify it.
type Problem struct {
	Nodes       []Node
	Pools       map[string]Pool
	Requests    []Request            // placed in slice order (callers sort by release name)
	Current     map[string]Placement // release -> its current placement (may mention nodes that no longer exist or releases not requested)
	ReplicaLoad float64              // load one replica adds to its node's connections; 0 means 1
	// ImageLocality is the most a node's score is lowered, as a fraction,
	// for holding a request's image: 0.2 lets a node with the image win
	// over one without up to 1/(1-0.2) = 1.25 times its load. The fraction
	// grows with the image's size up to LocalityFullSize, as
	// kube-scheduler's ImageLocality does: a small image is cheap to pull
	// anywhere. 0 or less turns locality off; it is capped at MaxImageLocality.
	ImageLocality float64
	// ClusterWeights scales the weight of every node of a cluster (by
	// Node.Cluster), on top of its pool's weight; absent or 0 means 1.
	ClusterWeights map[string]float64
}

// LocalityFullSize is the image size from which a node holding the
// image gets all of Problem.ImageLocality (smaller: proportionally less;
// unknown size: all of it).
const LocalityFullSize = 1 << 30

// MaxImageLocality caps Problem.ImageLocality: load always decides
// between nodes more than twice as loaded as each other.
const MaxImageLocality = 0.5

// ImageLocal reports whether node n holds image (a digest).
func (n Node) ImageLocal(image string) bool {
	_, ok := n.Images[image]
	return image != "" && ok
}

// Result is the placement Place chose.
type Result struct {
	// Placements has one entry per requested release, even when nothing
	// could be placed, so callers can tell "placed nowhere" from "not
	// requested". Each Placement lists only nodes with > 0 replicas.
	Placements map[string]Placement
	Unplaced   []Unplaced // sorted by release
	// ImageLocal lists, per release with an Image, the nodes of its
	// placement that hold the image already, sorted: its replicas there
	// start without a pull.
	ImageLocal map[string][]string
	// Short lists the clusters that hold fewer of a release's replicas
	// than its MinPerCluster, sorted by release then cluster.
	Short []ClusterShort
}

// ClusterShort says that Cluster holds Placed of the Min replicas of
// Release its MinPerCluster asks for.
type ClusterShort struct {
	Release string `json:"release"`
	Cluster string `json:"cluster"`
	Min     int    `json:"min"`
	Placed  int    `json:"placed"`
}

// Unplaced says why Count replicas of Release could not be placed.
type Unplaced struct {
	Release  string      `json:"release"`
	Count    int         `json:"count"`
	Rejected []Rejection `json:"rejected"` // one per rejected node, sorted by node ID
}

// Rejection is why one node could not take a replica.
type Rejection struct {
	Node   string // node ID (Node.ID)
	Reason Reason
}

// rejectionJSON is how a Rejection is saved: the reason's kind and text,
// so that a saved plan reads back without knowing every Reason type.
type rejectionJSON struct {
	Node    string `json:"node"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Summary string `json:"summary"` // how Unplaced.String groups it
}

// MarshalJSON writes {"node", "kind", "message"}.
func (r Rejection) MarshalJSON() ([]byte, error) {
	j := rejectionJSON{Node: r.Node}
	if r.Reason != nil {
		j.Kind = reasonKind(r.Reason)
		j.Message = r.Reason.Message()
		j.Summary = reasonSummary(r.Reason)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote; the reason comes back as a
// Recorded.
func (r *Rejection) UnmarshalJSON(b []byte) error {
	var j rejectionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	r.Node, r.Reason = j.Node, Recorded{Kind: j.Kind, Text: j.Message, Summary: j.Summary}
	return nil
}

// Recorded is a reason read back from a saved plan.
type Recorded struct {
	Kind    string
	Text    string
	Summary string
}

// Message is the text that was saved.
func (r Recorded) Message() string { return r.Text }

func reasonKind(r Reason) string {
	switch v := r.(type) {
	case InsufficientResource:
		return "InsufficientResource"
	case InsufficientGPUMemory:
		return "InsufficientGPUMemory"
	case PoolNotAllowed:
		return "PoolNotAllowed"
	case MaxPerNodeReached:
		return "MaxPerNodeReached"
	case ClusterNotSelected:
		return "ClusterNotSelected"
	case MaxPerClusterReached:
		return "MaxPerClusterReached"
	case NodeUnschedulable:
		return "NodeUnschedulable"
	case NodeNotReady:
		return "NodeNotReady"
	case UntoleratedTaint:
		return "UntoleratedTaint"
	case NoAllocatableGPUs:
		return "NoAllocatableGPUs"
	case NoMatchingPool:
		return "NoMatchingPool"
	case Recorded:
		return v.Kind
	}
	return fmt.Sprintf("%T", r)
}
