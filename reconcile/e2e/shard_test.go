package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/reconcile"
)

// shardedSpecs is n releases model-0 ... model-(n-1) but those in skip,
// one replica of one GPU each.
func shardedSpecs(ns, product string, n int, skip ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `gantry {
  namespace = %q
  registry  = "%s/%s"
}

node_pool "a100" {
  selector = { "nvidia.com/gpu.product" = %q }
}
`, ns, env.registry, ns, product)
next:
	for i := range n {
		name := fmt.Sprintf("model-%d", i)
		for _, s := range skip {
			if s == name {
				continue next
			}
		}
		fmt.Fprintf(&b, `
release %q {
  model {
    source = "models/tiny.gguf"
    format = "gguf"
  }
  quantize {
    method = "none"
  }
  runtime {
    image = %q
    port  = 8080
  }
  replicas = 1
  resources {
    gpus = 1
  }
  placement {
    pools = ["a100"]
  }
}
`, name, env.runtime)
	}
	return []byte(b.String())
}

// managed lists the managed Deployments and Services of ns:
// "Kind/name" -> (release, shard label, resourceVersion).
type managedObject struct{ release, shard, version, node string }

func managed(t *testing.T, ns string) map[string]managedObject {
	t.Helper()
	ctx := context.Background()
	cs := admin(t)
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"}
	out := map[string]managedObject{}
	ds, err := cs.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds.Items {
		out["Deployment/"+d.Name] = managedObject{d.Labels["gantry.dev/release"], d.Labels[reconcile.LabelShard], d.ResourceVersion, d.Annotations["gantry.dev/node"]}
	}
	ss, err := cs.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Items {
		out["Service/"+s.Name] = managedObject{s.Labels["gantry.dev/release"], s.Labels[reconcile.LabelShard], s.ResourceVersion, ""}
	}
	return out
}

// TestShardsOnOneCluster runs gantry run --once as shard 0/2 and 1/2
// over one repository of 10 releases and one cluster: each release is
// applied by its owner only and labelled so, the union is all of them, a
// re-run of one shard leaves the other's objects as they are
// (resourceVersions), a removed release is pruned by its owner only, and
// a process started with the wrong count (0/3) prunes nothing that 0/2
// applied.
func TestShardsOnOneCluster(t *testing.T) {
	need(t)
	const ns, product, n = "e2e-shard", "A100-shard", 10
	gpuNodes(t, product, 5, "shard-a", "shard-b") // 10 GPUs for 10 one-GPU releases
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 11})
	g.commit("ten releases", map[string][]byte{"gantry.hcl": shardedSpecs(ns, product, n), "models/tiny.gguf": model})
	state := []string{t.TempDir(), t.TempDir()} // one pod each
	runShard := func(shard string, st string) string {
		t.Helper()
		return gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig,
			"--state-dir", st, "--shard", shard, "--jobs", "4")
	}
	owner := func(rel string) int { return reconcile.ShardOf(rel, 2) }

	runShard("0/2", state[0])
	for id, o := range managed(t, ns) {
		if owner(o.release) != 0 || o.shard != "0-of-2" {
			t.Errorf("after shard 0 alone: %s of %s (owner %d) labelled %q", id, o.release, owner(o.release), o.shard)
		}
	}
	runShard("1/2", state[1])
	objs := managed(t, ns)
	releases := map[string]int{}
	perNode := map[string]int{}
	for id, o := range objs {
		if want := fmt.Sprintf("%d-of-2", owner(o.release)); o.shard != want {
			t.Errorf("%s of %s labelled %q, want %s", id, o.release, o.shard, want)
		}
		releases[o.release]++
		if o.node != "" {
			perNode[o.node]++ // one replica of one GPU each
		}
	}
	for i := range n {
		if r := fmt.Sprintf("model-%d", i); releases[r] != 2 {
			t.Errorf("release %s has %d objects, want a Service and a Deployment", r, releases[r])
		}
	}
	for node, gpus := range perNode {
		if gpus > 5 {
			t.Errorf("node %s: the shards placed %d GPUs on 5", node, gpus)
		}
	}

	// Re-running shard 0 touches nothing of shard 1 (nor of its own).
	if out := runShard("0/2", state[0]); !strings.Contains(out, "0 actions executed") {
		t.Errorf("re-run of shard 0 did something:\n%s", out)
	}
	for id, o := range managed(t, ns) {
		if o.version != objs[id].version {
			t.Errorf("re-run of shard 0 changed %s of %s (owner %d): resourceVersion %s -> %s", id, o.release, owner(o.release), objs[id].version, o.version)
		}
	}

	// Remove one release of each shard; only its owner prunes it.
	var of0, of1 string
	for i := range n {
		r := fmt.Sprintf("model-%d", i)
		if owner(r) == 0 && reconcile.ShardOf(r, 3) == 0 {
			of0 = r
		}
		if owner(r) == 1 {
			of1 = r
		}
	}
	if of0 == "" || of1 == "" {
		t.Fatal("the release names do not cover the cases")
	}
	g.commit("remove two", map[string][]byte{"gantry.hcl": shardedSpecs(ns, product, n, of0, of1)})
	count := func(rel string) int {
		c := 0
		for _, o := range managed(t, ns) {
			if o.release == rel {
				c++
			}
		}
		return c
	}
	// 0/3 owns of0 by hash, but 0-of-2 applied it: not pruned.
	out := runShard("0/3", t.TempDir())
	if count(of0) != 2 || count(of1) != 2 {
		t.Fatalf("0/3 pruned: %s has %d objects, %s %d\n%s", of0, count(of0), of1, count(of1), out)
	}
	if !strings.Contains(out, "not pruning") {
		t.Errorf("0/3 did not say why it left %s:\n%s", of0, out)
	}
	runShard("0/2", state[0])
	if count(of0) != 0 || count(of1) != 2 {
		t.Fatalf("after shard 0: %s has %d objects, %s %d", of0, count(of0), of1, count(of1))
	}
	runShard("1/2", state[1])
	if count(of1) != 0 {
		t.Fatalf("shard 1 did not prune %s", of1)
	}
	if got := len(managed(t, ns)); got != 2*(n-2) {
		t.Fatalf("%d managed objects left, want %d", got, 2*(n-2))
	}
}

// TestShardLeases runs shards 0/2 and 1/2 as daemons with leader
// election: each holds its own Lease (gantry-0, gantry-1) and both
// reconcile at once; a second replica of shard 0 stands by.
func TestShardLeases(t *testing.T) {
	need(t)
	const ns, product = "e2e-shardlease", "A100-shardlease"
	createNamespace(t, ns+"-system")
	gpuNodes(t, product, 8, "shardlease-a")
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 12})
	g.commit("four releases", map[string][]byte{"gantry.hcl": shardedSpecs(ns, product, 4), "models/tiny.gguf": model})
	args := func(shard string) []string {
		return []string{"run", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", t.TempDir(),
			"--listen", "127.0.0.1:0", "--interval", "2s", "--leader-election-namespace", ns + "-system", "--shard", shard}
	}
	a := startDaemon(t, args("0/2")...)
	b := startDaemon(t, args("1/2")...)
	waitUntil(t, "both shards to lead", 60*time.Second, func() bool {
		return a.logged("leading: reconciling") && b.logged("leading: reconciling")
	})
	waitUntil(t, "both shards to reconcile", 60*time.Second, func() bool { return a.logged("reconciled") && b.logged("reconciled") })
	leases, err := admin(t).CoordinationV1().Leases(ns+"-system").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range leases.Items {
		names = append(names, l.Name)
	}
	if strings.Join(names, ",") != "gantry-0,gantry-1" {
		t.Fatalf("leases %v, want gantry-0 and gantry-1", names)
	}
	standby := startDaemon(t, args("0/2")...)
	time.Sleep(5 * time.Second)
	if standby.logged("leading: reconciling") {
		t.Fatalf("a second replica of shard 0 leads too:\n%s", standby.log())
	}
	if !standby.logged("another replica leads; standing by") {
		t.Errorf("the second replica of shard 0 does not stand by:\n%s", standby.log())
	}
}
