package kube

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// requestCounter counts API requests by "verb resource", as the client
// sends them: verb is list, watch, get, create, update, patch,
// patch(dry-run) or delete; resource the path's resource (and
// subresource).
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (rc *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rc.mu.Lock()
		rc.counts[requestKey(r)]++
		rc.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestKey is "verb resource" for a request to /api/v1/... or
// /apis/GROUP/VERSION/...
func requestKey(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return r.Method + " " + r.URL.Path
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:] // namespaces/NS/RESOURCE...
	}
	res, named := "namespaces", false
	if len(parts) > 0 {
		res = parts[0]
		named = len(parts) >= 2
		if len(parts) >= 3 {
			res += "/" + parts[2]
		}
	}
	q := r.URL.Query()
	verb := strings.ToLower(r.Method)
	switch {
	case r.Method == http.MethodGet && q.Get("watch") == "true":
		verb = "watch"
	case r.Method == http.MethodGet && !named:
		verb = "list"
	case r.Method == http.MethodGet:
		verb = "get"
	case r.Method == http.MethodPost:
		verb = "create"
	case r.Method == http.MethodPut:
		verb = "update"
	case r.Method == http.MethodPatch && q.Get("dryRun") != "":
		verb = "patch(dry-run)"
	}
	return verb + " " + res
}

// take returns the counts since the last take and starts again.
func (rc *requestCounter) take() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.counts
	rc.counts = map[string]int{}
	return out
}

func verbCount(m map[string]int, verbs ...string) int {
	n := 0
	for k, v := range m {
		if slices.Contains(verbs, strings.SplitN(k, " ", 2)[0]) {
			n += v
		}
	}
	return n
}

// writes counts requests that change the cluster (a dry-run patch does
// not).
func writes(m map[string]int) int { return verbCount(m, "create", "update", "patch", "delete") }

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// countingClient is a Client whose every request is counted.
func countingClient(t *testing.T) (*Client, *requestCounter) {
	t.Helper()
	cluster(t) // skip or fail as every integration test does
	rc := &requestCounter{counts: map[string]int{}}
	cfg := rest.CopyConfig(testConfig)
	cfg.Wrap(rc.wrap)
	c, err := New(cfg, WithRateLimit(2000, 4000))
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// scaleNodes creates n GPU nodes labelled for the test's pool with a
// bounded pool of workers: 8 GPUs each, GFD labels, every 50th cordoned,
// every 70th tainted NoSchedule. They are deleted when the test ends.
func scaleNodes(t *testing.T, ns string, n int) {
	t.Helper()
	cfg := rest.CopyConfig(testConfig)
	cfg.QPS, cfg.Burst = 5000, 10000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-n%05d", ns, i)
	}
	t.Cleanup(func() {
		var g errgroup.Group
		g.SetLimit(16)
		for _, name := range names {
			g.Go(func() error {
				_ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
				return nil
			})
		}
		_ = g.Wait()
	})
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, name := range names {
		g.Go(func() error {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				"kubernetes.io/hostname": name, "gantry.test/cluster": ns,
				LabelGPUProduct: "NVIDIA-H100-80GB-HBM3", LabelGPUMemory: "81559", LabelGPUCount: "8",
			}}}
			node.Spec.Unschedulable = i%50 == 49
			created, err := cs.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("192"), corev1.ResourceMemory: resource.MustParse("2Ti"),
				planner.GPUResource: resource.MustParse("8")}
			created.Status = corev1.NodeStatus{Capacity: res, Allocatable: res,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}}}
			if created, err = cs.CoreV1().Nodes().UpdateStatus(gctx, created, metav1.UpdateOptions{}); err != nil {
				return err
			}
			created.Spec.Taints = nil // admission's node.kubernetes.io/not-ready; no node lifecycle controller lifts it here
			if i%70 == 69 {
				created.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "training", Effect: corev1.TaintEffectNoSchedule}}
			}
			_, err = cs.CoreV1().Nodes().Update(gctx, created, metav1.UpdateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("create nodes: %v", err)
	}
}

// scaleSpecs is n releases named r00000... with the given replicas
// (default 2), one GPU each, at most two per node, all in ns and its pool.
// Model sources are oci:// references with digests, and the caller
// pre-populates Observed.Artifacts: nothing is quantized or pushed, so the
// run measures the Kubernetes side only.
func scaleSpecs(t *testing.T, dir, ns string, n int, replicas map[string]int) *spec.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "gantry {\n  namespace = %q\n}\n\nnode_pool \"gpu\" {\n  selector = { \"gantry.test/cluster\" = %q }\n}\n", ns, ns)
	for i := range n {
		name := fmt.Sprintf("r%05d", i)
		r, ok := replicas[name]
		if !ok {
			r = 2
		}
		fmt.Fprintf(&b, `
release %q {
  model {
    source = "oci://registry.example.com/sources/shared:v1"
    digest = "sha256:%064x"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  replicas = %d
  resources {
    gpus = 1
  }
  placement {
    max_per_node = 2
  }
}
`, name, 1, r)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Load(context.Background(), dir, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatalf("load specs: %s", diags.Error())
	}
	return cfg
}

// scaleStep is one measured reconcile.
type scaleStep struct {
	name                    string
	observe, plan, apply    time.Duration
	actions, written        int
	requests                map[string]int
	changedReleases         []string
	heapMiB, hwmMiB, apiMiB float64
	skipped                 int64 // releases the plan memo spared rendering and diffing
}

func (s scaleStep) total() time.Duration { return s.observe + s.plan + s.apply }

// reconcileScale observes, plans and applies like the engine: the
// releases' actions in parallel (8 at a time), deletions after. memo, if
// not nil, is the daemon's plan memo, kept from one reconcile to the next.
func reconcileScale(t *testing.T, c *Client, rc *requestCounter, cfg *spec.Config, memo *planner.Memo, name string) (scaleStep, planner.Plan) {
	t.Helper()
	ctx := context.Background()
	st := scaleStep{name: name}
	rc.take()
	start := time.Now()
	obs, err := c.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
	if err != nil {
		t.Fatalf("%s: observe: %v", name, err)
	}
	st.observe = time.Since(start)
	start = time.Now()
	prepared := planner.Prepare(cfg, planner.Observed{Objects: obs.Objects, Nodes: obs.Nodes, Artifacts: artifacts(cfg)})
	prepared.Memo = memo
	skips := memo.Skips()
	p, err := prepared.Build()
	if err != nil {
		t.Fatalf("%s: plan: %v", name, err)
	}
	st.plan = time.Since(start)
	st.skipped = memo.Skips() - skips
	st.actions = len(p.Actions)
	start = time.Now()
	byRelease := map[string][]planner.Action{}
	var order []string
	for _, a := range p.Actions {
		if _, ok := byRelease[a.Release]; !ok {
			order = append(order, a.Release)
		}
		byRelease[a.Release] = append(byRelease[a.Release], a)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, r := range order {
		g.Go(func() error {
			cs, err := c.Apply(gctx, cfg.Settings.Namespace, byRelease[r], ApplyOptions{})
			if err != nil {
				return fmt.Errorf("release %s: %w", r, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ch := range cs {
				if ch.Outcome != Unchanged {
					st.written++
					if ch.Kind != "Namespace" && !slices.Contains(st.changedReleases, r) {
						st.changedReleases = append(st.changedReleases, r)
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("%s: apply: %v", name, err)
	}
	st.apply = time.Since(start)
	sort.Strings(st.changedReleases)
	st.requests = rc.take()
	st.heapMiB, st.hwmMiB, st.apiMiB = memoryMiB()
	return st, p
}

// memoryMiB is this process's live heap after a GC and its peak RSS
// (VmHWM), and the API server's RSS, in MiB (0 when unknown).
func memoryMiB() (heap, hwm, api float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapAlloc) / (1 << 20)
	hwm = procKiB("/proc/self/status", "VmHWM:") / 1024
	port := ""
	if u, err := url.Parse(testConfig.Host); err == nil {
		port = u.Port()
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, _ := os.ReadFile(d + "/comm")
		if strings.TrimSpace(string(comm)) != "kube-apiserver" {
			continue
		}
		cmd, _ := os.ReadFile(d + "/cmdline")
		if port != "" && strings.Contains(string(cmd), "--secure-port="+port) {
			api = procKiB(d+"/status", "VmRSS:") / 1024
		}
	}
	return heap, hwm, api
}

func procKiB(file, field string) float64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v
		}
	}
	return 0
}

// scaleResult is what runScale measured, for the table.
type scaleResult struct {
	nodes, releases int
	start           time.Duration // StartCache, 0 when listing
	startRequests   map[string]int
	steps           []scaleStep
}

// runScale creates the nodes, then reconciles: first (everything
// created), no-op, one release's replicas changed, no-op again. It asserts
// what must hold at every size; the caller asserts request counts.
func runScale(t *testing.T, nodes, releases int, cached bool) scaleResult {
	t.Helper()
	c, rc := countingClient(t)
	ns := namespaceName(t)
	start := time.Now()
	scaleNodes(t, ns, nodes)
	t.Logf("created %d nodes in %s", nodes, time.Since(start).Round(time.Millisecond))
	res := scaleResult{nodes: nodes, releases: releases}
	rc.take()
	if cached {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		start := time.Now()
		if err := c.StartCache(ctx, CacheOptions{}); err != nil {
			t.Fatal(err)
		}
		res.start = time.Since(start)
		res.startRequests = rc.take()
	}
	dir := t.TempDir()
	cfg := scaleSpecs(t, dir, ns, releases, nil)
	var memo *planner.Memo // listing is gantry run --once; the cache, the daemon with its memo
	if cached {
		memo = &planner.Memo{}
	}

	first, _ := reconcileScale(t, c, rc, cfg, memo, "first") // with informers, its Observe starts the namespace's
	res.steps = append(res.steps, first)
	if first.written < releases {
		t.Errorf("first reconcile wrote %d objects for %d releases", first.written, releases)
	}

	noop, p := reconcileScale(t, c, rc, cfg, memo, "no-op")
	res.steps = append(res.steps, noop)
	if !p.Empty() {
		t.Errorf("no-op reconcile planned %d actions, first: %v", len(p.Actions), p.Actions[0].Subject)
	}
	if w := writes(noop.requests); w != 0 || noop.written != 0 {
		t.Errorf("no-op reconcile wrote: %d write requests, %d objects (%s)", w, noop.written, formatCounts(noop.requests))
	}

	// One release's replicas change: the plan names only its objects, and
	// only they are written.
	changed := fmt.Sprintf("r%05d", releases/2)
	cfg = scaleSpecs(t, dir, ns, releases, map[string]int{changed: 3})
	one, p := reconcileScale(t, c, rc, cfg, memo, "replicas of one release")
	res.steps = append(res.steps, one)
	if p.Empty() {
		t.Errorf("changing %s's replicas planned nothing", changed)
	}
	for _, a := range p.Actions {
		if a.Release != changed {
			t.Errorf("the plan names %s of release %q; only %s changed", a.Subject, a.Release, changed)
		}
	}
	if !slices.Equal(one.changedReleases, []string{changed}) {
		t.Errorf("objects of releases %v written, want only %s's", one.changedReleases, changed)
	}

	again, p := reconcileScale(t, c, rc, cfg, memo, "no-op again")
	res.steps = append(res.steps, again)
	if !p.Empty() || writes(again.requests) != 0 {
		t.Errorf("no-op after the change: %d actions, requests %s", len(p.Actions), formatCounts(again.requests))
	}
	if cached {
		// The first reconcile wrote every object (new versions): the no-op
		// after it diffs them all once and remembers them; from then on only
		// what changed is planned: the edited release, then (its objects
		// rewritten) that release again.
		if noop.skipped != 0 || one.skipped != int64(releases-1) || again.skipped != int64(releases-1) {
			t.Errorf("plan memo skipped %d, %d, %d releases; want 0, %d, %d", noop.skipped, one.skipped, again.skipped, releases-1, releases-1)
		}
		last, _ := reconcileScale(t, c, rc, cfg, memo, "no-op, memo warm")
		res.steps = append(res.steps, last)
		if last.skipped != int64(releases) || last.actions != 0 {
			t.Errorf("no-op with a warm memo: %d of %d releases skipped, %d actions", last.skipped, releases, last.actions)
		}
	}
	for _, s := range res.steps {
		t.Logf("%-24s observe %8s plan %8s apply %8s actions %5d written %5d skipped %5d heap %6.0f MiB hwm %6.0f MiB apiserver %6.0f MiB | %s",
			s.name, s.observe.Round(time.Millisecond), s.plan.Round(time.Millisecond), s.apply.Round(time.Millisecond),
			s.actions, s.written, s.skipped, s.heapMiB, s.hwmMiB, s.apiMiB, formatCounts(s.requests))
	}
	if cached {
		t.Logf("cache start %s; StartCache requests (Nodes, Pods): %s", res.start.Round(time.Millisecond), formatCounts(res.startRequests))
	}
	return res
}

// TestScaleSmall is the always-on version: 200 nodes, 50 releases, listed
// and then cached. Listing, every reconcile lists each kind; with the
// cache, a reconcile after the start lists nothing, and a no-op reconcile
// writes nothing either way.
func TestScaleSmall(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(map[bool]string{false: "list", true: "informers"}[cached], func(t *testing.T) {
			res := runScale(t, 200, 50, cached)
			for _, s := range res.steps[1:] {
				lists := verbCount(s.requests, "list")
				switch {
				case cached && lists != 0:
					t.Errorf("%s: %d List requests with informers (%s)", s.name, lists, formatCounts(s.requests))
				case !cached && s.requests["list nodes"] == 0 || !cached && s.requests["list deployments"] == 0:
					t.Errorf("%s: listing mode did not list (%s): is the counter counting?", s.name, formatCounts(s.requests))
				}
				if cached && verbCount(s.requests, "watch") != 0 {
					t.Errorf("%s: new watches after the start (%s)", s.name, formatCounts(s.requests))
				}
			}
			if noop := res.steps[1]; noop.requests["get deployments"] != 0 || noop.requests["patch(dry-run) deployments"] != 0 {
				t.Errorf("no-op reconcile read objects one by one: %s", formatCounts(noop.requests))
			}
		})
	}
}

// TestScale is the opt-in benchmark on the shared envtest API server:
//
//	GANTRY_SCALE=1 go test ./reconcile/kube -run 'TestScale$' -v -timeout 60m
//
// GANTRY_SCALE_NODES and GANTRY_SCALE_RELEASES (default 5000 and 1000)
// change the size; GANTRY_SCALE_MODE=list|informers|both (default both).
func TestScale(t *testing.T) {
	if os.Getenv("GANTRY_SCALE") == "" {
		t.Skip("opt-in: GANTRY_SCALE=1 go test ./reconcile/kube -run 'TestScale$' -v -timeout 60m")
	}
	nodes, releases := envInt(t, "GANTRY_SCALE_NODES", 5000), envInt(t, "GANTRY_SCALE_RELEASES", 1000)
	mode := os.Getenv("GANTRY_SCALE_MODE")
	for _, cached := range []bool{false, true} {
		if mode == "list" && cached || mode == "informers" && !cached {
			continue
		}
		t.Run(map[bool]string{false: "list", true: "informers"}[cached], func(t *testing.T) {
			res := runScale(t, nodes, releases, cached)
			if cached {
				for _, s := range res.steps[1:] {
					if n := verbCount(s.requests, "list"); n != 0 {
						t.Errorf("%s: %d List requests with informers", s.name, n)
					}
				}
			}
			// Markdown rows for BENCHMARKS.md.
			mode := map[bool]string{false: "List", true: "informers"}[cached]
			for _, s := range res.steps {
				fmt.Printf("| %d | %d | %s | %s | %s | %s | %s | %d | %d | %.0f | %.0f | %.0f | %s |\n",
					nodes, releases, mode, s.name, s.total().Round(time.Millisecond), s.observe.Round(time.Millisecond),
					s.apply.Round(time.Millisecond), writes(s.requests), s.written, s.heapMiB, s.hwmMiB, s.apiMiB, formatCounts(s.requests))
			}
		})
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
