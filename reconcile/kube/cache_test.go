package kube

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/planner"
)

func startCache(t *testing.T, c *Client, opts CacheOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.StartCache(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if !c.Cached() {
		t.Fatal("StartCache succeeded but Cached() is false")
	}
}

// TestCacheObservesLikeList: the cache and the List path see the same
// world, and after the start the cache reads without a List.
func TestCacheObservesLikeList(t *testing.T) {
	listing := cluster(t)
	c, rc := countingClient(t)
	ctx := context.Background()
	ns := namespaceName(t)
	names := testNodes(t, ns, 3)
	cfg := specs(t, ns, map[string]int{"chat": 3, "embed": 1})
	reconcile(t, listing, cfg, ApplyOptions{})
	// A pod of someone else's holding 2 GPUs on the first node.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "default"}, Spec: corev1.PodSpec{
		NodeName: names[0],
		Containers: []corev1.Container{{Name: "t", Image: "x", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{planner.GPUResource: resource.MustParse("2")}}}},
	}}
	if _, err := admin(t).CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin(t).CoreV1().Pods("default").Delete(context.Background(), "train", metav1.DeleteOptions{})
	})

	// The kubelet's report of the images on the second node (what image
	// locality reads): by status update, as the kubelet writes it.
	n1, err := admin(t).CoreV1().Nodes().Get(ctx, names[1], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1.Status.Images = []corev1.ContainerImage{{Names: []string{"reg.local/models/chat@sha256:cccc", "reg.local/models/chat:ck-3"}, SizeBytes: 9 << 30}}
	if _, err := admin(t).CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	startCache(t, c, CacheOptions{})
	var got Observation
	deadline := time.Now().Add(10 * time.Second)
	for { // the pod was created before the start; still, wait for it rather than trust timing
		var err error
		if got, err = c.Observe(ctx, ns, cfg.Pools); err != nil {
			t.Fatal(err)
		}
		if mine := usableNodes(got.Nodes); len(mine) == 3 && mine[0].Used == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want, err := listing.Observe(ctx, ns, cfg.Pools)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cached Observe differs from listing (-list +cache):\n%s", d)
	}
	mine := usableNodes(want.Nodes)
	if len(mine) != 3 || mine[0].Name != names[0] {
		t.Fatalf("usable nodes %v, want %v", mine, names)
	}
	if mine[0].Used != 2 {
		t.Errorf("node %s used %d GPUs, want the pod's 2", mine[0].Name, mine[0].Used)
	}
	if d := cmp.Diff(map[string]int64{"sha256:cccc": 9 << 30}, mine[1].Images); d != "" {
		t.Errorf("images of %s (-want +got):\n%s", mine[1].Name, d)
	}
	rc.take()
	if _, err := c.Observe(ctx, ns, cfg.Pools); err != nil {
		t.Fatal(err)
	}
	if got := rc.take(); len(got) != 0 {
		t.Errorf("a cached Observe sent requests: %s", formatCounts(got))
	}
}

// TestCacheWaitsForOwnWrites: an Observe right after Apply shows what the
// Apply wrote (created, configured, deleted), and a write the cache never
// shows makes Observe list instead of planning from an older view.
func TestCacheWaitsForOwnWrites(t *testing.T) {
	c, rc := countingClient(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	startCache(t, c, CacheOptions{WriteTimeout: 500 * time.Millisecond})
	for _, replicas := range []map[string]int{{"chat": 1}, {"chat": 2, "embed": 1}, {"embed": 1}} {
		cfg := specs(t, ns, replicas)
		p, cs := reconcile(t, c, cfg, ApplyOptions{})
		if !cs.Changed() {
			t.Fatalf("%v: nothing changed: %v", replicas, cs)
		}
		again, _ := plan(t, c, cfg) // right away: the cache must show the apply
		if !again.Empty() {
			t.Errorf("%v: after applying %d actions, the next plan from the cache is not empty:\n%s", replicas, len(p.Actions), actionList(again))
		}
	}
	rc.take()
	ch := c.informerCache()
	// A write the cache will never show: Observe gives up waiting and lists.
	ch.expectWrite("apps/v1/Deployment", ns, "never-written", "1")
	start := time.Now()
	if _, err := c.Observe(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	got := rc.take()
	if got["list deployments"] == 0 || got["list nodes"] == 0 {
		t.Errorf("with a write not seen, Observe did not list: %s", formatCounts(got))
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("Observe listed after %s, before WriteTimeout", waited)
	}
	// The expectation is dropped: the next Observe reads the cache.
	if _, err := c.Observe(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.take(); len(got) != 0 {
		t.Errorf("after the timeout, Observe still did not read the cache: %s", formatCounts(got))
	}
	// A deletion the cache has not seen (the object is still there).
	d := deployments(t, ns)
	for name, dep := range d {
		ch.expectGone("apps/v1/Deployment", ns, name, dep.UID)
		break
	}
	if _, err := c.Observe(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.take(); got["list deployments"] == 0 {
		t.Errorf("with a deletion not seen, Observe did not list: %s", formatCounts(got))
	}
	ch.expectGone("apps/v1/Deployment", ns, "some-name", types.UID("gone-already"))
	if _, err := c.Observe(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.take(); len(got) != 0 {
		t.Errorf("a deletion of an object the cache does not hold made Observe list: %s", formatCounts(got))
	}
}

// cutProxy forwards TCP to the API server until cut, then refuses
// connections until restored: to the client, the API server went away.
// (Stopping the shared API server itself hangs on the open watches: envtest
// gives up after 20s and later tests lose their server.)
type cutProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	p := &cutProxy{addr: "127.0.0.1:0", target: target}
	if err := p.restore(); err != nil {
		t.Fatal(err)
	}
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) restore() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return nil
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestCacheAPIServerGone: while the API server is unreachable, a cached
// Observe fails (it lists, and the List fails) instead of planning from
// what the cache last saw; once the server is back and the watches are
// open again, Observe reads the cache and nothing needs to change.
func TestCacheAPIServerGone(t *testing.T) {
	cluster(t)
	u, err := url.Parse(testConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	rc := &requestCounter{counts: map[string]int{}}
	cfg := rest.CopyConfig(testConfig)
	cfg.Host = "https://" + proxy.addr
	cfg.Wrap(rc.wrap)
	c, err := New(cfg, WithRequestTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	spec := specs(t, ns, map[string]int{"chat": 2})
	startCache(t, c, CacheOptions{})
	reconcile(t, c, spec, ApplyOptions{})

	proxy.cut()
	var obsErr error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) { // the watches notice the cut within moments
		if _, obsErr = c.Observe(ctx, ns, spec.Pools); obsErr != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if obsErr == nil || !strings.Contains(obsErr.Error(), "observe: list") {
		t.Fatalf("cached Observe with the API server gone: %v, want a failed List", obsErr)
	}
	t.Logf("observe while gone: %v", obsErr)

	if err := proxy.restore(); err != nil {
		t.Fatal(err)
	}
	rc.take()
	deadline = time.Now().Add(90 * time.Second)
	for {
		_, err := c.Observe(ctx, ns, spec.Pools)
		got := rc.take()
		if err == nil && verbCount(got, "list") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90s after the API server came back Observe still lists or fails: %v (%s)", err, formatCounts(got))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if p, _ := plan(t, c, spec); !p.Empty() {
		t.Errorf("after the outage the cached plan is not empty:\n%s", actionList(p))
	}
}

// TestCacheNotSynced: informers that cannot reach the API server do not
// become the client's cache; Observe keeps listing (and fails here).
func TestCacheNotSynced(t *testing.T) {
	cluster(t)
	cfg := rest.CopyConfig(testConfig)
	cfg.Host = "https://127.0.0.1:1" // nothing listens
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.StartCache(context.Background(), CacheOptions{SyncTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "not synced") {
		t.Fatalf("StartCache against nothing: %v, want not synced", err)
	}
	if c.Cached() {
		t.Error("an unsynced cache became the client's")
	}
	if _, err := c.Observe(context.Background(), "x", nil); err == nil || !strings.Contains(err.Error(), "observe: list nodes") {
		t.Errorf("Observe: %v, want the List path's error", err)
	}
}

// TestSlimObjects: the transforms keep everything gpuNodes and podGPUs
// read.
func TestSlimObjects(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	gpu := func(n string) corev1.ResourceList {
		return corev1.ResourceList{planner.GPUResource: resource.MustParse(n), corev1.ResourceCPU: resource.MustParse("4")}
	}
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "x", Labels: map[string]string{"app": "a"}}, Spec: corev1.PodSpec{NodeName: "n1",
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: gpu("2")}}, {Name: "d", Resources: corev1.ResourceRequirements{Limits: gpu("1")}}}}},
		// a sidecar and an init container that needs more than the app: 1+4 = 5
		{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "x"}, Spec: corev1.PodSpec{NodeName: "n2",
			InitContainers: []corev1.Container{{Name: "s", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Limits: gpu("1")}}, {Name: "i", Resources: corev1.ResourceRequirements{Limits: gpu("4")}}},
			Containers:     []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Limits: gpu("1")}}}}},
		// Gantry's own in namespace x: not counted
		{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "x", Labels: map[string]string{planner.LabelManagedBy: planner.ManagedBy}}, Spec: corev1.PodSpec{NodeName: "n1",
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Limits: gpu("1")}}}}},
	}
	want, got := map[string]int{}, map[string]int{}
	for i := range pods {
		addPodGPUs(want, &pods[i], "x")
		s, _ := slimPod(pods[i].DeepCopy())
		addPodGPUs(got, s.(*corev1.Pod), "x")
	}
	if d := cmp.Diff(map[string]int{"n1": 3, "n2": 5}, want); d != "" {
		t.Fatalf("the test's arithmetic (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("GPUs in use from slim pods (-full +slim):\n%s", d)
	}

	res := corev1.ResourceList{planner.GPUResource: resource.MustParse("8"), corev1.ResourceCPU: resource.MustParse("64")}
	ready := []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
	nodes := []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelGPUProduct: "H100", LabelGPUMemory: "81559", "pool": "a"}, Annotations: map[string]string{"big": "x"}},
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: ready, Images: []corev1.ContainerImage{{Names: []string{"img"}},
				{Names: []string{"reg/models/chat@sha256:bbbb", "reg/models/chat:ck-2"}, SizeBytes: 7 << 30}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{"kubernetes.io/hostname": "n2.example.com", "pool": "a"}},
			Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: "dedicated", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: ready}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n3", Labels: map[string]string{"kubernetes.io/hostname": "n3.example.com", "pool": "a"}},
			Spec:   corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: ready}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n4", Labels: map[string]string{"kubernetes.io/hostname": "n4.example.com", LabelGPUCount: "8"}},
			Status: corev1.NodeStatus{Conditions: ready}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n5", Labels: map[string]string{"pool": "a"}},
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}}},
	}
	var slim []corev1.Node
	for i := range nodes {
		s, _ := slimNode(nodes[i].DeepCopy())
		slim = append(slim, *s.(*corev1.Node))
	}
	used := map[string]int{"n1": 3}
	wantNodes, wantSkipped := gpuNodes(nodes, used, nil)
	gotNodes, gotSkipped := gpuNodes(slim, used, nil)
	if u := usableNodes(wantNodes); len(wantNodes) != 5 || len(u) != 1 || len(wantSkipped) != 4 || u[0].Images["sha256:bbbb"] != 7<<30 {
		t.Fatalf("the test's nodes: %d, %d usable (%+v), %d skipped; want 5, 1 holding sha256:bbbb, and 4", len(wantNodes), len(u), wantNodes, len(wantSkipped))
	}
	if d := cmp.Diff(wantNodes, gotNodes); d != "" {
		t.Errorf("nodes from slim Nodes (-full +slim):\n%s", d)
	}
	if d := cmp.Diff(wantSkipped, gotSkipped); d != "" {
		t.Errorf("skipped from slim Nodes (-full +slim):\n%s", d)
	}
}
