package kube

import (
	"context"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// availableOf maps every observed Deployment to its Available (-1 for
// nil) and checks that no other kind carries one.
func availableOf(t *testing.T, obs Observation) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, o := range obs.Objects {
		switch {
		case o.Kind != "Deployment" && o.Available != nil:
			t.Errorf("%s has Available %d; only Deployments have one", o.ID(), *o.Available)
		case o.Kind != "Deployment":
		case o.Available == nil:
			out[o.Name] = -1
		default:
			out[o.Name] = *o.Available
		}
		if _, ok := o.Manifest["status"]; ok {
			t.Errorf("%s: the observed manifest has a status; diffs would see every pod change", o.ID())
		}
	}
	return out
}

// TestObserveAvailable: Observe reports a Deployment's
// status.availableReplicas as Available (0 before any status), both by
// List and from the informer cache, and the status change alone does not
// change the plan.
func TestObserveAvailable(t *testing.T) {
	listing := cluster(t)
	cached, rc := countingClient(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	cfg := specs(t, ns, map[string]int{"chat": 3})
	reconcile(t, listing, cfg, ApplyOptions{})
	startCache(t, cached, CacheOptions{})
	if _, err := cached.Observe(ctx, ns, cfg.Pools); err != nil { // starts the namespace's informers
		t.Fatal(err)
	}
	rc.take()

	var shards []string
	for name := range deployments(t, ns) {
		shards = append(shards, name)
	}
	if len(shards) != 2 {
		t.Fatalf("shards %v, want 2", shards)
	}
	// observe waits until both paths report want (the cache sees a status
	// update a moment after it is written).
	observe := func(step string, want map[string]int) {
		t.Helper()
		for name, c := range map[string]*Client{"list": listing, "cache": cached} {
			deadline := time.Now().Add(5 * time.Second)
			for {
				obs, err := c.Observe(ctx, ns, cfg.Pools)
				if err != nil {
					t.Fatalf("%s: %s: %v", step, name, err)
				}
				got := availableOf(t, obs)
				if name == "cache" {
					if reqs := rc.take(); len(reqs) != 0 {
						t.Fatalf("%s: the cached Observe sent requests (it listed): %s", step, formatCounts(reqs))
					}
				}
				if maps.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: Available %v, want %v", step, name, got, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// No deployment controller runs here: the Deployments have no
	// availableReplicas yet.
	observe("before any status", map[string]int{shards[0]: 0, shards[1]: 0})

	setStatus(t, ns, shards[0], nil) // every replica available
	first := *deployments(t, ns)[shards[0]].Spec.Replicas
	observe("first shard available", map[string]int{shards[0]: int(first), shards[1]: 0})

	setStatus(t, ns, shards[1], func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 0; d.Status.ReadyReplicas = 0 })
	setStatus(t, ns, shards[0], func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 })
	observe("one replica left", map[string]int{shards[0]: 1, shards[1]: 0})

	// A status change is not a change of the object: the plan stays empty.
	for name, c := range map[string]*Client{"list": listing, "cache": cached} {
		if p, _ := plan(t, c, cfg); !p.Empty() {
			t.Errorf("%s: a status change made a plan:\n%s", name, actionList(p))
		}
	}
}

// TestAssembleAvailable: a Deployment without status, or with a status
// that lacks availableReplicas, is 0 available; a Service has none.
func TestAssembleAvailable(t *testing.T) {
	dep := func(name string, status map[string]any) map[string]any {
		m := map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": name, "namespace": "llm", "resourceVersion": "7"}}
		if status != nil {
			m["status"] = status
		}
		return m
	}
	objs := unstructuredList(
		dep("none", nil),
		dep("empty", map[string]any{}),
		dep("three", map[string]any{"availableReplicas": int64(3), "replicas": int64(4)}),
		map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": "svc", "namespace": "llm"}, "status": map[string]any{}},
	)
	obs, err := assemble(nil, nil, objs, "llm", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := availableOf(t, obs)
	if want := map[string]int{"none": 0, "empty": 0, "three": 3}; !maps.Equal(got, want) {
		t.Errorf("Available %v, want %v", got, want)
	}
	for _, o := range obs.Objects {
		if o.Version != "7" && o.Kind == "Deployment" {
			t.Errorf("%s: Version %q, want the resourceVersion 7", o.ID(), o.Version)
		}
	}
}

func unstructuredList(ms ...map[string]any) []unstructured.Unstructured {
	out := make([]unstructured.Unstructured, len(ms))
	for i, m := range ms {
		out[i].Object = m
	}
	return out
}
