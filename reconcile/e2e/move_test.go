package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

// TestMovesKeepServing cordons, taints and fails (NotReady) the nodes a
// release runs on, one after the other, on the real API server: each time
// its shard moves, and the replacement serves before the old shard goes.
// The available replicas, checked every 100 ms, never drop below 2.
func TestMovesKeepServing(t *testing.T) {
	need(t)
	const ns, product = "e2e-move", "A100-move"
	createNamespace(t, ns)
	nodes := []string{"move-a", "move-b", "move-c", "move-d", "move-e"}
	gpuNodes(t, product, 2, nodes...)
	kubelet := startKubelet(t, ns)
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 13})
	g.commit("add chat", map[string][]byte{"gantry.hcl": specs(ns, product, 2, "q8_0"), "models/tiny.gguf": model})
	d := startDaemon(t, "run", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", t.TempDir(),
		"--listen", "127.0.0.1:0", "--interval", "1s", "--leader-elect=false")
	serving := func() int {
		n := 0
		for _, c := range kubelet.byVersion() {
			n += c
		}
		return n
	}
	waitUntil(t, "2 replicas serving", 90*time.Second, func() bool { return serving() == 2 })
	kubelet.mu.Lock()
	kubelet.floor = true
	kubelet.mu.Unlock()

	cs := admin(t)
	ctx := context.Background()
	// shardNodes are the nodes the release's Deployments pin now.
	shardNodes := func() map[string]bool {
		out := map[string]bool{}
		list, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/release=chat"})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list.Items {
			out[d.Spec.Template.Spec.NodeSelector["kubernetes.io/hostname"]] = true
		}
		return out
	}
	pick := func() string {
		on := shardNodes()
		for _, n := range nodes {
			if on[n] {
				return n
			}
		}
		t.Fatal("no shard")
		return ""
	}
	breaks := []struct {
		what  string
		apply func(n *corev1.Node)
	}{
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }},
		{"tainted dedicated=train:NoSchedule", func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "dedicated", Value: "train", Effect: corev1.TaintEffectNoSchedule})
		}},
		{"not ready", nil},
	}
	for _, b := range breaks {
		victim := pick()
		node, err := cs.CoreV1().Nodes().Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if b.apply != nil {
			b.apply(node)
			_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		} else {
			node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", LastHeartbeatTime: metav1.Now()}}
			_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the shard to leave the node "+b.what, 60*time.Second, func() bool {
			return !shardNodes()[victim] && serving() == 2
		})
	}
	kubelet.mu.Lock()
	least, lows := kubelet.minServing, kubelet.lows
	kubelet.mu.Unlock()
	if least < 2 {
		t.Errorf("at some moment only %d replicas served, fewer than 2:\n%s", least, strings.Join(lows, "\n"))
	}
	if !strings.Contains(d.log(), "applied") {
		t.Errorf("the daemon applied nothing:\n%s", d.log())
	}
}
