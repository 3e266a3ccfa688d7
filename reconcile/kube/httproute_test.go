package kube

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/gantry-dev/gantry/planner"
)

// The Gateway API HTTPRoute CRD, from the module cache. The shared control
// plane starts without it: the tests of a cluster without the Gateway
// API run first, then gatewayAPI installs it for the rest.
var gatewayCRD struct {
	once sync.Once
	err  error
}

func httpRouteCRDFile(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("find the gateway-api module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml")
}

func installHTTPRouteCRD(t *testing.T, cfg *rest.Config) error {
	t.Helper()
	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{httpRouteCRDFile(t)}, ErrorIfPathMissing: true})
	return err
}

// gatewayAPI makes sure the shared control plane serves HTTPRoutes.
func gatewayAPI(t *testing.T) {
	t.Helper()
	cluster(t)
	gatewayCRD.once.Do(func() { gatewayCRD.err = installHTTPRouteCRD(t, testConfig) })
	if gatewayCRD.err != nil {
		t.Fatalf("install the HTTPRoute CRD: %v", gatewayCRD.err)
	}
}

func servesHTTPRoutes(t *testing.T, cfg *rest.Config) bool {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := dc.ServerResourcesForGroupVersion(gatewayv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.APIResources {
		if r.Name == "httproutes" {
			return true
		}
	}
	return false
}

// route is an HTTPRoute as the planner renders one for traffic =
// "gateway": the release's labels, one rule, a weighted backendRef per
// version's Service.
func route(ns, release string, weights ...any) planner.Object {
	var refs []any
	for i := 0; i+1 < len(weights); i += 2 {
		refs = append(refs, map[string]any{"name": weights[i], "port": int64(8000), "weight": int64(weights[i+1].(int))})
	}
	m := map[string]any{
		"apiVersion": planner.GatewayAPIVersion, "kind": "HTTPRoute",
		"metadata": map[string]any{"name": release, "namespace": ns, "labels": map[string]any{
			planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: release,
		}},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "inference"}},
			"rules":      []any{map[string]any{"backendRefs": refs}},
		},
	}
	o, err := planner.ObjectFromManifest(m)
	if err != nil {
		panic(err)
	}
	return o
}

func service(ns, name string) planner.Object {
	o, err := planner.ObjectFromManifest(map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{
			planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: name,
		}},
		"spec": map[string]any{"ports": []any{map[string]any{"name": "http", "port": int64(8000)}}},
	})
	if err != nil {
		panic(err)
	}
	return o
}

func act(typ planner.ActionType, objs ...planner.Object) []planner.Action {
	var out []planner.Action
	for i := range objs {
		o := objs[i]
		out = append(out, planner.Action{Type: typ, Release: o.Label(planner.LabelRelease), Subject: o.Kind + " " + o.Namespace + "/" + o.Name, Object: &o})
	}
	return out
}

// weightsOf returns "name=weight" of every backendRef of the observed
// HTTPRoutes, by route name.
func weightsOf(t *testing.T, obs Observation) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, o := range obs.Objects {
		if o.Kind != "HTTPRoute" {
			continue
		}
		if o.APIVersion != planner.GatewayAPIVersion || o.Available != nil {
			t.Errorf("%s: apiVersion %q, Available %v", o.ID(), o.APIVersion, o.Available)
		}
		spec, _ := o.Manifest["spec"].(map[string]any)
		rules, _ := spec["rules"].([]any)
		var ws []string
		for _, r := range rules {
			refs, _ := r.(map[string]any)["backendRefs"].([]any)
			for _, ref := range refs {
				m := ref.(map[string]any)
				ws = append(ws, fmt.Sprintf("%v=%v", m["name"], m["weight"]))
			}
		}
		out[o.Name] = ws
	}
	return out
}

// TestHTTPRouteWithoutCRD: on a cluster without the Gateway API, Observe
// works (listed and cached) and sees no HTTPRoutes, and Apply refuses an
// HTTPRoute before it touches anything, saying what to do. Once the CRD is
// installed, the cache that started without it sees the HTTPRoutes Apply
// writes.
func TestHTTPRouteWithoutCRD(t *testing.T) {
	cluster(t)
	cfg := testConfig
	if servesHTTPRoutes(t, cfg) {
		// An earlier test (another order, -count) installed it in the
		// shared control plane: this one needs its own.
		t.Log("the shared control plane serves HTTPRoutes already; starting another one without them")
		env := &envtest.Environment{}
		var err error
		if cfg, err = env.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Stop() })
	}
	ctx := context.Background()
	ns := namespaceName(t)
	listing, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rc := &requestCounter{counts: map[string]int{}}
	counted := rest.CopyConfig(cfg)
	counted.Wrap(rc.wrap)
	cached, err := New(counted)
	if err != nil {
		t.Fatal(err)
	}

	svc := service(ns, "chat")
	if _, err := listing.Apply(ctx, ns, act(planner.Create, svc), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := cached.StartCache(cctx, CacheOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Client{"list": listing, "cache": cached} {
		obs, err := c.Observe(ctx, ns, nil)
		if err != nil {
			t.Fatalf("%s: Observe without the HTTPRoute CRD: %v", name, err)
		}
		if len(obs.Objects) != 1 || obs.Objects[0].ID() != svc.ID() {
			t.Errorf("%s: observed %v, want only %s", name, ids(obs.Objects), svc.ID())
		}
	}
	rc.take()
	if _, err := cached.Observe(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if reqs := rc.take(); len(reqs) != 0 {
		t.Errorf("without the CRD, the cached Observe sent requests (it listed instead): %s", formatCounts(reqs))
	}

	// Apply refuses the HTTPRoute before anything else, even the objects
	// before it.
	r := route(ns, "chat", "chat-a", 90, "chat-b", 10)
	other := service(ns, "embed")
	cs, err := listing.Apply(ctx, ns, act(planner.Create, other, r), ApplyOptions{})
	if !errors.Is(err, ErrNoHTTPRouteCRD) {
		t.Fatalf("apply an HTTPRoute without the CRD: %v, want ErrNoHTTPRouteCRD", err)
	}
	t.Logf("apply: %v", err)
	want := `the cluster has no Gateway API HTTPRoute CRD (gateway.networking.k8s.io/v1); install the Gateway API CRDs or set traffic = "service"`
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "HTTPRoute "+ns+"/chat") {
		t.Errorf("error %q does not name the route and say %q", err, want)
	}
	if len(cs) != 0 {
		t.Errorf("Apply did %v before refusing", cs)
	}
	if _, err := listing.typed.CoreV1().Services(ns).Get(ctx, "embed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Service before the HTTPRoute was applied: %v", err)
	}
	// Past that check (the CRD went away in between), the object's own
	// Get says the same.
	if _, err := listing.applyObject(ctx, r, false); !errors.Is(err, ErrNoHTTPRouteCRD) {
		t.Errorf("applyObject without the CRD: %v, want ErrNoHTTPRouteCRD", err)
	}
	// Deleting an HTTPRoute the cluster cannot have is a no-op.
	cs, err = listing.Apply(ctx, ns, act(planner.Delete, r), ApplyOptions{})
	if err != nil || cs.Count(Unchanged) != 1 {
		t.Errorf("delete without the CRD: %v, %v; want unchanged", cs, err)
	}

	// The CRD arrives. The cache started without it shows the route that
	// Apply writes on the next Observe, without listing.
	if cfg == testConfig {
		gatewayAPI(t)
	} else if err := installHTTPRouteCRD(t, cfg); err != nil {
		t.Fatal(err)
	}
	cs, err = cached.Apply(ctx, ns, act(planner.Create, r), ApplyOptions{})
	if err != nil || cs.Count(Created) != 1 {
		t.Fatalf("apply with the CRD: %v, %v", cs, err)
	}
	rc.take()
	start := time.Now()
	obs, err := cached.Observe(ctx, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := rc.take()
	t.Logf("the cache showed the new kind after %s (%s)", time.Since(start).Round(time.Millisecond), formatCounts(reqs))
	if d := cmp.Diff(map[string][]string{"chat": {"chat-a=90", "chat-b=10"}}, weightsOf(t, obs)); d != "" {
		t.Errorf("cached Observe after the CRD came (-want +got):\n%s", d)
	}
	if reqs["list nodes"] != 0 {
		t.Errorf("the cache did not take up the new kind: Observe listed (%s)", formatCounts(reqs))
	}
}

func ids(objs []planner.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.ID())
	}
	return out
}

// TestHTTPRoute: Apply creates, reconfigures (new weights) and prunes an
// HTTPRoute by server-side apply, and Observe (listed and cached) sees
// each step.
func TestHTTPRoute(t *testing.T) {
	gatewayAPI(t)
	listing := cluster(t)
	cached, rc := countingClient(t)
	startCache(t, cached, CacheOptions{})
	ctx := context.Background()
	ns := namespaceName(t)

	observe := func(step string, want map[string][]string) Observation {
		t.Helper()
		var out Observation
		for name, c := range map[string]*Client{"list": listing, "cache": cached} {
			rc.take()
			obs, err := c.Observe(ctx, ns, nil)
			if err != nil {
				t.Fatalf("%s: %s: %v", step, name, err)
			}
			if reqs := rc.take(); name == "cache" && step != "empty" && reqs["list nodes"] != 0 {
				t.Errorf("%s: the cached Observe listed: %s", step, formatCounts(reqs))
			}
			if d := cmp.Diff(want, weightsOf(t, obs)); d != "" {
				t.Errorf("%s: %s: backendRefs (-want +got):\n%s", step, name, d)
			}
			out = obs
		}
		return out
	}
	apply := func(step string, c *Client, actions []planner.Action, want Outcome) {
		t.Helper()
		cs, err := c.Apply(ctx, ns, actions, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: %v (done %v)", step, err, cs)
		}
		last := cs[len(cs)-1]
		if last.Kind != "HTTPRoute" || last.Outcome != want {
			t.Errorf("%s: %v, want the HTTPRoute %s", step, cs, want)
		}
	}

	observe("empty", map[string][]string{})
	apply("create", cached, act(planner.Create, service(ns, "chat"), route(ns, "chat", "chat-a", 90, "chat-b", 10)), Created)
	observe("created", map[string][]string{"chat": {"chat-a=90", "chat-b=10"}})
	apply("again", listing, act(planner.Update, route(ns, "chat", "chat-a", 90, "chat-b", 10)), Unchanged)

	apply("new weights", cached, act(planner.Update, route(ns, "chat", "chat-a", 50, "chat-b", 50)), Configured)
	obs := observe("new weights", map[string][]string{"chat": {"chat-a=50", "chat-b=50"}})
	rt, err := listing.dyn.Resource(kinds[KindHTTPRoute].gvr).Namespace(ns).Get(ctx, "chat", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if mf := rt.GetManagedFields(); len(mf) != 1 || mf[0].Manager != FieldManager || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("managed fields %+v, want one server-side apply by %s", mf, FieldManager)
	}
	apply("one backend", cached, act(planner.Update, route(ns, "chat", "chat-b", 100)), Configured)
	observe("one backend", map[string][]string{"chat": {"chat-b=100"}})

	var live planner.Object
	for _, o := range obs.Objects {
		if o.Kind == "HTTPRoute" {
			live = o
		}
	}
	apply("prune", cached, act(planner.Delete, live), Deleted)
	observe("pruned", map[string][]string{})
	apply("prune again", listing, act(planner.Delete, live), Unchanged)
}

// TestNoResource: the 404 of a resource the server does not serve is told
// apart from the 404 of a missing object.
func TestNoResource(t *testing.T) {
	missingObject := apierrors.NewNotFound(gatewayv1.Resource("httproutes"), "chat")
	if noResource(missingObject) || noResource(fmt.Errorf("get: %w", missingObject)) {
		t.Errorf("a missing object counts as a missing resource")
	}
	if noResource(errors.New("not found")) || noResource(nil) {
		t.Errorf("a plain error counts as a missing resource")
	}
	// What kube-apiserver answers for a path it does not serve.
	missingResource := &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404,
		Message: "the server could not find the requested resource", Details: &metav1.StatusDetails{},
	}}
	if !noResource(missingResource) || !noResource(fmt.Errorf("get: %w", missingResource)) {
		t.Errorf("a missing resource does not count as one")
	}
}
