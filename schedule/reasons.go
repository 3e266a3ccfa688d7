package schedule

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GPUResource is the extended-resource name reported by InsufficientResource,
// the one the NVIDIA device plugin advertises, so messages read like the
// kube-scheduler's.
const GPUResource = "nvidia.com/gpu"

// Reason is a typed rejection of one node for one replica. The concrete
// types are InsufficientResource, InsufficientGPUMemory, PoolNotAllowed,
// MaxPerNodeReached, ClusterNotSelected and MaxPerClusterReached, which
// Place finds, and the node reasons
// NodeUnschedulable, NodeNotReady, UntoleratedTaint, NoAllocatableGPUs and
// NoMatchingPool, which the caller sets as Node.Unusable; callers that need
// more than the text type-switch on them.
type Reason interface{ Message() string }

// InsufficientResource: the node has too few free GPUs for one replica.
// Used counts unmanaged GPUs (Node.Used) plus GPUs placed by this Problem;
// Reserved is the pool reserve. The node fails when
// Used + Reserved + Requested > Capacity.
type InsufficientResource struct {
	Resource  string // GPUResource
	Requested int64
	Used      int64
	Reserved  int64
	Capacity  int64
}

// Message reads like the kube-scheduler's, e.g.
// "Insufficient nvidia.com/gpu (requested 2, used 7, capacity 8)"; the
// reserve is mentioned only when there is one so the common case stays short.
func (r InsufficientResource) Message() string {
	if r.Reserved != 0 {
		return fmt.Sprintf("Insufficient %s (requested %d, used %d, reserved %d, capacity %d)",
			r.Resource, r.Requested, r.Used, r.Reserved, r.Capacity)
	}
	return fmt.Sprintf("Insufficient %s (requested %d, used %d, capacity %d)",
		r.Resource, r.Requested, r.Used, r.Capacity)
}

func (r InsufficientResource) String() string { return r.Message() }

// InsufficientGPUMemory: each GPU of the node has less memory than the
// model needs per GPU. Both values are bytes.
type InsufficientGPUMemory struct {
	Requested int64
	Capacity  int64
}

// Message is e.g. "Insufficient GPU memory per GPU (requested 80Gi, capacity 40Gi)".
func (r InsufficientGPUMemory) Message() string {
	return fmt.Sprintf("Insufficient GPU memory per GPU (requested %s, capacity %s)",
		formatBytes(r.Requested), formatBytes(r.Capacity))
}

func (r InsufficientGPUMemory) String() string { return r.Message() }

// PoolNotAllowed: the node's pool is not one the release may use. Pool is ""
// for a node that belongs to no pool. Allowed is sorted and deduplicated and
// may be shared between the rejections of one Unplaced: do not modify it.
type PoolNotAllowed struct {
	Pool    string
	Allowed []string
}

// Message is e.g. `node pool "l4" not in allowed pools [a100 h100]`.
func (r PoolNotAllowed) Message() string {
	allowed := "[" + strings.Join(r.Allowed, " ") + "]"
	if r.Pool == "" {
		return "node is in no pool; allowed pools " + allowed
	}
	return fmt.Sprintf("node pool %q not in allowed pools %s", r.Pool, allowed)
}

func (r PoolNotAllowed) String() string { return r.Message() }

// MaxPerNodeReached: the node already holds Max replicas of the release.
type MaxPerNodeReached struct {
	Max int
}

// Message is e.g. "node already has max_per_node (2) replicas of the release".
func (r MaxPerNodeReached) Message() string {
	return fmt.Sprintf("node already has max_per_node (%d) replicas of the release", r.Max)
}

func (r MaxPerNodeReached) String() string { return r.Message() }

// ClusterNotSelected: the node's cluster is not one of Request.Clusters.
// Cluster is "" for a node outside a fleet.
type ClusterNotSelected struct {
	Cluster string
}

// Message is e.g. `node is in cluster "us-1", which the release does not run in`.
func (r ClusterNotSelected) Message() string {
	if r.Cluster == "" {
		return "node is in no cluster; the release runs only in named clusters"
	}
	return fmt.Sprintf("node is in cluster %q, which the release does not run in", r.Cluster)
}

func (r ClusterNotSelected) String() string { return r.Message() }

// MaxPerClusterReached: the node's cluster already holds Max replicas of
// the release (Request.MaxPerCluster).
type MaxPerClusterReached struct {
	Cluster string
	Max     int
}

// Message is e.g. `cluster "eu-1" already has max_per_cluster (4) replicas of the release`.
func (r MaxPerClusterReached) Message() string {
	return fmt.Sprintf("cluster %q already has max_per_cluster (%d) replicas of the release", r.Cluster, r.Max)
}

func (r MaxPerClusterReached) String() string { return r.Message() }

// The node reasons say why a node is no use to any replica, whatever it
// asks for. An observer (the kube target) sets them as Node.Unusable; Place
// reports them as the node's rejection. Their summaries in Unplaced.String
// read like kube-scheduler's, e.g. "3 node(s) were unschedulable".

// NodeUnschedulable: the node is cordoned (spec.unschedulable).
type NodeUnschedulable struct{}

// Message is kube-scheduler's "node(s) were unschedulable".
func (NodeUnschedulable) Message() string { return "node(s) were unschedulable" }

func (r NodeUnschedulable) String() string { return r.Message() }

// NodeNotReady: the node's Ready condition is not True.
type NodeNotReady struct{}

// Message is "node(s) were not ready".
func (NodeNotReady) Message() string { return "node(s) were not ready" }

func (r NodeNotReady) String() string { return r.Message() }

// UntoleratedTaint: the node has a NoSchedule or NoExecute taint that
// Gantry's pods do not tolerate (the first such taint).
type UntoleratedTaint struct {
	Key    string
	Value  string
	Effect string // NoSchedule or NoExecute
}

// Message is e.g. "node has untolerated taint dedicated=train:NoSchedule",
// the taint as kubectl prints it.
func (r UntoleratedTaint) Message() string {
	t := r.Key
	if r.Value != "" {
		t += "=" + r.Value
	}
	return "node has untolerated taint " + t + ":" + r.Effect
}

func (r UntoleratedTaint) String() string { return r.Message() }

// NoAllocatableGPUs: the node looks like a GPU node (it has the resource in
// its capacity, or GPU feature discovery labels it) but has no allocatable
// GPUs. Reported is the GPU count something else reports (GPU feature
// discovery's label), "" when nothing does.
type NoAllocatableGPUs struct {
	Reported string
}

// Message is e.g. `node has no allocatable nvidia.com/gpu (GPU feature
// discovery reports "4" GPUs; is the device plugin running?)`.
func (r NoAllocatableGPUs) Message() string {
	if r.Reported == "" {
		return "node has no allocatable " + GPUResource
	}
	return fmt.Sprintf("node has no allocatable %s (GPU feature discovery reports %q GPUs; is the device plugin running?)",
		GPUResource, r.Reported)
}

func (r NoAllocatableGPUs) String() string { return r.Message() }

// NoMatchingPool: node pools are declared and the node matches none of
// their selectors, so it is not Gantry's to use.
type NoMatchingPool struct{}

// Message is "node matches no node_pool selector".
func (NoMatchingPool) Message() string { return "node matches no node_pool selector" }

func (r NoMatchingPool) String() string { return r.Message() }

// nodeReasonJSON is how a node reason is written when a Node is marshalled
// (planner.Observed.Digest): its kind and text, so that two reasons without
// fields still differ.
type nodeReasonJSON struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func marshalNodeReason(r Reason) ([]byte, error) {
	return json.Marshal(nodeReasonJSON{Kind: reasonKind(r), Message: r.Message()})
}

// MarshalJSON writes {"kind", "message"}.
func (r NodeUnschedulable) MarshalJSON() ([]byte, error) { return marshalNodeReason(r) }

// MarshalJSON writes {"kind", "message"}.
func (r NodeNotReady) MarshalJSON() ([]byte, error) { return marshalNodeReason(r) }

// MarshalJSON writes {"kind", "message"}.
func (r UntoleratedTaint) MarshalJSON() ([]byte, error) { return marshalNodeReason(r) }

// MarshalJSON writes {"kind", "message"}.
func (r NoAllocatableGPUs) MarshalJSON() ([]byte, error) { return marshalNodeReason(r) }

// MarshalJSON writes {"kind", "message"}.
func (r NoMatchingPool) MarshalJSON() ([]byte, error) { return marshalNodeReason(r) }

// String is "node: message".
func (r Rejection) String() string {
	if r.Reason == nil {
		return r.Node
	}
	return r.Node + ": " + r.Reason.Message()
}

// String summarises the rejections the way the kube-scheduler's FitError
// does, e.g. "0/5 nodes are available: 3 node(s) were unschedulable, 1
// Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint {dedicated:
// train}". Reasons are counted per kind (untolerated taints per distinct
// key and value), most frequent first, ties by text, so the line is stable.
// Every node is a rejected node, unusable ones included: a replica stays
// unplaced only when no node can take it.
func (u Unplaced) String() string {
	if len(u.Rejected) == 0 {
		return "0/0 nodes are available: no nodes"
	}
	counts := map[string]int{}
	for _, r := range u.Rejected {
		counts[reasonSummary(r.Reason)]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes are available: ", len(u.Rejected))
	for i, k := range kinds {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(counts[k]))
		b.WriteByte(' ')
		b.WriteString(k)
	}
	return b.String()
}

// reasonSummary is the per-kind text of the histogram in Unplaced.String; it
// drops the per-node numbers so that equal kinds count together.
func reasonSummary(r Reason) string {
	switch r := r.(type) {
	case InsufficientResource:
		return "Insufficient " + r.Resource
	case InsufficientGPUMemory:
		return "node(s) had insufficient GPU memory per GPU"
	case PoolNotAllowed:
		return "node(s) not in allowed pools"
	case MaxPerNodeReached:
		return "node(s) at max_per_node for the release"
	case ClusterNotSelected:
		return "node(s) were in clusters the release does not run in"
	case MaxPerClusterReached:
		return "node(s) were in clusters at max_per_cluster for the release"
	case NodeUnschedulable, NodeNotReady:
		return r.Message()
	case UntoleratedTaint:
		// kube-scheduler's wording: key and value, not the effect.
		return "node(s) had untolerated taint {" + r.Key + ": " + r.Value + "}"
	case NoAllocatableGPUs:
		return "node(s) had no allocatable " + GPUResource
	case NoMatchingPool:
		return "node(s) matched no node_pool selector"
	case Recorded:
		if r.Summary != "" {
			return r.Summary
		}
		return r.Text
	case nil:
		return "node(s) rejected"
	default:
		return r.Message()
	}
}

// formatBytes prints whole binary units exactly (80Gi) and anything else as
// plain bytes, so a message never rounds a capacity into looking sufficient.
func formatBytes(n int64) string {
	units := []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
