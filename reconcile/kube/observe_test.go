package kube

import (
	"context"
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
	want := []schedule.Node{
		{Name: "bad-memory", Pool: "l4", GPUs: 2, Product: "NVIDIA-L4"},
		{Name: "both", Pool: "a100", GPUs: 8, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB"},
		{Name: "gpu-tainted", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4"},
		{Name: "l4-1", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4", Images: map[string]int64{"sha256:aaaa": 5 << 30}},
		{Name: "z-a100", Pool: "a100", GPUs: 8, Used: 3, GPUMemory: 80 << 30, Product: "NVIDIA-A100-SXM4-80GB"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[s.Name] = s.Reason
	}
	wantReasons := map[string]string{
		"cordoned":    "cordoned",
		"noready":     "not Ready",
		"nopool":      "matches no node_pool",
		"notready":    "not Ready",
		"plugin-down": `no allocatable nvidia.com/gpu (GPU feature discovery reports "4" GPUs`,
		"training":    "taint dedicated=training:NoSchedule",
	}
	if len(reasons) != len(wantReasons) {
		t.Errorf("skipped %v, want %v", reasons, wantReasons)
	}
	for name, want := range wantReasons {
		if !strings.Contains(reasons[name], want) {
			t.Errorf("%s skipped for %q, want %q", name, reasons[name], want)
		}
	}

	// Without pools every usable GPU node is in pool "".
	got, _ = gpuNodes(nodes, nil, nil)
	if len(got) != 6 {
		t.Errorf("no pools: %d nodes, want 6 (the 5 above and nopool)", len(got))
	}
	for _, n := range got {
		if n.Pool != "" {
			t.Errorf("no pools: %s in pool %q", n.Name, n.Pool)
		}
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
		{Name: ns + "-l1", Pool: "l4", GPUs: 4, GPUMemory: 23034 << 20, Product: "NVIDIA-L4"},
	}
	if d := cmp.Diff(want, obs.Nodes); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	skipped := map[string]string{}
	for _, s := range obs.Skipped {
		if strings.HasPrefix(s.Name, ns+"-") {
			skipped[strings.TrimPrefix(s.Name, ns+"-")] = s.Reason
		}
	}
	if d := cmp.Diff(map[string]string{"cordoned": "cordoned (spec.unschedulable)", "down": "not Ready"}, skipped); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}
	if len(obs.Objects) != 0 {
		t.Errorf("objects %v in a namespace Gantry has not applied to", obs.Objects)
	}
}
