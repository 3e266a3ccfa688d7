package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

func specs(ns, product string, replicas int, method string) []byte {
	return []byte(fmt.Sprintf(`gantry {
  namespace = %q
  registry  = "%s/%s"
}

node_pool "a100" {
  selector = { "nvidia.com/gpu.product" = %q }
}
`, ns, env.registry, ns, product) + release(replicas, method))
}

func release(replicas int, method string) string {
	return fmt.Sprintf(`
release "chat" {
  model {
    source = "models/tiny.gguf"
    format = "gguf"
  }
  quantize {
    method = %q
  }
  runtime {
    image = %q
    port  = 8080
  }
  replicas = %d
  resources {
    gpus = 1
  }
  placement {
    pools        = ["a100"]
    max_per_node = 2
  }
}
`, method, env.runtime, replicas)
}

func tinyModel(t *testing.T, cfg ggufgen.Config) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := ggufgen.WriteLlama(context.Background(), p, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createNamespace(t *testing.T, ns string) {
	t.Helper()
	cs := admin(t)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// shards returns node -> replicas and the model image references of the
// managed Deployments in ns, and checks that the runtime image is
// referenced by the digest its tag has in the registry.
func shards(t *testing.T, ns string) (map[string]int, map[string]bool) {
	t.Helper()
	list, err := admin(t).AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"})
	if err != nil {
		t.Fatal(err)
	}
	nodes, images := map[string]int{}, map[string]bool{}
	for _, d := range list.Items {
		node := d.Spec.Template.Spec.NodeSelector["kubernetes.io/hostname"]
		if _, dup := nodes[node]; dup {
			t.Errorf("two Deployments for node %s", node)
		}
		nodes[node] = int(*d.Spec.Replicas)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != env.runtime+"@"+env.runtimeDig {
			t.Errorf("%s runs %s, want the runtime pinned to %s", d.Name, img, env.runtimeDig)
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Image != nil {
				images[v.Image.Reference] = true
			}
		}
	}
	return nodes, images
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// gantry runs the binary to completion and returns its output.
func gantry(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(env.bin, args...)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), gitPassword) {
		t.Errorf("the Git password reached gantry's output")
	}
	if err != nil {
		t.Fatalf("gantry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func runOnce(t *testing.T, g *gitRemote, state string) string {
	t.Helper()
	return gantry(t, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", state)
}

// TestReleaseLifecycle commits a release and follows it through a replica
// change, a model change and its removal.
func TestReleaseLifecycle(t *testing.T) {
	need(t)
	const ns, product = "e2e-life", "A100-life"
	gpuNodes(t, product, 8, "life-a", "life-b")
	g := newGitRemote(t)
	state := t.TempDir()
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 3})

	g.commit("add chat", map[string][]byte{"gantry.hcl": specs(ns, product, 2, "q8_0"), "models/tiny.gguf": model})
	runOnce(t, g, state)
	nodes, images := shards(t, ns)
	// Two nodes with no load, one replica each: scores tie at 0, then 1 vs 0.
	if total(nodes) != 2 || len(nodes) != 2 || len(images) != 1 {
		t.Fatalf("first release: shards %v images %v", nodes, images)
	}
	first := keys(images)[0]
	if !strings.HasPrefix(first, env.registry+"/"+ns+"/chat:ck-") || !strings.Contains(first, "@sha256:") {
		t.Fatalf("image reference %q", first)
	}
	repo := strings.SplitN(first, "@", 2)[0]
	if _, ok, err := registry.NewRemote(registry.Options{}).Has(context.Background(), repo); err != nil || !ok {
		t.Fatalf("the registry lacks %s: %v", repo, err)
	}

	// More replicas: the same image, one more replica, nothing moved.
	g.commit("scale", map[string][]byte{"gantry.hcl": specs(ns, product, 3, "q8_0")})
	out := runOnce(t, g, state)
	nodes2, images2 := shards(t, ns)
	if total(nodes2) != 3 || keys(images2)[0] != first || strings.Contains(out, "* push") {
		t.Fatalf("scale: shards %v images %v\n%s", nodes2, images2, out)
	}
	for n, c := range nodes {
		if nodes2[n] < c {
			t.Errorf("scaling up moved a replica off %s", n)
		}
	}

	// A new quantization: a new image, and every shard moves to it.
	g.commit("q4_0", map[string][]byte{"gantry.hcl": specs(ns, product, 3, "q4_0")})
	runOnce(t, g, state)
	_, images3 := shards(t, ns)
	if len(images3) != 1 || keys(images3)[0] == first {
		t.Fatalf("model change: images %v", images3)
	}

	// Removing the release prunes its objects.
	g.commit("remove chat", map[string][]byte{"gantry.hcl": []byte(strings.SplitN(string(specs(ns, product, 3, "q4_0")), "\nrelease", 2)[0])})
	runOnce(t, g, state)
	if nodes4, _ := shards(t, ns); len(nodes4) != 0 {
		t.Fatalf("removed release still has shards %v", nodes4)
	}
	svcs, _ := admin(t).CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"})
	if len(svcs.Items) != 0 {
		t.Fatalf("removed release still has %d Services", len(svcs.Items))
	}
}

// daemon is a running `gantry run` whose JSON log can be waited on.
type daemon struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	text  strings.Builder
	done  chan struct{}
}

func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(env.bin, args...), done: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill(); <-d.done })
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			_ = json.Unmarshal(sc.Bytes(), &m)
			d.mu.Lock()
			d.lines = append(d.lines, m)
			d.text.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		d.cmd.Wait()
	}()
	return d
}

func (d *daemon) logged(msg string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.lines {
		if m["msg"] == msg {
			return true
		}
	}
	return false
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.text.String()
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKillMidReconcile kills the daemon with SIGKILL while it quantizes,
// starts it again, and checks that it converges with nothing duplicated
// or lost.
func TestKillMidReconcile(t *testing.T) {
	need(t)
	const ns, product = "e2e-kill", "A100-kill"
	gpuNodes(t, product, 8, "kill-a", "kill-b")
	g := newGitRemote(t)
	state := t.TempDir()
	// Big enough that quantizing to Q4_K_M takes a moment.
	model := tinyModel(t, ggufgen.Config{Layers: 4, Embd: 512, FF: 1536, Vocab: 4096, Heads: 8, HeadsKV: 4, Type: ggml.F16, Seed: 5})
	g.commit("add chat", map[string][]byte{"gantry.hcl": specs(ns, product, 3, "q4_k_m"), "models/tiny.gguf": model})

	d := startDaemon(t, "run", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", state,
		"--listen", "127.0.0.1:0", "--interval", "1h", "--leader-elect=false")
	waitUntil(t, "the daemon to start quantizing", 60*time.Second, func() bool { return d.logged("quantizing") })
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	if d.logged("pushed") {
		t.Log("the push finished before the kill; the restart must still converge")
	}

	runOnce(t, g, state)
	nodes, images := shards(t, ns)
	if total(nodes) != 3 || len(images) != 1 {
		t.Fatalf("after restart: shards %v images %v", nodes, images)
	}
	if left, _ := filepath.Glob(filepath.Join(state, "work", "builds", ".build-*")); len(left) != 0 {
		t.Errorf("temporary builds left behind: %v", left)
	}
	if out := runOnce(t, g, state); !strings.Contains(out, "0 actions executed") {
		t.Errorf("a third run still did something:\n%s", out)
	}
}

// TestLeaderElection runs two daemons on one Lease: one acts, the other
// stands by, and takes over when the first stops.
func TestLeaderElection(t *testing.T) {
	need(t)
	const ns, product = "e2e-lease", "A100-lease"
	createNamespace(t, ns+"-system")
	gpuNodes(t, product, 8, "lease-a")
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 9})
	g.commit("add chat", map[string][]byte{"gantry.hcl": specs(ns, product, 1, "q8_0"), "models/tiny.gguf": model})

	args := func() []string {
		return []string{"run", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", t.TempDir(),
			"--listen", "127.0.0.1:0", "--interval", "2s", "--leader-election-namespace", ns + "-system"}
	}
	a := startDaemon(t, args()...)
	b := startDaemon(t, args()...)
	waitUntil(t, "a leader", 60*time.Second, func() bool {
		return a.logged("leading: reconciling") || b.logged("leading: reconciling")
	})
	leader, standby := a, b
	if b.logged("leading: reconciling") {
		leader, standby = b, a
	}
	waitUntil(t, "the leader to reconcile", 60*time.Second, func() bool { return leader.logged("reconciled") })
	time.Sleep(3 * time.Second) // a few intervals
	if standby.logged("leading: reconciling") || standby.logged("reconciled") {
		t.Fatalf("both daemons acted:\nleader:\n%s\nstandby:\n%s", leader.log(), standby.log())
	}
	if nodes, _ := shards(t, ns); total(nodes) != 1 {
		t.Fatalf("shards %v", nodes)
	}

	// The leader stops (releasing the lease); the standby takes over.
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	waitUntil(t, "the standby to take over", 60*time.Second, func() bool { return standby.logged("leading: reconciling") })
	waitUntil(t, "the new leader to reconcile", 60*time.Second, func() bool { return standby.logged("reconciled") })
}
