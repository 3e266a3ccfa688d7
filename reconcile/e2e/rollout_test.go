package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/reconcile/monitor/promtest"
)

// The rollout test's world: what a kubelet and a model server would do,
// played against the real API server, and a Prometheus that scrapes the
// per-pod metrics the test serves.

const rsHash = "6b7c8d9f5" // the ReplicaSet hash part of the pod names the exporter invents

// fakeKubelet makes shards available a moment after they change, marks
// prestage pods Succeeded, and records what it saw.
type fakeKubelet struct {
	t    *testing.T
	ns   string
	cs   kubernetes.Interface
	dyn  dynamic.Interface
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}

	changed   map[string]time.Time // Deployment -> when its spec last changed
	gens      map[string]int64
	firstSeen map[string]time.Time // Deployment -> first seen
	versionOf map[string]string    // Deployment -> gantry.dev/version
	// prestaged: version -> node -> when its pull pod was first seen.
	prestaged map[string]map[string]time.Time
	weights   []string // HTTPRoute backends, each time they changed
	// serving is the available replicas by Deployment; minServing the
	// least total seen since floor was set.
	serving    map[string]int
	floor      bool
	minServing int
	// bad versions serve a high error ratio; available is when a version
	// first had an available replica.
	bad       map[string]bool
	available map[string]time.Time
	lows      []string // each new low of minServing, with what served
}

func startKubelet(t *testing.T, ns string) *fakeKubelet {
	return startKubeletIn(t, env.rest, ns)
}

// startKubeletIn is startKubelet in the cluster rc reaches.
func startKubeletIn(t *testing.T, rc *rest.Config, ns string) *fakeKubelet {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKubelet{t: t, ns: ns, cs: cs, dyn: dyn, stop: make(chan struct{}), done: make(chan struct{}),
		changed: map[string]time.Time{}, gens: map[string]int64{}, firstSeen: map[string]time.Time{}, versionOf: map[string]string{},
		prestaged: map[string]map[string]time.Time{}, serving: map[string]int{}, bad: map[string]bool{}, available: map[string]time.Time{}, minServing: 1 << 30}
	go k.run()
	t.Cleanup(func() { close(k.stop); <-k.done })
	return k
}

var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

func (k *fakeKubelet) run() {
	defer close(k.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
		}
		k.once(context.Background())
	}
}

func (k *fakeKubelet) once(ctx context.Context) {
	list, err := k.cs.AppsV1().Deployments(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"})
	if err != nil {
		return
	}
	now := time.Now()
	seen := map[string]bool{}
	for i := range list.Items {
		d := &list.Items[i]
		seen[d.Name] = true
		k.mu.Lock()
		if _, ok := k.firstSeen[d.Name]; !ok {
			k.firstSeen[d.Name] = now
			k.versionOf[d.Name] = d.Labels["gantry.dev/version"]
		}
		if k.gens[d.Name] != d.Generation {
			k.gens[d.Name] = d.Generation
			k.changed[d.Name] = now
		}
		since := now.Sub(k.changed[d.Name])
		k.mu.Unlock()
		want := int32(0)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		avail := min(d.Status.AvailableReplicas, want) // a scale-down takes effect at once
		if since > time.Second {
			avail = want // a new or changed pod serves after a second
		}
		if d.Status.AvailableReplicas != avail || d.Status.ObservedGeneration != d.Generation || d.Status.Replicas != want {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want, UpdatedReplicas: want,
				ReadyReplicas: avail, AvailableReplicas: avail, Conditions: []appsv1.DeploymentCondition{
					{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
					{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
				}}
			if _, err := k.cs.AppsV1().Deployments(k.ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
				continue
			}
		}
		k.mu.Lock()
		k.serving[d.Name] = int(avail)
		if v := d.Labels["gantry.dev/version"]; avail > 0 && k.available[v].IsZero() {
			k.available[v] = now
		}
		k.mu.Unlock()
	}
	k.mu.Lock()
	for name := range k.serving {
		if !seen[name] {
			delete(k.serving, name)
		}
	}
	if k.floor {
		total := 0
		for _, n := range k.serving {
			total += n
		}
		if total < k.minServing {
			k.minServing = total
			k.lows = append(k.lows, fmt.Sprintf("%s: %d serve: %v", now.Format("15:04:05.000"), total, k.serving))
		}
	}
	k.mu.Unlock()

	pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/prestage=true"})
	if err == nil {
		for i := range pods.Items {
			p := &pods.Items[i]
			k.mu.Lock()
			v, node := p.Labels["gantry.dev/version"], p.Spec.NodeSelector["kubernetes.io/hostname"]
			if k.prestaged[v] == nil {
				k.prestaged[v] = map[string]time.Time{}
			}
			if _, ok := k.prestaged[v][node]; !ok {
				k.prestaged[v][node] = now
			}
			k.mu.Unlock()
			if p.Status.Phase != corev1.PodSucceeded {
				p.Status.Phase = corev1.PodSucceeded
				_, _ = k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
	}

	if route, err := k.dyn.Resource(httpRoutes).Namespace(k.ns).Get(ctx, "chat", metav1.GetOptions{}); err == nil {
		var parts []string
		rules, _ := route.Object["spec"].(map[string]any)["rules"].([]any)
		if len(rules) > 0 {
			refs, _ := rules[0].(map[string]any)["backendRefs"].([]any)
			for _, r := range refs {
				m := r.(map[string]any)
				parts = append(parts, fmt.Sprintf("%s=%v", m["name"], m["weight"]))
			}
		}
		sort.Strings(parts)
		w := strings.Join(parts, ",")
		k.mu.Lock()
		if len(k.weights) == 0 || k.weights[len(k.weights)-1] != w {
			k.weights = append(k.weights, w)
		}
		k.mu.Unlock()
	}
}

// ServeHTTP is the exporter Prometheus scrapes: per available replica, an
// error ratio (high for bad versions) and a latency.
func (k *fakeKubelet) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE test_error_ratio gauge\n# TYPE test_latency_seconds gauge\n")
	for _, name := range sortedNames(k.serving) {
		ratio := 0.001
		if k.bad[k.versionOf[name]] {
			ratio = 0.5
		}
		for i := 0; i < k.serving[name]; i++ {
			pod := fmt.Sprintf("%s-%s-p%04d", name, rsHash, i)
			fmt.Fprintf(&b, "test_error_ratio{namespace=%q,pod=%q} %g\n", k.ns, pod, ratio)
			fmt.Fprintf(&b, "test_latency_seconds{namespace=%q,pod=%q} 0.2\n", k.ns, pod)
		}
	}
	_, _ = w.Write([]byte(b.String()))
}

func sortedNames(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// byVersion is the available replicas per version now.
func (k *fakeKubelet) byVersion() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]int{}
	for name, n := range k.serving {
		if n > 0 {
			out[k.versionOf[name]] += n
		}
	}
	return out
}

// startPrometheus starts Debian's prometheus scraping target, stopped at
// the end of the test.
func startPrometheus(t *testing.T, target string) *promtest.Server {
	t.Helper()
	srv, err := promtest.Start(t.TempDir(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func rolloutSpecs(ns, product, method string) []byte {
	return []byte(fmt.Sprintf(`gantry {
  namespace = %q
  registry  = "%s/%s"
}

node_pool "a100" {
  selector = { "nvidia.com/gpu.product" = %q }
  reserve  = 1
}

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
  replicas = 4
  resources {
    gpus = 1
  }
  placement {
    pools        = ["a100"]
    max_per_node = 1
  }
  rollout {
    steps   = [{ replicas = 1, weight = 20, pause = "5s" }, { percent = 50, pause = "5s" }, { percent = 100 }]
    traffic = "gateway"
    gateway = "infra/inference"
    analysis {
      interval      = "1s"
      failure_limit = 3
      metric "error_ratio" {
        query = "max(test_error_ratio{namespace=\"{{.Namespace}}\", pod=~\"{{.Pods}}\"})"
        max   = 0.05
      }
      metric "latency" {
        query               = "avg(test_latency_seconds{namespace=\"{{.Namespace}}\", pod=~\"{{.Pods}}\"})"
        max_ratio_to_stable = 1.5
      }
    }
  }
}
`, ns, env.registry, ns, product, method, env.runtime))
}

// commits are the remote's first-parent commits, newest first, as
// (hash, full message).
func (g *gitRemote) commits() [][2]string {
	g.git(g.work, "fetch", "-q", "origin")
	out := g.git(g.work, "log", "--first-parent", "--format=%H%x00%B%x1e", "origin/main")
	var cs [][2]string
	for _, rec := range strings.Split(out, "\x1e") {
		rec = strings.TrimSpace(rec)
		if rec == "" {
			continue
		}
		h, msg, _ := strings.Cut(rec, "\x00")
		cs = append(cs, [2]string{h, msg})
	}
	return cs
}

// adjustments are the Gantry-Adjustment trailers of the commits after
// base, oldest first.
func (g *gitRemote) adjustments(base string) []string {
	var out []string
	for _, c := range g.commits() {
		if c[0] == base {
			break
		}
		for _, line := range strings.Split(c[1], "\n") {
			if v, ok := strings.CutPrefix(line, "Gantry-Adjustment: "); ok {
				out = append([]string{strings.TrimSpace(v)}, out...)
			}
		}
	}
	return out
}

// sync brings the working copy to the remote's head (Gantry commits to it).
func (g *gitRemote) sync() {
	g.git(g.work, "fetch", "-q", "origin")
	g.git(g.work, "reset", "-q", "--hard", "origin/main")
}

func apiStatus(t *testing.T, listen string) map[string]any {
	resp, err := http.Get("http://" + listen + "/api/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// rolloutOf is the chat release's rollout in /api/status.
func rolloutOf(st map[string]any) map[string]any {
	rels, _ := st["releases"].([]any)
	for _, r := range rels {
		m, _ := r.(map[string]any)
		if m["name"] == "chat" {
			ro, _ := m["rollout"].(map[string]any)
			return ro
		}
	}
	return nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestCanaryRollout runs the daemon against the API server, Prometheus,
// git http-backend and the registry, and follows canary rollouts of one
// release: a healthy one promoted step by step (prestaged, weighted, each
// step a commit), a failing one aborted, one paused while Prometheus is
// down, a person's revert of a promotion, and a SIGKILL of the daemon in
// the middle of a step. At every moment at least the release's 4 replicas
// serve.
func TestCanaryRollout(t *testing.T) {
	need(t)
	const ns, product = "e2e-canary", "A100-canary"
	createNamespace(t, ns)
	gpuNodes(t, product, 2, "canary-a", "canary-b", "canary-c", "canary-d")
	kubelet := startKubelet(t, ns)
	exp := httptest.NewServer(kubelet)
	t.Cleanup(exp.Close)
	prom := startPrometheus(t, strings.TrimPrefix(exp.URL, "http://"))
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 11})
	base := g.commit("add chat", map[string][]byte{"gantry.hcl": rolloutSpecs(ns, product, "q8_0"), "models/tiny.gguf": model})

	listen := freeAddr(t)
	daemonArgs := func() []string {
		return []string{"run", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig, "--state-dir", t.TempDir(),
			"--listen", listen, "--interval", "1s", "--leader-elect=false", "--prometheus", prom.URL()}
	}
	d := startDaemon(t, daemonArgs()...)
	versionNow := func() string {
		ro := rolloutOf(apiStatus(t, listen))
		v, _ := ro["canary"].(string)
		return v
	}
	only := func(v string) bool {
		got := kubelet.byVersion()
		return len(got) == 1 && got[v] == 4
	}
	var v1 string
	waitUntil(t, "the first version to serve 4 replicas", 90*time.Second, func() bool {
		v1 = versionNow()
		return v1 != "" && only(v1)
	})
	kubelet.mu.Lock()
	kubelet.floor = true
	kubelet.mu.Unlock()
	if adj := g.adjustments(base); len(adj) != 0 {
		t.Fatalf("the first release made adjustments %v; nothing to roll out from", adj)
	}

	// 1. A healthy canary, promoted through every step.
	g.sync()
	c2 := g.commit("q4_0", map[string][]byte{"gantry.hcl": rolloutSpecs(ns, product, "q4_0")})
	var v2 string
	waitUntil(t, "the canary", 60*time.Second, func() bool { v2 = versionNow(); return v2 != "" && v2 != v1 })
	var promoted time.Time
	waitUntil(t, "the first promotion", 60*time.Second, func() bool {
		if len(g.adjustments(c2)) > 0 {
			promoted = time.Now()
			return true
		}
		return false
	})
	kubelet.mu.Lock()
	pauseEnd := kubelet.available[v2].Add(5 * time.Second) // step 1's pause, counted from the canary's first available replica
	kubelet.mu.Unlock()
	t.Logf("end of step 1's pause -> promotion commit seen: %s", promoted.Sub(pauseEnd).Round(100*time.Millisecond))
	waitUntil(t, "the healthy canary to take every replica", 120*time.Second, func() bool { return only(v2) })
	if adj := g.adjustments(c2); strings.Join(adj, ",") != "promote,promote" {
		t.Fatalf("healthy rollout: adjustments %v, want two promotions", adj)
	}
	for _, c := range g.commits()[:2] {
		if !strings.Contains(c[1], "Gantry-Release: chat") || !strings.Contains(c[1], "error_ratio") {
			t.Errorf("promotion commit lacks the release or the metric values:\n%s", c[1])
		}
	}
	kubelet.mu.Lock()
	pulled := kubelet.prestaged[v2]
	var canaryShards []string
	for name, v := range kubelet.versionOf {
		if v == v2 {
			canaryShards = append(canaryShards, name)
			node := strings.TrimSuffix(strings.TrimPrefix(name, "chat-"), "-"+v2)
			at, ok := pulled[node]
			if !ok || !at.Before(kubelet.firstSeen[name]) {
				t.Errorf("shard %s: pulled on %s at %v (%v), created at %v: want the pull first", name, node, at, ok, kubelet.firstSeen[name])
			}
		}
	}
	if len(pulled) != len(canaryShards) || len(pulled) != 4 {
		t.Errorf("prestaged on %v, canary shards %v: want one pull per shard's node", pulled, canaryShards)
	}
	weights := strings.Join(kubelet.weights, " | ")
	kubelet.mu.Unlock()
	pair := func(a string, wa int, b string, wb int) string {
		parts := []string{fmt.Sprintf("chat-%s=%d", a, wa), fmt.Sprintf("chat-%s=%d", b, wb)}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	for _, w := range []string{pair(v1, 80, v2, 20), pair(v1, 50, v2, 50), "chat-" + v2 + "=100"} {
		if !strings.Contains(weights, w) {
			t.Errorf("HTTPRoute weights %s: never %s", weights, w)
		}
	}

	// 2. A failing canary is aborted; the stable version's pods never
	// change.
	g.sync()
	templates := stableTemplates(t, ns, v2)
	c3 := g.commit("q4_1", map[string][]byte{"gantry.hcl": rolloutSpecs(ns, product, "q4_1")})
	var v3 string
	waitUntil(t, "the bad canary", 60*time.Second, func() bool { v3 = versionNow(); return v3 != "" && v3 != v2 })
	kubelet.mu.Lock()
	kubelet.bad[v3] = true
	kubelet.mu.Unlock()
	waitUntil(t, "the abort commit", 60*time.Second, func() bool { return strings.Contains(strings.Join(g.adjustments(c3), ","), "abort") })
	if adj := g.adjustments(c3); strings.Join(adj, ",") != "abort" {
		t.Fatalf("failing rollout: adjustments %v, want one abort", adj)
	}
	abortMsg := g.commits()[0][1]
	if !strings.Contains(abortMsg, "error_ratio") || !strings.Contains(abortMsg, "0.5") {
		t.Errorf("the abort commit lacks the failed values:\n%s", abortMsg)
	}
	kubelet.mu.Lock()
	crossed := kubelet.available[v3]
	kubelet.mu.Unlock()
	t.Logf("bad canary serving -> abort commit seen: %s", time.Since(crossed).Round(100*time.Millisecond))
	waitUntil(t, "the stable version alone again", 60*time.Second, func() bool { return only(v2) })
	if got := stableTemplates(t, ns, v2); !equalMaps(got, templates) {
		t.Errorf("the abort changed the stable version's pods:\nbefore %v\nafter  %v", templates, got)
	}

	// 3. Prometheus down mid-step pauses the rollout: no commit until it
	// is back.
	g.sync()
	c4 := g.commit("q5_0", map[string][]byte{"gantry.hcl": rolloutSpecs(ns, product, "q5_0")})
	var v4 string
	waitUntil(t, "the next canary to be ready", 60*time.Second, func() bool {
		ro := rolloutOf(apiStatus(t, listen))
		v4, _ = ro["canary"].(string)
		ready, _ := ro["ready"].(bool)
		return v4 != v2 && v4 != "" && ready
	})
	prom.Stop()
	time.Sleep(12 * time.Second) // past both pauses
	if adj := g.adjustments(c4); len(adj) != 0 {
		t.Fatalf("with Prometheus down: adjustments %v, want none", adj)
	}
	ro := rolloutOf(apiStatus(t, listen))
	an, _ := ro["analysis"].(map[string]any)
	if an["decision"] != "pause" || !strings.Contains(strings.ToLower(fmt.Sprint(an["reason"])), "prometheus") {
		t.Errorf("with Prometheus down the status says %v", an)
	}
	if err := prom.Restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a promotion once Prometheus is back", 60*time.Second, func() bool { return len(g.adjustments(c4)) > 0 })

	// 4. A person reverts the promotion: the canary goes back a step.
	g.sync()
	promo := g.commits()[0][0]
	g.git(g.work, "revert", "--no-edit", promo)
	g.git(g.work, "push", "-q", "origin", "HEAD:main")
	waitUntil(t, "the canary back at step 1", 30*time.Second, func() bool {
		ro := rolloutOf(apiStatus(t, listen))
		step, _ := ro["step"].(float64)
		return step == 1 && kubelet.byVersion()[v4] == 1
	})
	waitUntil(t, "the rollout to finish after the revert", 120*time.Second, func() bool { return only(v4) })

	// 5. SIGKILL of the daemon mid-step; a new one continues from Git and
	// the cluster.
	g.sync()
	c5 := g.commit("q5_1", map[string][]byte{"gantry.hcl": rolloutSpecs(ns, product, "q5_1")})
	var v5 string
	waitUntil(t, "the last canary", 60*time.Second, func() bool { v5 = versionNow(); return v5 != "" && v5 != v4 })
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	d = startDaemon(t, daemonArgs()...)
	waitUntil(t, "the restarted daemon to finish the rollout", 120*time.Second, func() bool { return only(v5) })
	if adj := g.adjustments(c5); strings.Join(adj, ",") != "promote,promote" {
		t.Errorf("after the restart: adjustments %v, want two promotions", adj)
	}

	kubelet.mu.Lock()
	least := kubelet.minServing
	kubelet.mu.Unlock()
	if least < 4 {
		kubelet.mu.Lock()
		t.Errorf("at some moment only %d replicas served, fewer than the release's 4:\n%s", least, strings.Join(kubelet.lows, "\n"))
		kubelet.mu.Unlock()
		t.Logf("daemon log:\n%s", d.log())
	}
	for _, s := range []string{gitPassword} {
		if strings.Contains(d.log(), s) {
			t.Errorf("the daemon logged %q", s)
		}
	}
}

// stableTemplates are the pod templates of version v's shards, by name.
func stableTemplates(t *testing.T, ns, v string) map[string]string {
	t.Helper()
	list, err := admin(t).AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "gantry.dev/version=" + v})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range list.Items {
		b, _ := json.Marshal(d.Spec.Template)
		out[d.Name] = string(b)
	}
	return out
}
