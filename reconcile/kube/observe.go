package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// GPU feature discovery labels (NVIDIA's gpu-feature-discovery / GPU
// operator).
const (
	LabelGPUProduct = "nvidia.com/gpu.product"
	LabelGPUMemory  = "nvidia.com/gpu.memory" // MiB per GPU
	LabelGPUCount   = "nvidia.com/gpu.count"
)

// pageSize bounds each List response; large clusters are read in pages.
const pageSize = 500

// Observation is what Observe read from the cluster.
type Observation struct {
	// Objects are the managed Deployments, Services and HTTPRoutes of the
	// namespace, sorted by ID, as the server returns them minus
	// metadata.managedFields, metadata.resourceVersion and status. Those
	// three change without anyone changing the object (status on every
	// pod restart), and would otherwise make every saved plan stale. What the planner reads of the
	// status is beside the manifest: a Deployment's Available is its
	// status.availableReplicas (0 when the status does not say), and
	// Version its resourceVersion.
	Objects []planner.Object
	// Nodes are the GPU nodes, sorted by name. Those placement may not
	// use have Unusable set (schedule.NodeUnschedulable, …): placement
	// puts nothing on them and names them, with the reason, in an
	// unplaced release's message ("0/5 nodes are available: 3 node(s)
	// were unschedulable, …"). Nodes without GPUs are not listed.
	Nodes []schedule.Node
	// Skipped are the nodes of Nodes with Unusable set, with the reason's
	// text, sorted by name.
	Skipped []SkippedNode
	// Shards is the rollout state of every managed Deployment, by name.
	Shards []ShardStatus
}

// SkippedNode is a GPU node placement may not use.
type SkippedNode struct {
	Name   string
	Reason string // Why's message
	Why    schedule.Reason
}

// Observe reads the GPU nodes, the pods that hold GPUs, and the managed
// objects of namespace: from the informer cache when StartCache has made
// one and it is usable now (synced, every watch open, Gantry's own writes
// seen), otherwise with one List per kind (paged). See doc.go.
//
// A GPU node is one whose capacity or allocatable has nvidia.com/gpu, or
// that carries nvidia.com/gpu.count. Its GPUs are allocatable nvidia.com/gpu
// (what kube-scheduler enforces), its memory per GPU is nvidia.com/gpu.memory
// (MiB; 0 when absent, which no gpu_memory requirement fits) and its product
// nvidia.com/gpu.product. Used counts the GPUs requested by running or
// pending pods bound to the node that Gantry does not manage in namespace;
// pods that Gantry manages in other namespaces count as used too.
//
// A node is unusable (Node.Unusable, and listed in Skipped) when it is
// cordoned, not Ready, has no allocatable GPU, has a NoSchedule or
// NoExecute taint that shards do not tolerate (they tolerate only
// nvidia.com/gpu), or matches no pool: the first of these, in this order.
// Pools: a node
// belongs to the first pool, by name, whose selector labels it all carries
// (a pool without a selector takes every GPU node). When pools is empty,
// every GPU node is usable with Pool "". When pools is not empty, a node
// that matches none is not Gantry's to use: someone declared which nodes
// models run on, and an unlisted node (a training box, a new node type) is
// left alone rather than filled by releases that name no pools.
func (c *Client) Observe(ctx context.Context, namespace string, pools []spec.NodePool) (Observation, error) {
	if namespace == "" {
		return Observation{}, fmt.Errorf("observe: no namespace")
	}
	if ch := c.informerCache(); ch != nil {
		obs, err := ch.observe(ctx, namespace, pools)
		if !errors.Is(err, errCacheUnusable) {
			return obs, err
		}
		logCacheFallback(namespace, err)
	}
	return c.observeList(ctx, namespace, pools)
}

// observeList is Observe by one paged List per kind.
func (c *Client) observeList(ctx context.Context, namespace string, pools []spec.NodePool) (Observation, error) {
	nodes, err := c.listNodes(ctx)
	if err != nil {
		return Observation{}, err
	}
	used, err := c.gpusInUse(ctx, namespace)
	if err != nil {
		return Observation{}, err
	}
	var objs []unstructured.Unstructured
	for _, k := range managedKinds {
		l, err := c.listManaged(ctx, kinds[k], namespace)
		if err != nil && kinds[k].absent != nil && kindGone(err) {
			c.noteKindGone(k, err)
			continue
		}
		if err != nil {
			return Observation{}, err
		}
		objs = append(objs, l...)
	}
	return assemble(nodes, used, objs, namespace, pools)
}

func (c *Client) listNodes(ctx context.Context) ([]corev1.Node, error) {
	var out []corev1.Node
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		l, err := c.typed.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("observe: list nodes: %w", err)
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// gpusInUse sums, per node, the GPUs of bound pods that are not finished
// and not Gantry's own in namespace.
func (c *Client) gpusInUse(ctx context.Context, namespace string) (map[string]int, error) {
	used := map[string]int{}
	opts := metav1.ListOptions{
		Limit:         pageSize,
		FieldSelector: "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
	}
	for {
		l, err := c.typed.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("observe: list pods: %w", err)
		}
		for i := range l.Items {
			addPodGPUs(used, &l.Items[i], namespace)
		}
		if l.Continue == "" {
			return used, nil
		}
		opts.Continue = l.Continue
	}
}

// addPodGPUs adds the pod's GPUs to its node's count unless it is
// finished, unbound, or Gantry's own in namespace.
func addPodGPUs(used map[string]int, p *corev1.Pod, namespace string) {
	if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	if p.Namespace == namespace && p.Labels[planner.LabelManagedBy] == planner.ManagedBy {
		// Placement counts these through the Deployments' replicas:
		// its own releases' as their current placement, and with
		// gantry run --shard, other shards' releases' as used GPUs
		// (see reconcile.Shard). Counting the pods too would count
		// them twice.
		return
	}
	used[p.Spec.NodeName] += int(podGPUs(&p.Spec))
}

// PodGPUs is podGPUs for other packages: a sharded engine counts the
// GPUs of other shards' Deployments by their pod template.
func PodGPUs(p *corev1.PodSpec) int64 { return podGPUs(p) }

// podGPUs is the pod's effective nvidia.com/gpu request, as the scheduler
// computes it: the larger of the app containers plus restartable init
// containers (sidecars), and the largest plain init container plus the
// sidecars started before it.
func podGPUs(p *corev1.PodSpec) int64 {
	var sum, sidecars, initPeak int64
	for i := range p.Containers {
		sum += containerGPUs(&p.Containers[i])
	}
	for i := range p.InitContainers {
		c := &p.InitContainers[i]
		g := containerGPUs(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars += g
			continue
		}
		initPeak = max(initPeak, sidecars+g)
	}
	return max(sum+sidecars, initPeak)
}

// containerGPUs is the container's nvidia.com/gpu request; for extended
// resources a limit alone implies an equal request.
func containerGPUs(c *corev1.Container) int64 {
	if q, ok := c.Resources.Requests[planner.GPUResource]; ok {
		return q.Value()
	}
	if q, ok := c.Resources.Limits[planner.GPUResource]; ok {
		return q.Value()
	}
	return 0
}

// gpuNodes turns Node objects into placement's view: every GPU node,
// those placement may not use with Unusable set, and those again as
// skipped. Pure; see Observe.
func gpuNodes(nodes []corev1.Node, used map[string]int, pools []spec.NodePool) ([]schedule.Node, []SkippedNode) {
	sorted := append([]spec.NodePool(nil), pools...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var out []schedule.Node
	var skipped []SkippedNode
	for i := range nodes {
		n := &nodes[i]
		alloc, hasAlloc := n.Status.Allocatable[planner.GPUResource]
		_, hasCap := n.Status.Capacity[planner.GPUResource]
		count, hasCount := n.Labels[LabelGPUCount]
		if !hasAlloc && !hasCap && !hasCount {
			continue // not a GPU node
		}
		gpus := int(alloc.Value())
		pool, inPool := poolOf(n.Labels, sorted)
		var why schedule.Reason
		switch t, tainted := untoleratedTaint(n.Spec.Taints); {
		case n.Spec.Unschedulable:
			why = schedule.NodeUnschedulable{}
		case !nodeReady(n):
			why = schedule.NodeNotReady{}
		case gpus <= 0:
			why = schedule.NoAllocatableGPUs{Reported: count}
		case tainted:
			why = schedule.UntoleratedTaint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)}
		case !inPool:
			why = schedule.NoMatchingPool{}
		}
		if why != nil {
			skipped = append(skipped, SkippedNode{Name: n.Name, Reason: why.Message(), Why: why})
		}
		out = append(out, schedule.Node{
			Name:      n.Name,
			Pool:      pool,
			GPUs:      max(gpus, 0),
			Used:      used[n.Name],
			GPUMemory: gpuMemory(n.Labels[LabelGPUMemory]),
			Product:   n.Labels[LabelGPUProduct],
			Hostname:  hostname(n),
			Images:    nodeImages(n),
			Unusable:  why,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	sort.Slice(skipped, func(i, j int) bool { return skipped[i].Name < skipped[j].Name })
	return out, skipped
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// untoleratedTaint returns the first taint that keeps shards off the node.
// Shards tolerate nvidia.com/gpu:NoSchedule (see planner.Render).
func untoleratedTaint(taints []corev1.Taint) (corev1.Taint, bool) {
	for _, t := range taints {
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if t.Key == planner.GPUResource && t.Effect == corev1.TaintEffectNoSchedule {
			continue
		}
		return t, true
	}
	return corev1.Taint{}, false
}

// poolOf returns the first pool (pools are sorted by name) whose selector
// the labels satisfy. With no pools every node is usable, in pool "".
func poolOf(labels map[string]string, pools []spec.NodePool) (string, bool) {
	if len(pools) == 0 {
		return "", true
	}
	for _, p := range pools {
		match := true
		for k, v := range p.Selector {
			if got, ok := labels[k]; !ok || got != v {
				match = false
				break
			}
		}
		if match {
			return p.Name, true
		}
	}
	return "", false
}

// gpuMemory parses GFD's nvidia.com/gpu.memory (MiB) into bytes; 0 when
// absent or malformed.
func gpuMemory(mib string) int64 {
	v, err := strconv.ParseInt(strings.TrimSpace(mib), 10, 64)
	if err != nil || v <= 0 {
		return 0
	}
	return v << 20
}

func (c *Client) listManaged(ctx context.Context, k kind, namespace string) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	opts := metav1.ListOptions{Limit: pageSize, LabelSelector: planner.LabelManagedBy + "=" + planner.ManagedBy}
	for {
		l, err := c.dyn.Resource(k.gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("observe: list %s in %s: %w", k.gvr.Resource, namespace, err)
		}
		out = append(out, l.Items...)
		if l.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = l.GetContinue()
	}
}

// stripNoise removes what changes without anyone changing the object.
func stripNoise(m map[string]any) map[string]any {
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "resourceVersion")
	}
	return m
}

// nodeImages are the images the kubelet reports on n (status.images), by
// digest: what placement's image locality looks for. Names without a
// digest (repo:tag) are left out; nil when there are none.
func nodeImages(n *corev1.Node) map[string]int64 {
	var out map[string]int64
	for _, img := range n.Status.Images {
		for _, name := range img.Names {
			_, digest, ok := strings.Cut(name, "@")
			if !ok || !strings.HasPrefix(digest, "sha256:") {
				continue
			}
			if out == nil {
				out = map[string]int64{}
			}
			out[digest] = img.SizeBytes
		}
	}
	return out
}

// hostname is the node's kubernetes.io/hostname label when it differs from
// its name (a long or FQDN node name); shards are pinned by it.
func hostname(n *corev1.Node) string {
	if h := n.Labels["kubernetes.io/hostname"]; h != n.Name {
		return h
	}
	return ""
}
