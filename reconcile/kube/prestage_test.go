package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/gantry-dev/gantry/planner"
)

// kubelet plays the kubelets of the test: no kubelet runs pods on the test
// control plane, so it watches the prestage pods of a namespace and writes
// the status that decide returns for each new pod (nil: leave it pending),
// through the status subresource as a kubelet would. It records every pod
// it saw created, by name.
type kubelet struct {
	mu      sync.Mutex
	decide  func(*corev1.Pod) *corev1.PodStatus
	created map[string][]*corev1.Pod
}

func startKubelet(t *testing.T, ns string, decide func(*corev1.Pod) *corev1.PodStatus) *kubelet {
	t.Helper()
	k := &kubelet{decide: decide, created: map[string][]*corev1.Pod{}}
	ctx, cancel := context.WithCancel(context.Background())
	pods := admin(t).CoreV1().Pods(ns)
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: LabelPrestage + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			pod, ok := e.Object.(*corev1.Pod)
			if !ok || e.Type != watch.Added {
				continue
			}
			k.mu.Lock()
			k.created[pod.Name] = append(k.created[pod.Name], pod.DeepCopy())
			decide := k.decide
			k.mu.Unlock()
			st := decide(pod)
			if st == nil {
				continue
			}
			pod.Status = *st
			if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
				t.Errorf("kubelet: status of %s: %v", pod.Name, err)
			}
		}
	}()
	return k
}

func (k *kubelet) setDecide(d func(*corev1.Pod) *corev1.PodStatus) {
	k.mu.Lock()
	k.decide = d
	k.mu.Unlock()
}

// creations counts the pods created per node (by the node annotation).
func (k *kubelet) creations() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]int{}
	for _, ps := range k.created {
		for _, p := range ps {
			out[p.Annotations[planner.AnnotationNode]]++
		}
	}
	return out
}

func (k *kubelet) first(name string) *corev1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ps := k.created[name]; len(ps) > 0 {
		return ps[0]
	}
	return nil
}

func succeeded(p *corev1.Pod) *corev1.PodStatus {
	return &corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "pull", Image: p.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}},
	}}}
}

func failed(msg string) func(*corev1.Pod) *corev1.PodStatus {
	return func(p *corev1.Pod) *corev1.PodStatus {
		return &corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "pull", Image: p.Spec.Containers[0].Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: msg}},
		}}}
	}
}

func pulling(msg string) func(*corev1.Pod) *corev1.PodStatus {
	return func(p *corev1.Pod) *corev1.PodStatus {
		return &corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "pull", Image: p.Spec.Containers[0].Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: msg}},
		}}}
	}
}

// byNode decides per node (the pod's node annotation); others stay pending.
func byNode(m map[string]func(*corev1.Pod) *corev1.PodStatus) func(*corev1.Pod) *corev1.PodStatus {
	return func(p *corev1.Pod) *corev1.PodStatus {
		if d := m[p.Annotations[planner.AnnotationNode]]; d != nil {
			return d(p)
		}
		return nil
	}
}

func prestagePods(t *testing.T, ns string) map[string]corev1.Pod {
	t.Helper()
	l, err := admin(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range l.Items {
		out[p.Name] = p
	}
	return out
}

const (
	testModelImage   = "registry.example.com/models/chat@sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	testRuntimeImage = "vllm/vllm-openai@sha256:" + "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34"
)

// TestPrestage: a pod per requested node, pinned and shaped as the spec
// says; one succeeds, one fails, one never finishes. The finished pods go,
// the unfinished one stays and is reused by the next call, which creates
// the others again. The pods are never objects Observe plans against, and
// a prune leaves them alone.
func TestPrestage(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	createNamespace(t, ns)
	k := startKubelet(t, ns, byNode(map[string]func(*corev1.Pod) *corev1.PodStatus{
		"gpu-a": succeeded,
		"gpu-b": failed("cannot mount the image volume: no space left on device"),
	}))
	p := planner.PrestageSpec{
		Image: testModelImage, Packaging: "modelpack", RuntimeImage: testRuntimeImage, Version: "0a1b2c3d",
		Nodes: []string{"gpu-a", "gpu-b", "gpu-c"}, Hostnames: map[string]string{"gpu-a": "gpu-a.example.internal"},
		Timeout: 1500 * time.Millisecond,
	}
	start := time.Now()
	res, err := c.Prestage(ctx, ns, "chat", p)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < p.Timeout || took > p.Timeout+3*time.Second {
		t.Errorf("returned after %s, want about the timeout %s", took, p.Timeout)
	}
	want := PrestageResult{Ready: []string{"gpu-a"}, TimedOut: []string{"gpu-c"},
		Failed: map[string]string{"gpu-b": "container pull Error (exit code 1): cannot mount the image volume: no space left on device"}}
	if d := cmp.Diff(want, res); d != "" {
		t.Errorf("result (-want +got):\n%s", d)
	}

	// Exactly the requested nodes, each pod as the spec says.
	if d := cmp.Diff(map[string]int{"gpu-a": 1, "gpu-b": 1, "gpu-c": 1}, k.creations()); d != "" {
		t.Errorf("pods created per node (-want +got):\n%s", d)
	}
	for _, node := range p.Nodes {
		name := PrestagePodName("chat", node, p.Version)
		pod := k.first(name)
		if pod == nil {
			t.Fatalf("no pod %s for %s", name, node)
		}
		host := node
		if node == "gpu-a" {
			host = "gpu-a.example.internal"
		}
		if d := cmp.Diff(map[string]string{"kubernetes.io/hostname": host}, pod.Spec.NodeSelector); d != "" {
			t.Errorf("%s: nodeSelector (-want +got):\n%s", name, d)
		}
		wantLabels := map[string]string{planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: "chat",
			planner.LabelVersion: p.Version, LabelPrestage: "true"}
		if d := cmp.Diff(wantLabels, pod.Labels); d != "" {
			t.Errorf("%s: labels (-want +got):\n%s", name, d)
		}
		sp := pod.Spec
		if sp.RestartPolicy != corev1.RestartPolicyNever || len(sp.Containers) != 1 || len(sp.Volumes) != 1 {
			t.Fatalf("%s: restartPolicy %s, %d containers, %d volumes", name, sp.RestartPolicy, len(sp.Containers), len(sp.Volumes))
		}
		ctr, vol := sp.Containers[0], sp.Volumes[0]
		if ctr.Image != testRuntimeImage || strings.Join(ctr.Command, " ") != "sh -c exit 0" {
			t.Errorf("%s: container runs %s %q, want the runtime image with sh -c \"exit 0\"", name, ctr.Image, ctr.Command)
		}
		if vol.Image == nil || vol.Image.Reference != testModelImage || vol.Image.PullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: volume %+v, want an image volume of the model image, IfNotPresent", name, vol.VolumeSource)
		}
		if len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].MountPath != "/models" || !ctr.VolumeMounts[0].ReadOnly || ctr.VolumeMounts[0].Name != vol.Name {
			t.Errorf("%s: mounts %+v, want the model read-only at /models", name, ctr.VolumeMounts)
		}
		// Admission adds the not-ready and unreachable NoExecute ones.
		gpuTaint := corev1.Toleration{Key: planner.GPUResource, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
		if len(sp.Tolerations) == 0 || sp.Tolerations[0] != gpuTaint {
			t.Errorf("%s: tolerations %+v, want nvidia.com/gpu:NoSchedule Exists", name, sp.Tolerations)
		}
		if got := ctr.Resources.Requests; got.Cpu().String() != "10m" || got.Memory().String() != "16Mi" || len(got) != 2 || len(ctr.Resources.Limits) != 0 {
			t.Errorf("%s: resources %+v, want 10m CPU and 16Mi, no GPU", name, ctr.Resources)
		}
		if podGPUs(&sp) != 0 {
			t.Errorf("%s requests GPUs", name)
		}
		if len(sp.ReadinessGates) != 1 {
			t.Errorf("%s: readiness gates %+v, want the one that keeps it out of Services", name, sp.ReadinessGates)
		}
	}
	left := prestagePods(t, ns)
	cName := PrestagePodName("chat", "gpu-c", p.Version)
	if _, ok := left[cName]; len(left) != 1 || !ok {
		t.Fatalf("pods left %v, want only the timed-out %s", keys(left), cName)
	}
	cUID := left[cName].UID

	// Never a managed object: Observe does not see it, and a prune of
	// everything leaves it.
	obs, err := c.Observe(ctx, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Objects) != 0 {
		t.Errorf("Observe sees %v", ids(obs.Objects))
	}
	reconcile(t, c, specs(t, ns, nil), ApplyOptions{})
	if _, ok := prestagePods(t, ns)[cName]; !ok {
		t.Errorf("a reconcile removed the pulling pod %s", cName)
	}

	// The next call reuses the pulling pod and starts the others again.
	k.setDecide(succeeded)
	go func() { // the pull on gpu-c finishes a moment later
		time.Sleep(300 * time.Millisecond)
		pod, err := admin(t).CoreV1().Pods(ns).Get(ctx, cName, metav1.GetOptions{})
		if err == nil {
			pod.Status = *succeeded(pod)
			_, err = admin(t).CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("finish %s: %v", cName, err)
		}
	}()
	p.Timeout = 10 * time.Second
	res, err = c.Prestage(ctx, ns, "chat", p)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(PrestageResult{Ready: []string{"gpu-a", "gpu-b", "gpu-c"}}, res); d != "" {
		t.Errorf("second call (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"gpu-a": 2, "gpu-b": 2, "gpu-c": 1}, k.creations()); d != "" {
		t.Errorf("pods created per node over both calls (-want +got):\n%s", d)
	}
	if got := k.first(cName).UID; got != cUID {
		t.Errorf("gpu-c's pod is %s, want the reused %s", got, cUID)
	}
	if left := prestagePods(t, ns); len(left) != 0 {
		t.Errorf("pods left after every pull finished: %v", keys(left))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestPrestageModelcar: a modelcar is pulled by running it; credentials in
// the image reference never reach the logs, the result or the error.
func TestPrestageModelcar(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	createNamespace(t, ns)
	image := "robot:s3cr3t-token@registry.example.com/models/chat@sha256:" + strings.Repeat("ef", 32)
	startKubelet(t, ns, byNode(map[string]func(*corev1.Pod) *corev1.PodStatus{
		"gpu-a": pulling(`Back-off pulling image "` + image + `"`),
		"gpu-b": failed(`failed to pull and unpack image "` + image + `": unauthorized`),
	}))
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })

	p := planner.PrestageSpec{Image: image, Packaging: "modelcar", RuntimeImage: testRuntimeImage, Version: "0a1b2c3d",
		Nodes: []string{"gpu-b", "gpu-a"}, Timeout: time.Second}
	res, err := c.Prestage(ctx, ns, "chat", p)
	slog.SetDefault(old)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := admin(t).CoreV1().Pods(ns).Get(ctx, PrestagePodName("chat", "gpu-a", p.Version), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ctr := pod.Spec.Containers; len(ctr) != 1 || ctr[0].Image != image || strings.Join(ctr[0].Command, " ") != "sh -c exit 0" || len(pod.Spec.Volumes) != 0 {
		t.Errorf("modelcar pod runs %+v with volumes %+v, want the model image with sh -c \"exit 0\" and no volume", ctr, pod.Spec.Volumes)
	}
	if len(res.TimedOut) != 1 || res.TimedOut[0] != "gpu-a" || !strings.Contains(res.Failed["gpu-b"], "***@registry.example.com/models/chat") {
		t.Errorf("result %+v, want gpu-a timed out and gpu-b failed, with the image masked", res)
	}
	t.Logf("logs:\n%s", logs.String())
	if !strings.Contains(logs.String(), "***@registry.example.com") || !strings.Contains(logs.String(), "ImagePullBackOff") {
		t.Errorf("the logs do not show the masked image and why gpu-a waits:\n%s", logs.String())
	}
	for what, s := range map[string]string{"logs": logs.String(), "failure": fmt.Sprint(res.Failed)} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "robot") {
			t.Errorf("the %s show the registry credentials:\n%s", what, s)
		}
	}

	// An error quoting the image (the API server refuses the pod) is
	// masked too.
	p.Nodes = []string{"gpu-c"}
	p.Image = "robot:s3cr3t-token@registry.example.com/models/chat@sha256:" + strings.Repeat("ef", 32) + " "
	_, err = c.Prestage(ctx, ns, "chat", p)
	if err == nil || !apierrors.IsInvalid(err) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("an invalid image: %v, want an Invalid error without the credentials", err)
	}
	t.Logf("invalid: %v", err)
}

// TestPrestageMany: 30 nodes are created and finished within a second or
// two (creations run concurrently).
func TestPrestageMany(t *testing.T) {
	c := cluster(t)
	ns := namespaceName(t)
	createNamespace(t, ns)
	k := startKubelet(t, ns, succeeded)
	var nodes []string
	for i := range 30 {
		nodes = append(nodes, fmt.Sprintf("gpu-%02d", i))
	}
	p := planner.PrestageSpec{Image: testModelImage, RuntimeImage: testRuntimeImage, Version: "0a1b2c3d", Nodes: nodes, Timeout: 30 * time.Second}
	start := time.Now()
	res, err := c.Prestage(context.Background(), ns, "chat", p)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("30 nodes prestaged in %s", took.Round(time.Millisecond))
	if len(res.Ready) != 30 || len(res.TimedOut)+len(res.Failed) != 0 {
		t.Errorf("result %+v, want 30 ready", res)
	}
	if got := len(k.creations()); got != 30 {
		t.Errorf("%d nodes got pods, want 30", got)
	}
	if took > 3*time.Second {
		t.Errorf("30 nodes took %s, want well under 3s", took)
	}
	if left := prestagePods(t, ns); len(left) != 0 {
		t.Errorf("%d pods left", len(left))
	}
}

// TestPrestageInterrupted: a call whose context ends returns the context's
// error and leaves its pods; the next call reuses them (a killed process
// is the same).
func TestPrestageInterrupted(t *testing.T) {
	c := cluster(t)
	ns := namespaceName(t)
	createNamespace(t, ns)
	k := startKubelet(t, ns, func(*corev1.Pod) *corev1.PodStatus { return nil })
	p := planner.PrestageSpec{Image: testModelImage, RuntimeImage: testRuntimeImage, Version: "0a1b2c3d",
		Nodes: []string{"gpu-a", "gpu-b"}, Timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := c.Prestage(ctx, ns, "chat", p)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("interrupted: %v, want the context's error", err)
	}
	if len(res.TimedOut) != 2 {
		t.Errorf("interrupted: %+v, want both nodes unfinished", res)
	}
	uids := map[string]types.UID{}
	for name, pod := range prestagePods(t, ns) {
		uids[name] = pod.UID
	}
	if len(uids) != 2 {
		t.Fatalf("pods left %v, want both", keys(uids))
	}
	// Both pulls finish while nobody waits.
	for name := range uids {
		pod, err := admin(t).CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status = *succeeded(pod)
		if _, err := admin(t).CoreV1().Pods(ns).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err = c.Prestage(context.Background(), ns, "chat", p)
	if err != nil || len(res.Ready) != 2 {
		t.Fatalf("the next call: %+v, %v; want both ready", res, err)
	}
	if d := cmp.Diff(map[string]int{"gpu-a": 1, "gpu-b": 1}, k.creations()); d != "" {
		t.Errorf("pods created (-want +got):\n%s", d)
	}
}

func TestPrestagePodName(t *testing.T) {
	long := strings.Repeat("node-with-a-long-name.", 5) + "example.internal"
	seen := map[string]string{}
	for _, tc := range [][3]string{
		{"chat", "gpu-a", "0a1b2c3d"},
		{"chat", "gpu-a", "99999999"},
		{"chat", "gpu-b", "0a1b2c3d"},
		{"chat", long, "0a1b2c3d"},
		{"chat", long + "2", "0a1b2c3d"},
		{strings.Repeat("r", 50), "gpu-a", "0a1b2c3d"},
		{strings.Repeat("r", 50), "gpu-b", "0a1b2c3d"},
		{"chat", "GPU_Node.7", "0a1b2c3d"},
	} {
		name := PrestagePodName(tc[0], tc[1], tc[2])
		if errs := validation.IsDNS1123Label(name); len(errs) != 0 || !strings.HasPrefix(name, "prestage-") {
			t.Errorf("%v: %q: %v", tc, name, errs)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("%v and %s share the name %q", tc, other, name)
		}
		seen[name] = fmt.Sprint(tc)
		if again := PrestagePodName(tc[0], tc[1], tc[2]); again != name {
			t.Errorf("%v: %q then %q", tc, name, again)
		}
	}
	if got := PrestagePodName("chat", "gpu-a", "0a1b2c3d"); got != "prestage-chat-gpu-a-0a1b2c3d" {
		t.Errorf("short name %q", got)
	}
}

func TestMaskText(t *testing.T) {
	for in, want := range map[string]string{
		"registry.example.com/models/chat@sha256:abcd":                "registry.example.com/models/chat@sha256:abcd",
		"user:pass@registry.example.com/models/chat@sha256:abcd":      "***@registry.example.com/models/chat@sha256:abcd",
		`pulling image "u:p@reg.local:5000/m:v1": unauthorized`:       `pulling image "***@reg.local:5000/m:v1": unauthorized`,
		"https://user:tok@registry.example.com/v2/ failed":            "https://***@registry.example.com/v2/ failed",
		"chat@sha256:abcd and reg/chat@sha256:ef":                     "chat@sha256:abcd and reg/chat@sha256:ef",
		`Invalid value: "robot:tok@r.io/x": must not have whitespace`: `Invalid value: "***@r.io/x": must not have whitespace`,
	} {
		if got := maskText(in); got != want {
			t.Errorf("maskText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodFailure(t *testing.T) {
	for _, tc := range []struct {
		status corev1.PodStatus
		want   string
	}{
		{corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded", Message: "Pod was active on the node longer than the specified deadline"},
			"DeadlineExceeded: Pod was active on the node longer than the specified deadline"},
		{corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "pull",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127, Reason: "StartError", Message: `exec: "sh": executable file not found`}}}}},
			`container pull StartError (exit code 127): exec: "sh": executable file not found`},
		{corev1.PodStatus{Phase: corev1.PodFailed}, "the pod failed"},
	} {
		if got := podFailure(&corev1.Pod{Status: tc.status}); got != tc.want {
			t.Errorf("podFailure = %q, want %q", got, tc.want)
		}
	}
	pending := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "pull",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: `couldn't parse image name "u:p@x/y"`}}}}}}
	if why, ok := hopeless(pending); !ok || why != `container pull InvalidImageName: couldn't parse image name "***@x/y"` {
		t.Errorf("hopeless = %q, %v", why, ok)
	}
}

// TestPrestageTerminatingPod: a pod of the version that is going away (an
// earlier call deleted it, and its node has not confirmed yet) is waited
// out and created again, not taken for the pull.
func TestPrestageTerminatingPod(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	createNamespace(t, ns)
	p := planner.PrestageSpec{Image: testModelImage, RuntimeImage: testRuntimeImage, Version: "0a1b2c3d",
		Nodes: []string{"gpu-a"}, Timeout: 10 * time.Second}
	pods := admin(t).CoreV1().Pods(ns)
	old := prestagePod(ns, "chat", "gpu-a", p)
	old.Finalizers = []string{"gantry.test/hold"}
	created, err := pods.Create(ctx, old, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = *succeeded(created)
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Someone else's pod with the name of gpu-x's: not touched, not used.
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: PrestagePodName("chat", "gpu-x", p.Version)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "busybox"}}}}
	if _, err := pods.Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Nodes = append(p.Nodes, "gpu-x")
	k := startKubelet(t, ns, succeeded)
	go func() { // the node confirms the deletion a moment later
		time.Sleep(300 * time.Millisecond)
		patch := []byte(`{"metadata":{"finalizers":null}}`)
		if _, err := pods.Patch(ctx, old.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Errorf("release %s: %v", old.Name, err)
		}
	}()
	start := time.Now()
	res, err := c.Prestage(ctx, ns, "chat", p)
	if err != nil || len(res.Ready) != 1 || !strings.Contains(res.Failed["gpu-x"], "not Gantry's") {
		t.Fatalf("%+v, %v; want gpu-a ready and gpu-x failed for the pod in the way", res, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("done after %s, before the old pod went: the terminating pod was taken for the pull", took)
	}
	k.mu.Lock()
	seen := k.created[old.Name] // the watch begins with the old one
	k.mu.Unlock()
	if len(seen) != 2 || seen[1].UID == created.UID {
		t.Errorf("pods %s seen: %d, want the old one and a new one", old.Name, len(seen))
	}
	if left := prestagePods(t, ns); len(left) != 1 || left[foreign.Name].UID == "" {
		t.Errorf("pods left: %v, want only the foreign one", keys(left))
	}
}
