package kubetest_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
)

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 5 * time.Second // a stopped API server fails fast
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func createNode(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

func nodeNames(cs kubernetes.Interface) ([]string, error) {
	l, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range l.Items {
		out = append(out, n.Name)
	}
	return out, nil
}

// TestThreeClusters starts three control planes (with the HTTPRoute CRD),
// gives each its own Node, stops one API server (it refuses while the
// others answer), restarts it (the Node is still there, through the
// clients made before), and checks the kubeconfig files.
func TestThreeClusters(t *testing.T) {
	start := time.Now()
	clusters := kubetest.StartT(t, 3, kubetest.WithGatewayAPI())
	took := time.Since(start)
	var total int64
	for _, c := range clusters {
		api, etcd, err := c.RSS()
		if err != nil {
			t.Fatal(err)
		}
		if api == 0 || etcd == 0 {
			t.Errorf("%s: RSS apiserver %d, etcd %d: a process was not found", c.Name, api, etcd)
		}
		total += api + etcd
		t.Logf("%s: kube-apiserver %d MiB, etcd %d MiB", c.Name, api>>20, etcd>>20)
	}
	t.Logf("3 control planes: started in %s, %d MiB RSS in all", took.Round(100*time.Millisecond), total>>20)

	seen := map[string]bool{}
	css := make([]kubernetes.Interface, len(clusters))
	for i, c := range clusters {
		if c.Name != []string{"cluster-0", "cluster-1", "cluster-2"}[i] {
			t.Errorf("cluster %d is named %s", i, c.Name)
		}
		if seen[c.Config.Host] {
			t.Fatalf("two clusters share the API server %s", c.Config.Host)
		}
		seen[c.Config.Host] = true
		css[i] = clientset(t, c.Config)
		createNode(t, css[i], "gpu-"+c.Name)
	}
	for i, cs := range css {
		names, err := nodeNames(cs)
		if err != nil || len(names) != 1 || names[0] != "gpu-"+clusters[i].Name {
			t.Errorf("%s has nodes %v (%v), want only its own", clusters[i].Name, names, err)
		}
		// The Gateway API is served.
		dyn, err := dynamic.NewForConfig(clusters[i].Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}).
			Namespace("default").List(context.Background(), metav1.ListOptions{}); err != nil {
			t.Errorf("%s: list HTTPRoutes: %v", clusters[i].Name, err)
		}
	}

	down := clusters[1]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	if !down.Down() {
		t.Error("Down() is false after Stop")
	}
	if _, err := nodeNames(css[1]); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("stopped %s answered: %v", down.Name, err)
	}
	for _, i := range []int{0, 2} {
		if _, err := nodeNames(css[i]); err != nil {
			t.Errorf("%s with %s stopped: %v", clusters[i].Name, down.Name, err)
		}
	}
	if api, etcd, err := down.RSS(); err != nil || api != 0 || etcd == 0 {
		t.Errorf("stopped %s: RSS apiserver %d, etcd %d (%v); want etcd only", down.Name, api, etcd, err)
	}

	start = time.Now()
	if err := down.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(start).Round(100*time.Millisecond))
	names, err := nodeNames(css[1])
	if err != nil || len(names) != 1 || names[0] != "gpu-"+down.Name {
		t.Errorf("after restart %s has nodes %v (%v), want its node kept", down.Name, names, err)
	}

	// Each kubeconfig file reaches its cluster, and only its owner reads it.
	for _, c := range clusters {
		fi, err := os.Stat(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: kubeconfig mode %v, want 0600", c.Name, fi.Mode().Perm())
		}
		rc, err := kube.RESTConfig(c.Kubeconfig, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if names, err := nodeNames(clientset(t, rc)); err != nil || len(names) != 1 || names[0] != "gpu-"+c.Name {
			t.Errorf("%s through its kubeconfig: nodes %v (%v)", c.Name, names, err)
		}
	}

	// The counter counts what a client sends, by verb.
	cfg, counter := kubetest.CountRequests(clusters[0].Config)
	cs := clientset(t, cfg)
	ctx := context.Background()
	createNode(t, cs, "counted")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := cs.CoreV1().Nodes().Get(ctx, "counted", metav1.GetOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := nodeNames(cs); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "counted", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if err := cs.CoreV1().Nodes().Delete(ctx, "counted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"create": 1, "get": 10, "list": 1, "patch": 1, "watch": 1, "delete": 1}
	got := counter.ByVerb()
	for v, n := range want {
		if got[v] != n {
			t.Errorf("%s: counted %d, want %d (all: %v)", v, got[v], n, counter.Requests())
		}
	}
	if counter.Total() != 15 || counter.Requests()["get nodes"] != 10 {
		t.Errorf("total %d, requests %v; want 15 with 10 get nodes", counter.Total(), counter.Requests())
	}
	counter.Reset()
	if counter.Total() != 0 || len(counter.ByVerb()) != 0 {
		t.Errorf("after Reset: %d, %v", counter.Total(), counter.ByVerb())
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct{ method, url, verb, resource string }{
		{"GET", "/api/v1/nodes", "list", "nodes"},
		{"GET", "/api/v1/nodes/gpu-1", "get", "nodes"},
		{"GET", "/api/v1/nodes?watch=true&resourceVersion=5", "watch", "nodes"},
		{"GET", "/api/v1/namespaces", "list", "namespaces"},
		{"GET", "/api/v1/namespaces/prod", "get", "namespaces"},
		{"GET", "/api/v1/namespaces/prod/pods", "list", "pods"},
		{"PUT", "/apis/apps/v1/namespaces/prod/deployments/chat/status", "update", "deployments/status"},
		{"PATCH", "/apis/apps/v1/namespaces/prod/deployments/chat?dryRun=All", "patch", "deployments"},
		{"POST", "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases", "create", "leases"},
		{"DELETE", "/api/v1/namespaces/prod/services/chat", "delete", "services"},
		{"DELETE", "/api/v1/namespaces/prod/services", "deletecollection", "services"},
		{"GET", "/apis", "get", "/apis"},
		{"GET", "/version", "get", "/version"},
	} {
		r := httptest.NewRequest(c.method, c.url, nil)
		if verb, res := kubetest.Classify(r); verb != c.verb || res != c.resource {
			t.Errorf("%s %s: %s %s, want %s %s", c.method, c.url, verb, res, c.verb, c.resource)
		}
	}
}
