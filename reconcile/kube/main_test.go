package kube

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The control plane every integration test shares: started once, one
// namespace per test.
var (
	testEnv    *envtest.Environment
	testConfig *rest.Config
	startErr   error
)

const needAssets = "KUBEBUILDER_ASSETS is not set: the integration tests need etcd and kube-apiserver; " +
	"run `export KUBEBUILDER_ASSETS=\"$(.ci/testbin.sh)\"` (builds them once, then takes seconds), or pass -short to skip them"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return m.Run() // each integration test skips (-short) or fails with needAssets
	}
	// A fixed certificate directory lets a test stop and restart the API
	// server: envtest otherwise makes a new CA on restart and the clients'
	// configuration no longer verifies.
	certDir, err := os.MkdirTemp("", "gantry-kube-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(certDir)
	api := &envtest.APIServer{CertDir: certDir}
	// envtest's default Service range is a /24: TestScale's thousands of
	// releases each have a Service with a cluster IP.
	api.Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	testEnv = &envtest.Environment{ControlPlane: envtest.ControlPlane{APIServer: api}}
	testConfig, startErr = testEnv.Start()
	if startErr == nil {
		defer testEnv.Stop()
	}
	return m.Run()
}

// cluster returns a client for the shared control plane, or skips (-short)
// or fails the test when there is none.
func cluster(t *testing.T) *Client {
	t.Helper()
	switch {
	case testEnv == nil && testing.Short():
		t.Skip("integration test: " + needAssets)
	case testEnv == nil:
		t.Fatal(needAssets)
	case startErr != nil:
		t.Fatalf("start the control plane from KUBEBUILDER_ASSETS=%s: %v", os.Getenv("KUBEBUILDER_ASSETS"), startErr)
	}
	c, err := New(testConfig, WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func admin(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

var nsSeq atomic.Int64

// namespaceName is a fresh namespace name for the test. The namespace is
// not created: Apply must create it. Without a namespace controller,
// deleted namespaces never go away, so names are never reused.
func namespaceName(t *testing.T) string {
	n := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("%s-%d", strings.Trim(n, "-"), nsSeq.Add(1))
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := admin(t).CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// gpuNode describes a Node to create, as GPU feature discovery and the
// device plugin would label and report it.
type gpuNode struct {
	name          string
	labels        map[string]string
	gpus          int // capacity and allocatable nvidia.com/gpu; -1 = none
	product       string
	memMiB        int
	notReady      bool
	unschedulable bool
	taints        []corev1.Taint
}

// createNodes creates the nodes (spec, then status through the status
// subresource, as a kubelet would) and deletes them when the test ends.
func createNodes(t *testing.T, nodes ...gpuNode) {
	t.Helper()
	ctx := context.Background()
	cs := admin(t)
	for _, n := range nodes {
		labels := map[string]string{"kubernetes.io/hostname": n.name}
		if n.product != "" {
			labels[LabelGPUProduct] = n.product
		}
		if n.memMiB > 0 {
			labels[LabelGPUMemory] = fmt.Sprint(n.memMiB)
		}
		if n.gpus >= 0 {
			labels[LabelGPUCount] = fmt.Sprint(n.gpus)
		}
		for k, v := range n.labels {
			labels[k] = v
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels},
			Spec:       corev1.NodeSpec{Unschedulable: n.unschedulable, Taints: n.taints},
		}
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name := n.name
		t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi")}
		if n.gpus >= 0 {
			res[planner.GPUResource] = *resource.NewQuantity(int64(n.gpus), resource.DecimalSI)
		}
		ready := corev1.ConditionTrue
		if n.notReady {
			ready = corev1.ConditionFalse
		}
		created.Status = corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}},
		}
		created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Admission taints every new node node.kubernetes.io/not-ready; the
		// node lifecycle controller, which does not run here, lifts it once
		// the node is Ready.
		if !n.notReady {
			created.Spec.Taints = n.taints
			if _, err := cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// loadConfig writes the HCL files into a temporary repository and loads it.
func loadConfig(t *testing.T, files map[string]string) *spec.Config {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := spec.Load(context.Background(), dir, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatalf("load specs: %s", diags.Error())
	}
	return cfg
}

// artifacts says every release's model image exists, so that plans carry
// digests and no build actions.
func artifacts(cfg *spec.Config) map[string]planner.Artifact {
	out := map[string]planner.Artifact{}
	for i := range cfg.Releases {
		key := planner.ContentKey(&cfg.Releases[i])
		ref := planner.ImageRef(cfg, &cfg.Releases[i])
		out[ref] = planner.Artifact{Ref: ref, Digest: "sha256:" + key} // any well-formed digest
	}
	return out
}

// plan observes the cluster and builds the plan for cfg.
func plan(t *testing.T, c *Client, cfg *spec.Config) (planner.Plan, Observation) {
	t.Helper()
	obs, err := c.Observe(context.Background(), cfg.Settings.Namespace, cfg.Pools)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	p, err := planner.Build(*cfg, planner.Observed{Objects: obs.Objects, Nodes: obs.Nodes, Artifacts: artifacts(cfg)})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	for _, w := range p.Warnings {
		t.Logf("plan warning: %s", w)
	}
	return p, obs
}

// reconcile runs one observe -> plan -> apply loop and returns the plan and
// what Apply did.
func reconcile(t *testing.T, c *Client, cfg *spec.Config, opts ApplyOptions) (planner.Plan, ChangeSet) {
	t.Helper()
	p, _ := plan(t, c, cfg)
	cs, err := c.Apply(context.Background(), cfg.Settings.Namespace, p.Actions, opts)
	if err != nil {
		t.Fatalf("apply: %v (done: %v)", err, cs)
	}
	return p, cs
}

// deployments returns the managed Deployments of the namespace by name.
func deployments(t *testing.T, ns string) map[string]appsv1.Deployment {
	t.Helper()
	l, err := admin(t).AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]appsv1.Deployment{}
	for _, d := range l.Items {
		out[d.Name] = d
	}
	return out
}

// resourceVersions maps "Kind/name" to resourceVersion for every
// Deployment and Service of the namespace.
func resourceVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, d := range deployments(t, ns) {
		out["Deployment/"+name] = d.ResourceVersion
	}
	l, err := admin(t).CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Items {
		out["Service/"+s.Name] = s.ResourceVersion
	}
	return out
}
