package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

// runOnceExit is runOnce for a run that may fail: its output and exit code.
func runOnceExit(t *testing.T, g *gitRemote, state string) (string, int) {
	t.Helper()
	cmd := exec.Command(env.bin, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", state)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("gantry run: %v\n%s", err, out)
	return "", -1
}

// versions returns name -> resourceVersion of the managed Deployments and
// Services in ns.
func versions(t *testing.T, ns string) map[string]string {
	t.Helper()
	ctx, cs := context.Background(), admin(t)
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range deps.Items {
		out["deployment/"+d.Name] = d.ResourceVersion
	}
	for _, s := range svcs.Items {
		out["service/"+s.Name] = s.ResourceVersion
	}
	return out
}

// TestImpossibleSpecKeepsServing commits a spec no live node can hold
// (16 GPUs a replica on 8-GPU nodes): the serving shards are untouched
// (same resourceVersions), the release says unplaceable with the
// scheduler's reason, and run --once exits 1. Asking for more replicas
// than fit scales up what fits, deletes nothing, and says pending.
func TestImpossibleSpecKeepsServing(t *testing.T) {
	need(t)
	const ns, product = "e2e-impossible", "A100-impossible"
	gpuNodes(t, product, 8, "imp-a", "imp-b")
	g := newGitRemote(t)
	state := t.TempDir()
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 5})
	g.commit("add chat", map[string][]byte{"gantry.hcl": specs(ns, product, 2, "q8_0"), "models/tiny.gguf": model})
	runOnce(t, g, state)
	before := versions(t, ns)
	if len(before) != 3 {
		t.Fatalf("first release: objects %v", before)
	}

	big := strings.Replace(string(specs(ns, product, 2, "q8_0")), "gpus = 1", "gpus = 16", 1)
	g.commit("impossible", map[string][]byte{"gantry.hcl": []byte(big)})
	out, code := runOnceExit(t, g, state)
	if code != 1 || !strings.Contains(out, "unplaceable") || !strings.Contains(out, "Insufficient nvidia.com/gpu") {
		t.Fatalf("impossible spec: exit %d\n%s", code, out)
	}
	if after := versions(t, ns); !equalMaps(before, after) {
		t.Fatalf("an impossible spec changed what serves:\nbefore %v\nafter  %v", before, after)
	}

	// 40 replicas at most 2 a node on two nodes: 4 fit. The two shards
	// grow to 2 each; none is deleted; the release is pending.
	g.commit("too many", map[string][]byte{"gantry.hcl": specs(ns, product, 40, "q8_0")})
	out, code = runOnceExit(t, g, state)
	if code != 1 || !strings.Contains(out, "pending") || !strings.Contains(out, "36 of 40 replicas cannot be placed") {
		t.Fatalf("40 replicas: exit %d\n%s", code, out)
	}
	nodes, _ := shards(t, ns)
	if len(nodes) != 2 || total(nodes) != 4 {
		t.Fatalf("40 replicas: shards %v, want 2 on each node", nodes)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
