package reconcile_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/scaletest"
	"github.com/gantry-dev/gantry/spec"
)

// fleetNodes creates n Ready GPU nodes in the cluster cfg reaches, half
// in each pool of scaletest.Repo.
func fleetNodes(b *testing.B, cfg *rest.Config, n int) {
	b.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 5000, 10000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i := 0; i < n; i++ {
		g.Go(func() error {
			name := fmt.Sprintf("gpu-%05d", i) // the same names in every cluster
			product, mem := "NVIDIA-A100-SXM4-80GB", "81920"
			if i%2 == 1 {
				product, mem = "NVIDIA-L4", "24576"
			}
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				"kubernetes.io/hostname": name, kube.LabelGPUProduct: product, kube.LabelGPUMemory: mem, kube.LabelGPUCount: "8"}}}
			created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("192"), corev1.ResourceMemory: resource.MustParse("2Ti"),
				"nvidia.com/gpu": resource.MustParse("8")}
			created.Status = corev1.NodeStatus{Capacity: res, Allocatable: res,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}}}
			if created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return err
			}
			created.Spec.Taints = nil // admission's not-ready taint; no node controller lifts it here
			_, err = cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("create nodes: %v", err)
	}
}

// BenchmarkFleetReconcile is a fleet of 3 clusters (three kube-apiservers)
// × 1,000 GPU nodes and 300 releases spread over all of them: the first
// reconcile (4 quantizes, 300 pushes into the local layout, every object
// created in each cluster) and a no-op reconcile, with the API requests
// each cluster served per reconcile. Opt-in, it starts three control
// planes:
//
//	GANTRY_SCALE=1 go test ./reconcile -run XXX -bench BenchmarkFleetReconcile -benchtime 3x -timeout 60m
func BenchmarkFleetReconcile(b *testing.B) {
	if os.Getenv("GANTRY_SCALE") == "" {
		b.Skip("opt-in: GANTRY_SCALE=1 go test ./reconcile -run XXX -bench BenchmarkFleetReconcile -benchtime 3x")
	}
	const nClusters, nNodes, nReleases = 3, 1000, 300
	clusters := kubetest.StartT(b, nClusters)
	repo := scaletest.Repo(b, nReleases, "../examples/quickstart/models/tiny-llama-f16.gguf")
	if err := os.Remove(filepath.Join(repo, "nodes.hcl")); err != nil {
		b.Fatal(err)
	}
	var blocks strings.Builder
	counters := map[string]*kubetest.Counter{}
	configs := map[string]*rest.Config{}
	for i, c := range clusters {
		name := fmt.Sprintf("dc-%d", i)
		fleetNodes(b, c.Config, nNodes)
		fmt.Fprintf(&blocks, "cluster %q {\n  kubeconfig = %q\n}\n", name, c.Kubeconfig)
		configs[name], counters[name] = kubetest.CountRequests(c.Config)
	}
	if err := os.WriteFile(filepath.Join(repo, "clusters.hcl"), []byte(blocks.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	state := b.TempDir()
	e := &reconcile.Engine{
		Source:  reconcile.DirSource{Dir: repo},
		Store:   registry.NewLayout(filepath.Join(state, "oci")),
		WorkDir: filepath.Join(state, "work"),
		Jobs:    4,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		ClusterTarget: func(ctx context.Context, c spec.Cluster) (reconcile.Target, error) {
			client, err := kube.New(configs[c.Name])
			if err != nil {
				return nil, err
			}
			return &reconcile.KubeTarget{Client: client, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil
		},
	}
	ctx := context.Background()
	perCluster := func(b *testing.B, n int) {
		total := int64(0)
		for name, c := range counters {
			b.ReportMetric(float64(c.Total())/float64(n), "req/"+name)
			total += c.Total()
			c.Reset()
		}
		b.ReportMetric(float64(total)/float64(n)/nClusters, "req/cluster")
	}
	// Each iteration of "first" releases into a new namespace: every
	// object is created in every cluster (the builds are quantized and
	// pushed in the first iteration only; later ones find them).
	gantryHCL := filepath.Join(repo, "gantry.hcl")
	settings, err := os.ReadFile(gantryHCL)
	if err != nil {
		b.Fatal(err)
	}
	round := 0
	b.Run("first", func(b *testing.B) {
		for _, c := range counters {
			c.Reset()
		}
		for b.Loop() {
			round++
			ns := strings.Replace(string(settings), `namespace = "llm"`, fmt.Sprintf(`namespace = "llm-%d"`, round), 1)
			if err := os.WriteFile(gantryHCL, []byte(ns), 0o644); err != nil {
				b.Fatal(err)
			}
			res, err := e.Reconcile(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res.Releases {
				if r.State != reconcile.StateSynced && r.State != reconcile.StateProgressing {
					b.Fatalf("%s: %s: %s", r.Name, r.State, r.Reason)
				}
			}
		}
		perCluster(b, b.N)
	})
	b.Run("noop", func(b *testing.B) {
		for _, c := range counters {
			c.Reset()
		}
		for b.Loop() {
			res, err := e.Reconcile(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if res.Executed != 0 {
				b.Fatalf("a no-op reconcile executed %d actions", res.Executed)
			}
		}
		perCluster(b, b.N)
	})
}
