package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// specs is a config repository with one pool made of this test's nodes
// (other tests' nodes match no pool, so Observe leaves them out) and one
// release per entry of replicas, each wanting one GPU per replica and at
// most two replicas per node.
func specs(t *testing.T, ns string, replicas map[string]int) *spec.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "gantry {\n  namespace = %q\n}\n\nnode_pool \"gpu\" {\n  selector = { \"gantry.test/cluster\" = %q }\n}\n", ns, ns)
	names := make([]string, 0, len(replicas))
	for n := range replicas {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		fmt.Fprintf(&b, `
release %q {
  model {
    source = "oci://registry.example.com/sources/%s:v1"
    digest = "sha256:%064x"
    format = "safetensors"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
    args  = ["--model", "/models"]
  }
  replicas = %d
  resources {
    gpus = 1
  }
  placement {
    max_per_node = 2
  }
}
`, name, name, i+1, replicas[name])
	}
	return loadConfig(t, map[string]string{"main.hcl": b.String()})
}

// testNodes creates n GPU nodes with 4 GPUs each in the test's pool and
// returns their names.
func testNodes(t *testing.T, ns string, n int) []string {
	t.Helper()
	var names []string
	var nodes []gpuNode
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-n%d", ns, i)
		names = append(names, name)
		nodes = append(nodes, gpuNode{name: name, gpus: 4, product: "NVIDIA-L4", memMiB: 23034, labels: map[string]string{"gantry.test/cluster": ns}})
	}
	createNodes(t, nodes...)
	return names
}

func TestFirstApplyThenNothingChanges(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 3)
	cfg := specs(t, ns, map[string]int{"chat": 3})

	p, cs := reconcile(t, c, cfg, ApplyOptions{})
	if got, want := cs.Count(Created), 1+len(p.Actions); got != want {
		t.Errorf("created %d objects, want the namespace and %d objects: %v", got, len(p.Actions), cs)
	}
	if cs[0].Kind != "Namespace" || cs[0].Outcome != Created {
		t.Errorf("first change is %v, want the namespace created", cs[0])
	}
	total := 0
	for name, d := range deployments(t, ns) {
		total += int(*d.Spec.Replicas)
		node := d.Labels[planner.LabelNode]
		if d.Spec.Template.Spec.NodeSelector["kubernetes.io/hostname"] != node || node == "" {
			t.Errorf("%s: nodeSelector %v does not pin node %q", name, d.Spec.Template.Spec.NodeSelector, node)
		}
		gpus := d.Spec.Template.Spec.Containers[0].Resources.Limits[planner.GPUResource]
		if gpus.Value() != 1 {
			t.Errorf("%s: nvidia.com/gpu limit %s, want 1", name, gpus.String())
		}
		if !strings.Contains(d.Spec.Template.Spec.Volumes[0].Image.Reference, "@sha256:") {
			t.Errorf("%s: model image %q is not referenced by digest", name, d.Spec.Template.Spec.Volumes[0].Image.Reference)
		}
		if d.Annotations[planner.AnnotationSpecHash] == "" || d.Annotations[planner.AnnotationModelDigest] == "" {
			t.Errorf("%s: annotations %v lack the spec hash or model digest", name, d.Annotations)
		}
		for _, mf := range d.ManagedFields {
			if mf.Manager != FieldManager || mf.Operation != metav1.ManagedFieldsOperationApply {
				t.Errorf("%s: field manager %q (%s), want only %q (Apply)", name, mf.Manager, mf.Operation, FieldManager)
			}
		}
	}
	if total != 3 {
		t.Errorf("%d replicas in the cluster, want 3", total)
	}

	// The same actions again: every object exists as wanted, so nothing is
	// written and every resourceVersion stays.
	before := resourceVersions(t, ns)
	cs, err := c.Apply(ctx, ns, p.Actions, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Changed() || len(cs) != 1+len(p.Actions) {
		t.Errorf("re-apply: %v (%s), want everything unchanged", cs, cs.String())
	}
	if d := cmp.Diff(before, resourceVersions(t, ns)); d != "" {
		t.Errorf("re-apply changed resourceVersions (-before +after):\n%s", d)
	}

	// And a fresh plan against what the server returns is empty.
	again, obs := plan(t, c, cfg)
	if !again.Empty() {
		t.Errorf("plan after apply is not empty:\n%s", actionList(again))
	}
	if len(obs.Objects) != len(p.Actions) || len(obs.Shards) != len(p.Actions)-1 {
		t.Errorf("observed %d objects and %d shards, want %d and %d", len(obs.Objects), len(obs.Shards), len(p.Actions), len(p.Actions)-1)
	}
	for _, o := range obs.Objects {
		if _, ok := o.Manifest["status"]; ok {
			t.Errorf("%s: observed manifest keeps status", o.ID())
		}
		md := o.Manifest["metadata"].(map[string]any)
		if _, ok := md["managedFields"]; ok {
			t.Errorf("%s: observed manifest keeps managedFields", o.ID())
		}
	}
}

func actionList(p planner.Plan) string {
	var b strings.Builder
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "  %s %s: %s %+v\n", a.Type, a.Subject, a.Reason, a.Changes)
	}
	return b.String()
}

// TestScaleAcrossNodes runs observe -> plan -> apply against the server as
// the release goes from 3 to 5 to 2 replicas on three 4-GPU nodes with at
// most two replicas per node.
func TestScaleAcrossNodes(t *testing.T) {
	c := cluster(t)
	ns := namespaceName(t)
	testNodes(t, ns, 3)
	for _, replicas := range []int{3, 5, 2} {
		cfg := specs(t, ns, map[string]int{"chat": replicas})
		p, cs := reconcile(t, c, cfg, ApplyOptions{})
		t.Logf("%d replicas: %s; placement %v", replicas, cs.String(), p.Releases[0].Placement)
		if p.Releases[0].Placement.Total() != replicas {
			t.Fatalf("%d replicas: placed %v", replicas, p.Releases[0].Placement)
		}
		live := map[string]int{}
		for _, d := range deployments(t, ns) {
			live[d.Labels[planner.LabelNode]] += int(*d.Spec.Replicas)
			if *d.Spec.Replicas > 2 || *d.Spec.Replicas < 1 {
				t.Errorf("%d replicas: %s has %d replicas, want 1 or 2", replicas, d.Name, *d.Spec.Replicas)
			}
		}
		if d := cmp.Diff(map[string]int(p.Releases[0].Placement), live); d != "" {
			t.Errorf("%d replicas: shards in the cluster differ from the placement (-placement +cluster):\n%s", replicas, d)
		}
		if again, _ := plan(t, c, cfg); !again.Empty() {
			t.Errorf("%d replicas: not converged after one apply:\n%s", replicas, actionList(again))
		}
	}
}

// TestHandEditsReverted: kubectl scale and kubectl edit are drift; the
// next plan shows them and apply sets the fields back.
func TestHandEditsReverted(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 1)
	cfg := specs(t, ns, map[string]int{"chat": 2})
	reconcile(t, c, cfg, ApplyOptions{})
	name := planner.ShardName("chat", ns+"-n1")
	apps := admin(t).AppsV1().Deployments(ns)
	// A daemon's plan memo finds the release in sync, and skips it while
	// nothing changes: the objects' resourceVersions vouch for that.
	memo := &planner.Memo{}
	memoPlan := func() planner.Plan {
		t.Helper()
		obs, err := c.Observe(ctx, ns, cfg.Pools)
		if err != nil {
			t.Fatal(err)
		}
		p := planner.Prepare(cfg, planner.Observed{Objects: obs.Objects, Nodes: obs.Nodes, Artifacts: artifacts(cfg)})
		p.Memo = memo
		plan, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		return plan
	}
	memoPlan()
	if p := memoPlan(); !p.Empty() || memo.Skips() != 1 {
		t.Fatalf("memo: %d skips, plan:\n%s", memo.Skips(), actionList(p))
	}

	// kubectl scale deployment --replicas=7
	if _, err := apps.UpdateScale(ctx, name, &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 7},
	}, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	// kubectl edit: another runtime image
	d, err := apps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = "vllm/vllm-openai:latest"
	if _, err := apps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}

	p, _ := plan(t, c, cfg)
	if len(p.Actions) != 1 || p.Actions[0].Type != planner.Update {
		t.Fatalf("plan after hand edits:\n%s", actionList(p))
	}
	// The edits gave the Deployment a new resourceVersion: the memo does
	// not vouch for it any more, and the plan with it is the same.
	if mp := memoPlan(); memo.Skips() != 1 || cmp.Diff(p.Actions, mp.Actions) != "" {
		t.Fatalf("with the memo after hand edits (%d skips):\n%s", memo.Skips(), cmp.Diff(p.Actions, mp.Actions))
	}
	var paths []string
	for _, ch := range p.Actions[0].Changes {
		paths = append(paths, fmt.Sprintf("%s: %v -> %v", ch.Path, ch.Old, ch.New))
	}
	want := []string{"spec.replicas: 7 -> 2", "spec.template.spec.containers[0].image: vllm/vllm-openai:latest -> vllm/vllm-openai:v0.6.3"}
	if d := cmp.Diff(want, paths); d != "" {
		t.Errorf("plan changes (-want +got):\n%s", d)
	}

	cs, err := c.Apply(ctx, ns, p.Actions, ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	last := cs[len(cs)-1]
	if last.Outcome != Configured {
		t.Errorf("apply: %v, want configured", last)
	}
	wantReverted := []string{".spec.replicas (kubectl)", `.spec.template.spec.containers[name="server"].image (kubectl-edit)`}
	if d := cmp.Diff(wantReverted, last.Reverted); d != "" {
		t.Errorf("reverted fields (-want +got):\n%s", d)
	}
	t.Logf("apply: %v", last)
	d, err = apps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "vllm/vllm-openai:v0.6.3" {
		t.Errorf("after apply: replicas %d, image %s; want 2 and the spec's image", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
	}
	if again, _ := plan(t, c, cfg); !again.Empty() {
		t.Errorf("not converged:\n%s", actionList(again))
	}
	// Gantry owns the fields again: a later edit by the same tools is drift
	// again, not a silent shared ownership.
	for _, mf := range d.ManagedFields {
		if mf.Manager == "kubectl" && strings.Contains(string(mf.FieldsV1.Raw), "replicas") {
			t.Errorf("kubectl still owns spec.replicas: %s", mf.FieldsV1.Raw)
		}
	}
}

// TestConflictWithAnotherApplyManager: a field another tool declares by
// server-side apply is not taken silently; Force takes it.
func TestConflictWithAnotherApplyManager(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 1)
	cfg := specs(t, ns, map[string]int{"chat": 1})
	reconcile(t, c, cfg, ApplyOptions{})
	name := planner.ShardName("chat", ns+"-n1")

	other, _ := json.Marshal(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"replicas": 4},
	})
	force := true
	if _, err := admin(t).AppsV1().Deployments(ns).Patch(ctx, name, types.ApplyPatchType, other, metav1.PatchOptions{FieldManager: "helm", Force: &force}); err != nil {
		t.Fatal(err)
	}
	p, _ := plan(t, c, cfg)
	if len(p.Actions) != 1 || p.Actions[0].Reason != "replicas 4 -> 1" {
		t.Fatalf("plan:\n%s", actionList(p))
	}
	before := resourceVersions(t, ns)
	cs, err := c.Apply(ctx, ns, p.Actions, ApplyOptions{})
	var conflict *ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("apply: %v (%v), want a *ConflictError", err, cs)
	}
	t.Logf("the error: %v", err)
	if !strings.Contains(err.Error(), "Deployment "+ns+"/"+name) || !strings.Contains(err.Error(), `.spec.replicas (helm)`) || !strings.Contains(err.Error(), "force") {
		t.Errorf("error %q should name the object, the field, the other manager, and force", err)
	}
	if !apierrors.IsConflict(err) {
		t.Errorf("the ConflictError does not wrap the API server's conflict")
	}
	if d := cmp.Diff(before, resourceVersions(t, ns)); d != "" {
		t.Errorf("a refused apply changed objects (-before +after):\n%s", d)
	}

	cs, err = c.Apply(ctx, ns, p.Actions, ApplyOptions{Force: true})
	if err != nil || cs[len(cs)-1].Outcome != Configured {
		t.Fatalf("forced apply: %v, %v", cs, err)
	}
	if d := deployments(t, ns)[name]; *d.Spec.Replicas != 1 {
		t.Errorf("forced apply left %d replicas, want 1", *d.Spec.Replicas)
	}
}

// TestPruneRemovedRelease: a release removed from the specs loses its
// objects; objects Gantry does not manage stay untouched.
func TestPruneRemovedRelease(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	reconcile(t, c, specs(t, ns, map[string]int{"chat": 1, "old": 2}), ApplyOptions{})

	bystander := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "old-bystander", Namespace: ns, Labels: map[string]string{planner.LabelRelease: "old"}},
		Spec:       deploymentSpec("bystander"),
	}
	if _, err := admin(t).AppsV1().Deployments(ns).Create(ctx, bystander, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ns)

	cfg := specs(t, ns, map[string]int{"chat": 1})
	p, cs := reconcile(t, c, cfg, ApplyOptions{})
	if cs.Count(Deleted) == 0 || cs.Count(Deleted) != p.Summary().Destroy || cs.Count(Created)+cs.Count(Configured) != 0 {
		t.Errorf("prune: %v (%s)", cs, cs.String())
	}
	after := resourceVersions(t, ns)
	for id := range after {
		if strings.Contains(id, "/old") && id != "Deployment/old-bystander" {
			t.Errorf("%s was not pruned", id)
		}
	}
	if after["Deployment/old-bystander"] != before["Deployment/old-bystander"] {
		t.Errorf("the unmanaged Deployment was touched or deleted")
	}
	for id, rv := range after {
		if strings.Contains(id, "chat") && rv != before[id] {
			t.Errorf("%s changed while pruning another release", id)
		}
	}
	if again, _ := plan(t, c, cfg); !again.Empty() {
		t.Errorf("not converged:\n%s", actionList(again))
	}
}

func deploymentSpec(app string) appsv1.DeploymentSpec {
	one := int32(1)
	return appsv1.DeploymentSpec{
		Replicas: &one,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
		},
	}
}

// TestUnmanagedObjectNotTakenOver: a Deployment that someone else made,
// with the name a shard would get, stops the apply with a clear error and
// stays as it was, even with Force; and Gantry never deletes it.
func TestUnmanagedObjectNotTakenOver(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 1)
	createNamespace(t, ns)
	name := planner.ShardName("chat", ns+"-n1")
	theirs := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: deploymentSpec("theirs")}
	if _, err := admin(t).AppsV1().Deployments(ns).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ns)["Deployment/"+name]

	p, _ := plan(t, c, specs(t, ns, map[string]int{"chat": 1}))
	for _, force := range []bool{false, true} {
		cs, err := c.Apply(ctx, ns, p.Actions, ApplyOptions{Force: force})
		var unmanaged *UnmanagedError
		if !errors.As(err, &unmanaged) {
			t.Fatalf("force=%v: apply: %v, want an *UnmanagedError", force, err)
		}
		t.Logf("the error: %v", err)
		if !strings.Contains(err.Error(), "Deployment "+ns+"/"+name) || !strings.Contains(err.Error(), "not managed by Gantry") {
			t.Errorf("error %q should name the object and say it is not Gantry's", err)
		}
		// The partial change set: the namespace and the Service went first.
		if len(cs) != 2 || cs[1].Kind != "Service" {
			t.Errorf("force=%v: partial change set %v, want the namespace and the Service", force, cs)
		}
	}
	if after := resourceVersions(t, ns)["Deployment/"+name]; after != before {
		t.Errorf("the unmanaged Deployment changed: resourceVersion %s -> %s", before, after)
	}

	// A delete that reaches an object without the label is refused too.
	live := planner.Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: name, Manifest: map[string]any{}}
	_, err := c.Apply(ctx, ns, []planner.Action{{Type: planner.Delete, Subject: "Deployment " + ns + "/" + name, Object: &live}}, ApplyOptions{Force: true})
	var unmanaged *UnmanagedError
	if !errors.As(err, &unmanaged) {
		t.Fatalf("delete: %v, want an *UnmanagedError", err)
	}
	if _, ok := resourceVersions(t, ns)["Deployment/"+name]; !ok {
		t.Fatal("the unmanaged Deployment was deleted")
	}
}

// TestAPIServerDown stops the API server in the middle of a test: observe
// and apply fail with errors that say what they were doing and why, and
// once the server is back the next apply succeeds.
func TestAPIServerDown(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	reconcile(t, c, specs(t, ns, map[string]int{"chat": 1}), ApplyOptions{})
	cfg := specs(t, ns, map[string]int{"chat": 3})
	p, _ := plan(t, c, cfg)

	api := testEnv.ControlPlane.APIServer
	if err := api.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			if err := api.Start(); err != nil {
				t.Fatalf("restart the API server: %v", err)
			}
		}
	}
	t.Cleanup(restart) // later tests need it, whatever happens here

	cs, err := c.Apply(ctx, ns, p.Actions, ApplyOptions{})
	if err == nil {
		t.Fatalf("apply with the API server down succeeded: %v", cs)
	}
	t.Logf("apply: %v", err)
	if !strings.Contains(err.Error(), "namespace "+ns) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("apply error %q should say what it did (the namespace) and why (connection refused)", err)
	}
	if len(cs) != 0 {
		t.Errorf("change set %v, want nothing done", cs)
	}
	_, err = c.Observe(ctx, ns, cfg.Pools)
	if err == nil || !strings.Contains(err.Error(), "observe: list nodes") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("observe error %q should name the list and the cause", err)
	}

	restart()
	cs, err = c.Apply(ctx, ns, p.Actions, ApplyOptions{})
	if err != nil {
		t.Fatalf("apply after restart: %v", err)
	}
	if cs.Count(Created)+cs.Count(Configured) == 0 {
		t.Errorf("apply after restart did nothing: %v", cs)
	}
	if again, _ := plan(t, c, cfg); !again.Empty() {
		t.Errorf("not converged:\n%s", actionList(again))
	}
}
