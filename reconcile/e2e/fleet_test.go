package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
)

// fleetSpecs is a fleet of the three clusters: "spread" is 6 replicas
// over all of them, "each" one replica in every cluster, and "extra"
// (with extra) one replica in every cluster, to be removed. eu-2 pulls
// from mirror.
func fleetSpecs(ns, product, mirror string, kubeconfigs []string, extra bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "gantry {\n  namespace = %q\n  registry  = \"%s/%s\"\n}\n", ns, env.registry, ns)
	fmt.Fprintf(&b, "node_pool \"gpu\" {\n  selector = { \"nvidia.com/gpu.product\" = %q }\n}\n", product)
	for i, name := range []string{"eu-1", "eu-2", "us-1"} {
		fmt.Fprintf(&b, "cluster %q {\n  kubeconfig = %q\n", name, kubeconfigs[i])
		if name == "eu-2" {
			fmt.Fprintf(&b, "  registry_mirror = \"%s/%s\"\n", mirror, ns)
		}
		b.WriteString("}\n")
	}
	rel := func(name, count string) {
		fmt.Fprintf(&b, `
release %q {
  model {
    source = "models/tiny.gguf"
    format = "gguf"
  }
  quantize {
    method = "q8_0"
  }
  runtime {
    image = %q
    port  = 8080
  }
  %s
  resources {
    gpus = 1
  }
}
`, name, env.runtime, count)
	}
	rel("spread", "replicas = 6")
	rel("each", "replicas_per_cluster = 1")
	if extra {
		rel("extra", "replicas_per_cluster = 1")
	}
	return []byte(b.String())
}

// deployments are a cluster's managed Deployments: name -> replicas.
func deployments(t *testing.T, cs kubernetes.Interface, ns string) map[string]int {
	t.Helper()
	l, err := cs.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range l.Items {
		out[d.Name] = int(*d.Spec.Replicas)
	}
	return out
}

func replicasOf(m map[string]int, release string) int {
	n := 0
	for name, c := range m {
		if strings.HasPrefix(name, release+"-") {
			n += c
		}
	}
	return n
}

// TestFleetOfThreeClusters: one repository, three kube-apiservers. A
// release spread over all three, one in each, a mirror copy checked by
// digest; one apiserver stopped: the others converge, nothing is pruned
// in it, and once back it converges too.
func TestFleetOfThreeClusters(t *testing.T) {
	need(t)
	ctx := context.Background()
	clusters, err := kubetest.Start(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range clusters {
			c.Close()
		}
	})
	mirror, stopMirror, err := registrytest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopMirror)
	const ns, product = "e2e-fleet", "L4-fleet"
	var kubeconfigs []string
	var css []kubernetes.Interface
	for i, c := range clusters {
		cs, err := kubernetes.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		css = append(css, cs)
		kubeconfigs = append(kubeconfigs, c.Kubeconfig)
		gpuNodesIn(t, cs, product, 2, fmt.Sprintf("gpu-%d", i), "gpu-x") // gpu-x: the same name in every cluster
	}
	g := newGitRemote(t)
	state := t.TempDir()
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 5})
	g.commit("fleet", map[string][]byte{"gantry.hcl": fleetSpecs(ns, product, mirror, kubeconfigs, true), "models/tiny.gguf": model})
	out := gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--state-dir", state, "--registry-insecure")
	for i, cs := range css {
		d := deployments(t, cs, ns)
		if replicasOf(d, "spread") != 2 || replicasOf(d, "each") != 1 || replicasOf(d, "extra") != 1 {
			t.Fatalf("cluster %d after the first run: %v\n%s", i, d, out)
		}
	}
	if strings.Count(out, "quantize") == 0 {
		t.Errorf("no quantize in the first run:\n%s", out)
	}
	// eu-2 pulls the mirror's copy, which has the registry's digest.
	dep, err := css[1].AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/release=each"})
	if err != nil || len(dep.Items) != 1 {
		t.Fatalf("each in eu-2: %v %v", dep, err)
	}
	vol := dep.Items[0].Spec.Template.Spec.Volumes[0].Image.Reference
	if !strings.HasPrefix(vol, mirror+"/"+ns+"/each:ck-") {
		t.Fatalf("eu-2 pulls %s, not from the mirror", vol)
	}
	ref, digest, _ := strings.Cut(vol, "@")
	got, ok, err := registry.NewRemote(registry.Options{}).Has(ctx, ref)
	if err != nil || !ok || got != digest {
		t.Fatalf("the mirror has %s at %q (%v, %v), want %s", ref, got, ok, err, digest)
	}
	src, ok, err := registry.NewRemote(registry.Options{}).Has(ctx, env.registry+"/"+ns+"/each:"+strings.SplitN(ref, ":", 3)[2])
	if err != nil || !ok || src != digest {
		t.Fatalf("the registry has each at %q, the mirror at %s", src, digest)
	}

	// us-1's apiserver stops. "extra" leaves the specs: it is pruned in
	// eu-1 and eu-2 only; "spread" fails over to them.
	before := deployments(t, css[2], ns)
	if err := clusters[2].Stop(); err != nil {
		t.Fatal(err)
	}
	g.commit("drop extra", map[string][]byte{"gantry.hcl": fleetSpecs(ns, product, mirror, kubeconfigs, false)})
	out = gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--state-dir", state, "--registry-insecure")
	if !strings.Contains(out, "us-1") || !strings.Contains(out, "unreachable") {
		t.Errorf("the run does not say us-1 is unreachable:\n%s", out)
	}
	spread := 0
	for i, cs := range css[:2] {
		d := deployments(t, cs, ns)
		if replicasOf(d, "extra") != 0 || replicasOf(d, "each") != 1 {
			t.Fatalf("cluster %d with us-1 down: %v\n%s", i, d, out)
		}
		spread += replicasOf(d, "spread")
	}
	if spread != 6 {
		t.Errorf("spread runs %d replicas on eu-1 and eu-2 with us-1 down, want 6", spread)
	}
	// Back: nothing was pruned while it was away; the next run converges.
	if err := clusters[2].Restart(); err != nil {
		t.Fatal(err)
	}
	if got := deployments(t, css[2], ns); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("us-1 changed while it was down: %v, was %v", got, before)
	}
	gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--state-dir", state, "--registry-insecure")
	d := deployments(t, css[2], ns)
	if replicasOf(d, "extra") != 0 || replicasOf(d, "each") != 1 {
		t.Fatalf("us-1 after it came back: %v", d)
	}
	total := 0
	for _, cs := range css {
		total += replicasOf(deployments(t, cs, ns), "spread")
	}
	// Its replicas back in us-1 are more than the total now; they go only
	// as the ones replacing them are available (make before break), and
	// no kubelet reports them available here: at least 6 serve.
	if total < 6 {
		t.Errorf("spread runs %d replicas in the fleet after us-1 came back, want at least 6", total)
	}
	// And again: nothing to do.
	out = gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--state-dir", state, "--registry-insecure")
	if !strings.Contains(out, ": 0 actions executed.") {
		t.Errorf("a converged fleet did something again:\n%s", out)
	}
}
