package kube

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/planner"
)

func conflict(causes ...metav1.StatusCause) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
		Message: "Apply failed with conflicts",
		Details: &metav1.StatusDetails{Causes: causes},
	}}
}

func cause(field, msg string) metav1.StatusCause {
	return metav1.StatusCause{Type: metav1.CauseTypeFieldManagerConflict, Field: field, Message: msg}
}

func TestClassifyConflict(t *testing.T) {
	live := &unstructured.Unstructured{Object: map[string]any{}}
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply},
		{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "scale"},
		{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate},
		{Manager: "helm", Operation: metav1.ManagedFieldsOperationApply},
		{Manager: `odd "name"`, Operation: metav1.ManagedFieldsOperationUpdate},
	})
	for _, tc := range []struct {
		name      string
		err       error
		fields    []string
		handEdits bool
	}{
		{"kubectl scale and edit", conflict(
			cause(".spec.replicas", `conflict with "kubectl" with subresource "scale" using apps/v1`),
			cause(".spec.template.spec.containers[name=\"server\"].image", `conflict with "kubectl-edit" using apps/v1`),
		), []string{".spec.replicas (kubectl)", `.spec.template.spec.containers[name="server"].image (kubectl-edit)`}, true},
		{"quoted manager name", conflict(cause(".spec.replicas", `conflict with "odd \"name\"" using apps/v1`)),
			[]string{`.spec.replicas (odd "name")`}, true},
		{"another applier", conflict(
			cause(".spec.replicas", `conflict with "kubectl" with subresource "scale" using apps/v1`),
			cause(".spec.replicas", `conflict with "helm"`),
		), []string{".spec.replicas (helm)", ".spec.replicas (kubectl)"}, false},
		{"manager not in managedFields", conflict(cause(".spec.replicas", `conflict with "ghost" using apps/v1`)),
			[]string{".spec.replicas (ghost)"}, false},
		{"unreadable message", conflict(cause(".spec.replicas", `conflicts: kubectl`)),
			[]string{".spec.replicas (unknown manager)"}, false},
		{"no causes", conflict(), []string{"Apply failed with conflicts"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields, hand := classifyConflict(tc.err, live)
			if d := cmp.Diff(tc.fields, fields); d != "" {
				t.Errorf("fields (-want +got):\n%s", d)
			}
			if hand != tc.handEdits {
				t.Errorf("hand edits %v, want %v", hand, tc.handEdits)
			}
		})
	}
}

// TestApplyChecksBeforeTouching: invalid actions are refused before any
// request; the client here points at nothing.
func TestApplyChecksBeforeTouching(t *testing.T) {
	c, err := New(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	deploy := func(ns, image string) *planner.Object {
		return &planner.Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: "chat-a1", Manifest: map[string]any{
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"volumes": []any{
				map[string]any{"name": "model", "image": map[string]any{"reference": image}},
			}}}},
		}}
	}
	good := deploy("llm", "registry.example.com/chat:ck-1@sha256:abc")
	for _, tc := range []struct {
		name    string
		actions []planner.Action
		want    string
	}{
		{"digest unknown", []planner.Action{{Type: planner.Create, Object: good}, {Type: planner.Create, Object: deploy("llm", "r/chat:ck-1@"+planner.UnknownDigest)}},
			`Deployment llm/chat-a1: "r/chat:ck-1@(known after push)" still has no digest`},
		{"other namespace", []planner.Action{{Type: planner.Delete, Object: deploy("prod", "x")}}, `not in namespace "llm"`},
		{"kind Gantry does not manage", []planner.Action{{Type: planner.Create, Object: &planner.Object{APIVersion: "v1", Kind: "Secret", Namespace: "llm", Name: "s"}}},
			"kind v1 Secret is not one Gantry manages"},
		{"no object", []planner.Action{{Type: planner.Update, Subject: "Service llm/chat"}}, "update Service llm/chat: the action has no object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := c.Apply(context.Background(), "llm", tc.actions, ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if len(cs) != 0 {
				t.Errorf("did %v", cs)
			}
		})
	}
	// Build actions are not Apply's; with nothing else there is nothing to do.
	cs, err := c.Apply(context.Background(), "llm", []planner.Action{{Type: planner.Quantize}, {Type: planner.Push}}, ApplyOptions{})
	if err != nil || len(cs) != 0 {
		t.Errorf("build actions only: %v, %v", cs, err)
	}
}

func TestContentOfIgnoresBookkeeping(t *testing.T) {
	live := map[string]any{
		"metadata": map[string]any{"name": "a", "resourceVersion": "1", "generation": int64(1), "managedFields": []any{"x"}},
		"spec":     map[string]any{"replicas": int64(2)},
		"status":   map[string]any{"replicas": int64(2)},
	}
	dry := map[string]any{
		"metadata": map[string]any{"name": "a", "resourceVersion": "1", "generation": int64(2), "managedFields": []any{"y"}},
		"spec":     map[string]any{"replicas": int64(2)},
		"status":   map[string]any{"replicas": int64(0)},
	}
	if d := cmp.Diff(contentOf(live), contentOf(dry)); d != "" {
		t.Errorf("bookkeeping counted as a change:\n%s", d)
	}
	if _, ok := live["status"]; !ok {
		t.Error("contentOf changed its argument")
	}
	dry["spec"] = map[string]any{"replicas": int64(3)}
	if cmp.Equal(contentOf(live), contentOf(dry)) {
		t.Error("a spec change went unnoticed")
	}
}

func TestChangeSetString(t *testing.T) {
	cs := ChangeSet{
		{Outcome: Unchanged, Kind: "Namespace", Name: "llm"},
		{Outcome: Configured, Kind: "Deployment", Namespace: "llm", Name: "chat-a1", Reverted: []string{".spec.replicas (kubectl)"}},
		{Outcome: Deleted, Kind: "Service", Namespace: "llm", Name: "old"},
	}
	if got, want := cs.String(), "0 created, 1 configured, 1 unchanged, 1 deleted"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got, want := cs[1].String(), "Deployment llm/chat-a1 configured (reverted hand edits: .spec.replicas (kubectl))"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if !cs.Changed() || (ChangeSet{cs[0]}).Changed() {
		t.Error("Changed")
	}
}
