package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
)

const shardedDir = deployDir + "/sharded"

// TestDeployShardedManifests validates examples/deploy/sharded against
// the API server (server-side dry-run apply) and checks what the
// StatefulSet promises: N pods, each told its ordinal through POD_NAME and
// started with --shard auto/N, governed by a headless Service; and that
// the files it shares with examples/deploy are the same.
func TestDeployShardedManifests(t *testing.T) {
	objs := kustomizeManifests(t, shardedDir)
	for _, shared := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "service.yaml"} {
		a, err1 := os.ReadFile(filepath.Join(deployDir, shared))
		b, err2 := os.ReadFile(filepath.Join(shardedDir, shared))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("sharded/%s differs from examples/deploy/%s (%v %v): copy it again", shared, shared, err1, err2)
		}
	}

	c := cluster(t)
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	apply := func(u *unstructured.Unstructured, dryRun bool) error {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		data, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		force := true
		opts := metav1.PatchOptions{FieldManager: "gantry-install", Force: &force}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		r := c.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			_, err = r.Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
		} else {
			_, err = r.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
		}
		return err
	}
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			if err := apply(u, false); err != nil {
				t.Fatalf("Namespace %s: %v", u.GetName(), err)
			}
		}
	}
	kinds := map[string]int{}
	services := map[string]*unstructured.Unstructured{}
	var sts *unstructured.Unstructured
	for _, u := range objs {
		kinds[u.GetKind()]++
		if err := apply(u, true); err != nil {
			t.Errorf("%s %s/%s: the API server rejects it: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		switch u.GetKind() {
		case "StatefulSet":
			sts = u
		case "Service":
			services[u.GetName()] = u
		}
	}
	if kinds["Deployment"] != 0 || kinds["StatefulSet"] != 1 {
		t.Fatalf("want one StatefulSet and no Deployment, have %v", kinds)
	}

	// The pod template is the one examples/deploy promises.
	asDeployment := sts.DeepCopy()
	asDeployment.SetKind("Deployment")
	checkDaemonDeployment(t, []*unstructured.Unstructured{asDeployment})

	r, _, _ := unstructured.NestedFieldNoCopy(sts.Object, "spec", "replicas")
	replicas, _ := r.(float64) // YAML read as JSON
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	ctr := containers[0].(map[string]any)
	args, _, _ := unstructured.NestedStringSlice(ctr, "args")
	i := slices.Index(args, "--shard")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("args %v lack --shard", args)
	}
	if want := "auto/" + strconv.Itoa(int(replicas)); args[i+1] != want {
		t.Errorf("--shard %s with %v replicas, want %s", args[i+1], replicas, want)
	}
	env, _, _ := unstructured.NestedSlice(ctr, "env")
	podName := false
	for _, e := range env {
		e := e.(map[string]any)
		if path, _, _ := unstructured.NestedString(e, "valueFrom", "fieldRef", "fieldPath"); e["name"] == "POD_NAME" && path == "metadata.name" {
			podName = true
		}
	}
	if !podName {
		t.Errorf("no POD_NAME from metadata.name in %v", env)
	}
	if p, _, _ := unstructured.NestedString(sts.Object, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("podManagementPolicy %q: shards are independent, start them at once", p)
	}
	svcName, _, _ := unstructured.NestedString(sts.Object, "spec", "serviceName")
	svc := services[svcName]
	if svc == nil {
		t.Fatalf("serviceName %q names no Service of the directory", svcName)
	}
	if ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP"); ip != "None" {
		t.Errorf("Service %s is not headless (clusterIP %q)", svcName, ip)
	}
	podLabels, _, _ := unstructured.NestedStringMap(sts.Object, "spec", "template", "metadata", "labels")
	for _, s := range services {
		sel, _, _ := unstructured.NestedStringMap(s.Object, "spec", "selector")
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("Service %s selects %s=%s, the pods have %q", s.GetName(), k, v, podLabels[k])
			}
		}
	}
}
