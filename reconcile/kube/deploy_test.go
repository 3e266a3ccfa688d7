package kube

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	watchpkg "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
)

const deployDir = "../../examples/deploy"

// deployManifests reads the objects of examples/deploy in the order its
// kustomization.yaml lists the files, and checks that it lists them all.
func deployManifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	return kustomizeManifests(t, deployDir)
}

// kustomizeManifests reads the objects of the kustomization in dir in the
// order it lists its files, and checks that it lists every file there.
func kustomizeManifests(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(listed, onDisk) {
		t.Errorf("kustomization.yaml lists %v, the directory has %v", listed, onDisk)
	}
	sep := regexp.MustCompile(`(?m)^---[ \t]*$`)
	var out []*unstructured.Unstructured
	for _, name := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range sep.Split(string(data), -1) {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s document %d: %v", name, i+1, err)
			}
			if len(m) == 0 {
				continue
			}
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out
}

// TestDeployManifests validates examples/deploy against the API server
// (server-side dry-run apply), checks what the daemon's Deployment
// promises, then installs the RBAC for real and runs a whole observe ->
// apply -> prune loop as the daemon's service account: the roles are
// enough, and they do not reach secrets.
func TestDeployManifests(t *testing.T) {
	objs := deployManifests(t)
	c := cluster(t)
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	resource := func(u *unstructured.Unstructured) dynamic.ResourceInterface {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
		}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			return c.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		return c.dyn.Resource(m.Resource)
	}
	apply := func(u *unstructured.Unstructured, dryRun bool) error {
		data, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		force := true
		opts := metav1.PatchOptions{FieldManager: "gantry-install", Force: &force}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = resource(u).Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
		return err
	}

	// The namespace must exist for a dry run of what goes into it.
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if u.GetKind() == "Namespace" {
			if err := apply(u, false); err != nil {
				t.Fatalf("Namespace %s: %v", u.GetName(), err)
			}
		}
	}
	for _, u := range objs {
		if err := apply(u, true); err != nil {
			t.Errorf("%s %s/%s: the API server rejects it: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("examples/deploy has no %s", k)
		}
	}
	checkDaemonDeployment(t, objs)

	// Install the service account and RBAC for real and act as the daemon.
	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := apply(u, false); err != nil {
				t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	asDaemon := rest.CopyConfig(testConfig)
	asDaemon.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:gantry-system:gantry"}
	daemon, err := New(asDaemon, WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	cfg := specs(t, ns, map[string]int{"chat": 3})
	p, cs := reconcile(t, daemon, cfg, ApplyOptions{})
	if cs.Count(Created) != 1+len(p.Actions) {
		t.Errorf("as the daemon: %v", cs)
	}
	var objsApplied []planner.Object
	for _, a := range p.Actions {
		objsApplied = append(objsApplied, *a.Object)
	}
	if _, err := daemon.WaitRollout(ctx, objsApplied, 100*time.Millisecond); !errors.Is(err, ErrRolloutTimeout) {
		t.Errorf("as the daemon: wait: %v", err)
	}
	_, cs = reconcile(t, daemon, specs(t, ns, nil), ApplyOptions{})
	if cs.Count(Deleted) != len(p.Actions) {
		t.Errorf("as the daemon: prune: %v", cs)
	}

	typed, err := kubernetes.NewForConfig(asDaemon)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's informer cache watches nodes and pods: without watch
	// its view would never be live, and it would List every reconcile.
	for what, watch := range map[string]func() (watchpkg.Interface, error){
		"nodes": func() (watchpkg.Interface, error) { return typed.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{}) },
		"pods":  func() (watchpkg.Interface, error) { return typed.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{}) },
	} {
		w, err := watch()
		if err != nil {
			t.Errorf("the daemon cannot watch %s: %v", what, err)
			continue
		}
		w.Stop()
	}
	if _, err := typed.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the daemon can list secrets: %v", err)
	}
	if err := typed.CoreV1().Nodes().Delete(ctx, ns+"-n1", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the daemon can delete nodes: %v", err)
	}
}

func checkDaemonDeployment(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		pod, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec")
		containers, _, _ := unstructured.NestedSlice(pod, "containers")
		ctr := containers[0].(map[string]any)
		if img, _ := ctr["image"].(string); !strings.HasPrefix(img, "ghcr.io/gantry-dev/gantry") {
			t.Errorf("image %q", img)
		}
		args, _, _ := unstructured.NestedStringSlice(ctr, "args")
		if len(args) < 3 || args[0] != "run" || !slices.Contains(args, "--repo") {
			t.Errorf("args %v, want run --repo ...", args)
		}
		if nonRoot, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !nonRoot {
			t.Error("the pod may run as root")
		}
		if ro, _, _ := unstructured.NestedBool(ctr, "securityContext", "readOnlyRootFilesystem"); !ro {
			t.Error("the root filesystem is writable")
		}
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
			if got, _, _ := unstructured.NestedString(ctr, probe, "httpGet", "path"); got != path {
				t.Errorf("%s path %q, want %s", probe, got, path)
			}
		}
		ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations")
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "8080" {
			t.Errorf("scrape annotations %v", ann)
		}
		vols, _, _ := unstructured.NestedSlice(pod, "volumes")
		for _, v := range vols {
			if mode, ok, _ := unstructured.NestedInt64(v.(map[string]any), "secret", "defaultMode"); ok && mode != 0o440 {
				t.Errorf("secret volume mode %o, want 0440", mode)
			}
		}
	}
}
