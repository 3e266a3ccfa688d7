package kube

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

func gpuLimit(n int64) corev1.ResourceRequirements {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	return corev1.ResourceRequirements{Limits: corev1.ResourceList{planner.GPUResource: q}}
}

func TestPodGPUs(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	two := *resource.NewQuantity(2, resource.DecimalSI)
	for _, tc := range []struct {
		name string
		pod  corev1.PodSpec
		want int64
	}{
		{"no GPUs", corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, 0},
		{"limit implies the request", corev1.PodSpec{Containers: []corev1.Container{{Resources: gpuLimit(2)}, {Resources: gpuLimit(1)}}}, 3},
		{"request", corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{planner.GPUResource: two}}}}}, 2},
		// init containers run one at a time before the app containers: the
		// pod needs the larger of max(init) and sum(app)
		{"big init container", corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: gpuLimit(4)}, {Resources: gpuLimit(1)}},
			Containers:     []corev1.Container{{Resources: gpuLimit(1)}},
		}, 4},
		// a sidecar (restartable init container) runs alongside everything
		// after it
		{"sidecar", corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: gpuLimit(1), RestartPolicy: &always}, {Resources: gpuLimit(2)}},
			Containers:     []corev1.Container{{Resources: gpuLimit(1)}},
		}, 3}, // max(1+2 during init, 1+1 after)
	} {
		if got := podGPUs(&tc.pod); got != tc.want {
			t.Errorf("%s: %d GPUs, want %d", tc.name, got, tc.want)
		}
	}
}

func node(name string, labels map[string]string, gpus int, mut ...func(*corev1.Node)) corev1.Node {
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	if gpus >= 0 {
		q := *resource.NewQuantity(int64(gpus), resource.DecimalSI)
		n.Status.Capacity = corev1.ResourceList{planner.GPUResource: q}
		n.Status.Allocatable = corev1.ResourceList{planner.GPUResource: q}
	}
	for _, m := range mut {
		m(&n)
	}
	return n
}

// usableNodes are the nodes placement may use: the control plane is
// shared, and the nodes of other tests are there too, unusable (they match
// none of this test's pools).
func usableNodes(nodes []schedule.Node) []schedule.Node {
	var out []schedule.Node
	for _, n := range nodes {
		if n.Unusable == nil {
			out = append(out, n)
		}
	}
	return out
}

func TestGPUNodes(t *testing.T) {
	a100 := map[string]string{LabelGPUProduct: "NVIDIA-A100-SXM4-80GB", LabelGPUMemory: "81920"}
	l4 := map[string]string{LabelGPUProduct: "NVIDIA-L4", LabelGPUMemory: "23034"}
	// Given unsorted: the first pool by name wins, whatever the order.
	pools := []spec.NodePool{
		{Name: "shared", Selector: map[string]string{"tier": "shared"}},
		{Name: "l4", Selector: map[string]string{LabelGPUProduct: "NVIDIA-L4"}},
		{Name: "a100", Selector: map[string]string{LabelGPUProduct: "NVIDIA-A100-SXM4-80GB"}},
	}
	withTier := map[string]string{"tier": "shared"}
	for k, v := range a100 {
		withTier[k] = v
	}
	nodes := []corev1.Node{
		node("z-a100", a100, 8),
		node("l4-1", l4, 4, func(n *corev1.Node) {
			n.Status.Images = []corev1.ContainerImage{
				{Names: []string{"registry.local/models/chat@sha256:aaaa", "registry.local/models/chat:ck-1"}, SizeBytes: 5 << 30},
				{Names: []string{"only-a-tag:latest"}, SizeBytes: 1 << 20},
			}
		}),
		node("both", withTier, 8), // a100 and shared: a100 < shared
		node("cpu-only", nil, -1),
		node("nopool", map[string]string{LabelGPUProduct: "NVIDIA-H100"}, 8),
		node("cordoned", a100, 8, func(n *corev1.Node) { n.Spec.Unschedulable = true }),
		node("notready", a100, 8, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }),
		node("noready", a100, 8, func(n *corev1.Node) { n.Status.Conditions = nil }),
		node("training", a100, 8, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "training", Effect: corev1.TaintEffectNoSchedule}}
		}),
		node("gpu-tainted", l4, 4, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: planner.GPUResource, Effect: corev1.TaintEffectNoSchedule},
				{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule}}
		}),
		node("plugin-down", map[string]string{LabelGPUCount: "4", LabelGPUProduct: "NVIDIA-L4"}, -1),
		node("bad-memory", map[string]string{LabelGPUProduct: "NVIDIA-L4", LabelGPUMemory: "lots"}, 2),
	}
	used := map[string]int{"z-a100": 3, "elsewhere": 1}
	got, skipped := gpuNodes(nodes, used, pools)
	a100Node := func(name string, why schedule.Reason) schedule.Node {
		return schedule.Node{Name: name, Pool: "a100", GPUs: 8, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB", Unusable: why}
	}
	want := []schedule.Node{
		{Name: "bad-memory", Pool: "l4", GPUs: 2, Product: "NVIDIA-L4"},
		{Name: "both", Pool: "a100", GPUs: 8, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB"},
		a100Node("cordoned", schedule.NodeUnschedulable{}),
		{Name: "gpu-tainted", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4"},
		{Name: "l4-1", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4", Images: map[string]int64{"sha256:aaaa": 5 << 30}},
		{Name: "nopool", GPUs: 8, Product: "NVIDIA-H100", Unusable: schedule.NoMatchingPool{}},
		a100Node("noready", schedule.NodeNotReady{}),
		a100Node("notready", schedule.NodeNotReady{}),
		{Name: "plugin-down", Pool: "l4", Product: "NVIDIA-L4", Unusable: schedule.NoAllocatableGPUs{Reported: "4"}},
		a100Node("training", schedule.UntoleratedTaint{Key: "dedicated", Value: "training", Effect: "NoSchedule"}),
		{Name: "z-a100", Pool: "a100", GPUs: 8, Used: 3, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[s.Name] = s.Reason
		if s.Why == nil || s.Why.Message() != s.Reason {
			t.Errorf("skipped %s: reason %q, why %v", s.Name, s.Reason, s.Why)
		}
	}
	wantReasons := map[string]string{
		"cordoned":    "node(s) were unschedulable",
		"noready":     "node(s) were not ready",
		"nopool":      "node matches no node_pool selector",
		"notready":    "node(s) were not ready",
		"plugin-down": `node has no allocatable nvidia.com/gpu (GPU feature discovery reports "4" GPUs; is the device plugin running?)`,
		"training":    "node has untolerated taint dedicated=training:NoSchedule",
	}
	if d := cmp.Diff(wantReasons, reasons); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}

	// Without pools every GPU node is in pool "", and nopool is usable.
	got, _ = gpuNodes(nodes, nil, nil)
	usable := 0
	for _, n := range got {
		if n.Pool != "" {
			t.Errorf("no pools: %s in pool %q", n.Name, n.Pool)
		}
		if n.Unusable == nil {
			usable++
		}
	}
	if len(got) != 11 || usable != 6 {
		t.Errorf("no pools: %d nodes, %d usable, want 11 and 6 (the 5 above and nopool)", len(got), usable)
	}
}

// TestObserveNodesAndPods reads GPU nodes and pods from the server: pools,
// skipped nodes, and the GPUs that other workloads hold.
func TestObserveNodesAndPods(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	other := ns + "-other"
	createNamespace(t, ns)
	createNamespace(t, other)
	mine := map[string]string{"gantry.test/cluster": ns}
	createNodes(t,
		gpuNode{name: ns + "-a1", labels: mine, gpus: 8, product: "NVIDIA-A100-SXM4-80GB", memMiB: 81920},
		gpuNode{name: ns + "-l1", labels: mine, gpus: 4, product: "NVIDIA-L4", memMiB: 23034},
		gpuNode{name: ns + "-cordoned", labels: mine, gpus: 4, product: "NVIDIA-L4", unschedulable: true},
		gpuNode{name: ns + "-down", labels: mine, gpus: 4, product: "NVIDIA-L4", notReady: true},
		gpuNode{name: ns + "-cpu", labels: mine, gpus: -1},
	)
	pools := []spec.NodePool{
		{Name: "l4", Selector: map[string]string{"gantry.test/cluster": ns, LabelGPUProduct: "NVIDIA-L4"}},
		{Name: "a100", Selector: map[string]string{"gantry.test/cluster": ns, LabelGPUProduct: "NVIDIA-A100-SXM4-80GB"}},
	}
	a1 := ns + "-a1"
	pods := []struct {
		ns, name string
		gpus     int64
		phase    corev1.PodPhase
		gantry   bool
	}{
		{ns, "training", 2, corev1.PodRunning, false},
		{ns, "queued", 1, corev1.PodPending, false},            // bound, pulling images: holds its GPU
		{ns, "done", 4, corev1.PodSucceeded, false},            // finished: holds nothing
		{ns, "crashed", 4, corev1.PodFailed, false},            // finished: holds nothing
		{ns, "ours", 1, corev1.PodRunning, true},               // a shard's pod: placement counts it
		{other, "other-gantry", 1, corev1.PodRunning, true},    // another Gantry's release: used
		{other, "other-notebook", 0, corev1.PodRunning, false}, // no GPUs
	}
	core := admin(t).CoreV1()
	for _, p := range pods {
		labels := map[string]string{}
		if p.gantry {
			labels[planner.LabelManagedBy] = planner.ManagedBy
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns, Labels: labels},
			Spec: corev1.PodSpec{NodeName: a1, Containers: []corev1.Container{{
				Name: "main", Image: "busybox", Resources: gpuLimit(p.gpus),
			}}},
		}
		created, err := core.Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status.Phase = p.phase
		if _, err := core.Pods(p.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	obs, err := c.Observe(ctx, ns, pools)
	if err != nil {
		t.Fatal(err)
	}
	want := []schedule.Node{
		// training 2 + queued 1 + other-gantry 1
		{Name: a1, Pool: "a100", GPUs: 8, Used: 4, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB"},
		{Name: ns + "-cordoned", Pool: "l4", GPUs: 4, Product: "NVIDIA-L4", Unusable: schedule.NodeUnschedulable{}},
		{Name: ns + "-down", Pool: "l4", GPUs: 4, Product: "NVIDIA-L4", Unusable: schedule.NodeNotReady{}},
		{Name: ns + "-l1", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4"},
	}
	// The control plane is shared: other tests' nodes match none of
	// these pools and are there too, as unusable.
	var mineNodes []schedule.Node
	for _, n := range obs.Nodes {
		if strings.HasPrefix(n.Name, ns+"-") {
			mineNodes = append(mineNodes, n)
		} else if n.Unusable == nil {
			t.Errorf("another test's node %s is usable", n.Name)
		}
	}
	if d := cmp.Diff(want, mineNodes); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	skipped := map[string]string{}
	for _, s := range obs.Skipped {
		if strings.HasPrefix(s.Name, ns+"-") {
			skipped[strings.TrimPrefix(s.Name, ns+"-")] = s.Reason
		}
	}
	if d := cmp.Diff(map[string]string{"cordoned": "node(s) were unschedulable", "down": "node(s) were not ready"}, skipped); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}
	if len(obs.Objects) != 0 {
		t.Errorf("objects %v in a namespace Gantry has not applied to", obs.Objects)
	}
}

// TestUnplacedNamesUnusableNodes: the nodes placement may not use count in
// an unplaced release's message, each for its reason, the way
// kube-scheduler counts them, in the plan's warning and its JSON.
func TestUnplacedNamesUnusableNodes(t *testing.T) {
	c := cluster(t)
	ns := namespaceName(t)
	mine := map[string]string{"gantry.test/cluster": ns}
	l4 := func(name string) gpuNode {
		return gpuNode{name: ns + "-" + name, labels: mine, gpus: 4, product: "NVIDIA-L4", memMiB: 23034}
	}
	cordoned, tainted, down := l4("cordoned"), l4("tainted"), l4("down")
	cordoned.unschedulable = true
	tainted.taints = []corev1.Taint{{Key: "dedicated", Value: "train", Effect: corev1.TaintEffectNoSchedule}}
	down.notReady = true
	createNodes(t, l4("n1"), l4("n2"), cordoned, tainted, down)
	// 5 replicas of 1 GPU, at most 2 a node: n1 and n2 take 4.
	cfg := specs(t, ns, map[string]int{"chat": 5})

	obs, err := c.Observe(context.Background(), ns, cfg.Pools)
	if err != nil {
		t.Fatal(err)
	}
	// Other tests' nodes are in the shared control plane too (unusable:
	// they match no pool of this test); leave them out so the counts are
	// this test's.
	var nodes []schedule.Node
	for _, n := range obs.Nodes {
		if strings.HasPrefix(n.Name, ns+"-") {
			nodes = append(nodes, n)
		}
	}
	p, err := planner.Build(*cfg, planner.Observed{Objects: obs.Objects, Nodes: nodes, Artifacts: artifacts(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	const why = "0/5 nodes are available: 2 node(s) at max_per_node for the release, " +
		"1 node(s) had untolerated taint {dedicated: train}, 1 node(s) were not ready, 1 node(s) were unschedulable"
	if want := "release chat: 1 of 5 replicas cannot be placed: " + why; !slices.Contains(p.Warnings, want) {
		t.Errorf("warnings %q, want %q", p.Warnings, want)
	}
	if len(p.Releases) != 1 || p.Releases[0].Unplaced == nil {
		t.Fatalf("releases %+v: want chat unplaced", p.Releases)
	}
	rp := p.Releases[0]
	if got := rp.Unplaced.String(); got != why {
		t.Errorf("Unplaced.String() = %q, want %q", got, why)
	}
	if d := cmp.Diff(schedule.Placement{ns + "-n1": 2, ns + "-n2": 2}, rp.Placement); d != "" {
		t.Errorf("placement (-want +got):\n%s", d)
	}
	// The JSON plan names each node's reason; read back, it counts alike.
	b, err := json.Marshal(rp.Unplaced)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{
		`{"node":"` + ns + `-cordoned","kind":"NodeUnschedulable","message":"node(s) were unschedulable","summary":"node(s) were unschedulable"}`,
		`{"node":"` + ns + `-down","kind":"NodeNotReady","message":"node(s) were not ready","summary":"node(s) were not ready"}`,
		`{"node":"` + ns + `-tainted","kind":"UntoleratedTaint","message":"node has untolerated taint dedicated=train:NoSchedule","summary":"node(s) had untolerated taint {dedicated: train}"}`,
	} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("unplaced JSON %s\nlacks %s", b, frag)
		}
	}
	var back schedule.Unplaced
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.String(); got != why {
		t.Errorf("read back: %q, want %q", got, why)
	}
}
