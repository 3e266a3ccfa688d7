package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/planner"
)

// ApplyOptions changes how Apply treats conflicts.
type ApplyOptions struct {
	// Force takes fields over from other server-side apply managers
	// instead of failing with a *ConflictError. Hand edits (fields last
	// written by update, patch, edit or scale) are reverted without it.
	Force bool
}

// Outcome is what Apply did to one object.
type Outcome string

const (
	Created    Outcome = "created"
	Configured Outcome = "configured"
	Unchanged  Outcome = "unchanged"
	Deleted    Outcome = "deleted"
)

// Change is one entry of a ChangeSet.
type Change struct {
	Outcome   Outcome
	Kind      string
	Namespace string
	Name      string
	// Reverted lists the fields a configure took back from hand edits,
	// with the manager that made them: `.spec.replicas (kubectl)`.
	Reverted []string
}

// Subject is "Kind namespace/name", as plans print it.
func (c Change) Subject() string {
	if c.Namespace == "" {
		return c.Kind + " " + c.Name
	}
	return c.Kind + " " + c.Namespace + "/" + c.Name
}

func (c Change) String() string {
	s := c.Subject() + " " + string(c.Outcome)
	if len(c.Reverted) > 0 {
		s += " (reverted hand edits: " + strings.Join(c.Reverted, ", ") + ")"
	}
	return s
}

// ChangeSet is what Apply did, in the order it did it.
type ChangeSet []Change

// Count returns how many entries have the outcome.
func (cs ChangeSet) Count(o Outcome) int {
	n := 0
	for _, c := range cs {
		if c.Outcome == o {
			n++
		}
	}
	return n
}

// Changed reports whether Apply changed anything in the cluster.
func (cs ChangeSet) Changed() bool { return len(cs) > cs.Count(Unchanged) }

func (cs ChangeSet) String() string {
	return fmt.Sprintf("%d created, %d configured, %d unchanged, %d deleted",
		cs.Count(Created), cs.Count(Configured), cs.Count(Unchanged), cs.Count(Deleted))
}

// ConflictError is a server-side apply conflict with another apply
// manager: another tool declares the same fields with other values.
type ConflictError struct {
	Subject string   // "Deployment llm/chat-gpu-a1"
	Fields  []string // ".spec.replicas (helm)", sorted
	Err     error    // the API server's error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: field conflict with another server-side apply manager: %s; "+
		"remove these fields from the other tool's manifests, or force the apply to take them over",
		e.Subject, strings.Join(e.Fields, ", "))
}

func (e *ConflictError) Unwrap() error { return e.Err }

// UnmanagedError says that an object Gantry wants to create, change or
// delete exists without Gantry's managed-by label. Gantry never takes over
// or deletes such an object, even with Force.
type UnmanagedError struct {
	Subject string
}

func (e *UnmanagedError) Error() string {
	return fmt.Sprintf("%s exists and is not managed by Gantry (it lacks the label %s=%s); "+
		"rename or delete it, or add the label to hand it over to Gantry",
		e.Subject, planner.LabelManagedBy, planner.ManagedBy)
}

// Apply carries out the create, update and delete actions of a plan
// (build actions are skipped: other drivers run them). It checks every
// object first and touches nothing if one is invalid. Then it applies the
// namespace (creating it if missing), then every create and update in plan
// order by server-side apply as FieldManager, then the deletes in plan
// order. It stops at the first error and returns what it did so far.
//
// Creates and updates are applied in dry-run first; an object the dry run
// would not change is left alone, so it keeps its resourceVersion. A
// dry-run conflict with fields last written by a non-apply manager (kubectl
// edit, scale, patch) is drift: Apply forces those fields back and lists
// them in Change.Reverted. A conflict with another apply manager is a
// *ConflictError unless opts.Force. An existing object without Gantry's
// label is an *UnmanagedError. Deletes remove only objects that still carry
// the label, with a UID precondition, and an object already gone counts as
// unchanged.
func (c *Client) Apply(ctx context.Context, namespace string, actions []planner.Action, opts ApplyOptions) (ChangeSet, error) {
	if namespace == "" {
		return nil, fmt.Errorf("apply: no namespace")
	}
	var puts, dels []planner.Object
	for _, a := range actions {
		if a.Type.IsBuild() {
			continue
		}
		if a.Object == nil {
			return nil, fmt.Errorf("apply: %s %s: the action has no object", a.Type, a.Subject)
		}
		if err := checkObject(*a.Object, namespace); err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		switch a.Type {
		case planner.Create, planner.Update:
			puts = append(puts, *a.Object)
		case planner.Delete:
			dels = append(dels, *a.Object)
		default:
			return nil, fmt.Errorf("apply: %s: unknown action %q", a.Subject, a.Type)
		}
	}
	if err := c.checkServed(ctx, namespace, puts); err != nil {
		return nil, err
	}
	var cs ChangeSet
	if len(puts) > 0 {
		ch, err := c.ensureNamespace(ctx, namespace)
		if err != nil {
			return cs, err
		}
		cs = append(cs, ch)
	}
	for _, o := range puts {
		ch, err := c.applyObject(ctx, o, opts.Force)
		if err != nil {
			return cs, err
		}
		cs = append(cs, ch)
	}
	for _, o := range dels {
		ch, err := c.deleteObject(ctx, o)
		if err != nil {
			return cs, err
		}
		cs = append(cs, ch)
	}
	return cs, nil
}

// checkObject refuses what must never reach the API server.
func checkObject(o planner.Object, namespace string) error {
	if _, err := kindOf(o.APIVersion, o.Kind); err != nil {
		return fmt.Errorf("%s %s/%s: %w", o.Kind, o.Namespace, o.Name, err)
	}
	if o.Namespace != namespace {
		return fmt.Errorf("%s %s/%s: not in namespace %q", o.Kind, o.Namespace, o.Name, namespace)
	}
	if s, ok := findString(o.Manifest, planner.UnknownDigest); ok {
		return fmt.Errorf("%s %s/%s: %q still has no digest; render the objects again after the push", o.Kind, o.Namespace, o.Name, s)
	}
	return nil
}

// findString returns the first string in v that contains sub.
func findString(v any, sub string) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, strings.Contains(t, sub)
	case map[string]any:
		for _, e := range t {
			if s, ok := findString(e, sub); ok {
				return s, true
			}
		}
	case []any:
		for _, e := range t {
			if s, ok := findString(e, sub); ok {
				return s, true
			}
		}
	}
	return "", false
}

// checkServed fails, before anything is applied, when an object to apply
// is of a kind a CRD defines and the cluster does not serve (one List of
// at most one object per such kind), with the kind's absent error.
func (c *Client) checkServed(ctx context.Context, namespace string, puts []planner.Object) error {
	checked := map[string]bool{}
	for _, o := range puts {
		key := o.APIVersion + "/" + o.Kind
		k := kinds[key]
		if k.absent == nil || checked[key] {
			continue
		}
		checked[key] = true
		_, err := c.dyn.Resource(k.gvr).Namespace(namespace).List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("apply %s %s/%s: %w", o.Kind, o.Namespace, o.Name, k.absent)
		case err != nil:
			return fmt.Errorf("apply %s %s/%s: list %s: %w", o.Kind, o.Namespace, o.Name, k.gvr.Resource, err)
		}
	}
	return nil
}

// ensureNamespace creates the namespace when it is missing. An existing
// namespace is not patched: it may belong to someone else, and Gantry
// needs nothing of it but its existence.
func (c *Client) ensureNamespace(ctx context.Context, namespace string) (Change, error) {
	ch := Change{Kind: "Namespace", Name: namespace, Outcome: Unchanged}
	ri := c.dyn.Resource(kinds["v1/Namespace"].gvr)
	_, err := ri.Get(ctx, namespace, metav1.GetOptions{})
	if err == nil {
		return ch, nil
	}
	if !apierrors.IsNotFound(err) {
		return ch, fmt.Errorf("apply: get namespace %s: %w", namespace, err)
	}
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": namespace}}
	data, _ := json.Marshal(ns)
	if _, err := ri.Patch(ctx, namespace, types.ApplyPatchType, data, patchOptions(false, false)); err != nil {
		return ch, fmt.Errorf("apply: create namespace %s: %w", namespace, err)
	}
	ch.Outcome = Created
	return ch, nil
}

func patchOptions(dryRun, force bool) metav1.PatchOptions {
	o := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	if dryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	return o
}

func (c *Client) resource(o planner.Object) dynamic.ResourceInterface {
	k, _ := kindOf(o.APIVersion, o.Kind) // checked by checkObject
	if !k.namespaced {
		return c.dyn.Resource(k.gvr)
	}
	return c.dyn.Resource(k.gvr).Namespace(o.Namespace)
}

func (c *Client) applyObject(ctx context.Context, o planner.Object, force bool) (Change, error) {
	ch := Change{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
	subject := ch.Subject()
	ri := c.resource(o)
	data, err := json.Marshal(o.Manifest)
	if err != nil {
		return ch, fmt.Errorf("apply %s: %w", subject, err)
	}
	absent := kinds[o.APIVersion+"/"+o.Kind].absent
	live, err := ri.Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case absent != nil && noResource(err):
		return ch, fmt.Errorf("apply %s: %w", subject, absent)
	case apierrors.IsNotFound(err):
		out, err := ri.Patch(ctx, o.Name, types.ApplyPatchType, data, patchOptions(false, force))
		if absent != nil && noResource(err) {
			return ch, fmt.Errorf("apply %s: %w", subject, absent)
		}
		if err != nil {
			return ch, fmt.Errorf("apply %s: create: %w", subject, err)
		}
		c.wrote(o, out)
		ch.Outcome = Created
		return ch, nil
	case err != nil:
		return ch, fmt.Errorf("apply %s: get: %w", subject, err)
	}
	if live.GetLabels()[planner.LabelManagedBy] != planner.ManagedBy {
		return ch, &UnmanagedError{Subject: subject}
	}

	dry, err := ri.Patch(ctx, o.Name, types.ApplyPatchType, data, patchOptions(true, force))
	if err != nil && !force && apierrors.IsConflict(err) {
		fields, handEdits := classifyConflict(err, live)
		if !handEdits {
			return ch, &ConflictError{Subject: subject, Fields: fields, Err: err}
		}
		// Only hand edits stand in the way: that is drift, and Gantry is
		// the source of truth for the fields it renders.
		force, ch.Reverted = true, fields
		dry, err = ri.Patch(ctx, o.Name, types.ApplyPatchType, data, patchOptions(true, force))
	}
	if err != nil {
		return ch, fmt.Errorf("apply %s: dry-run: %w", subject, err)
	}
	if reflect.DeepEqual(contentOf(live.Object), contentOf(dry.Object)) {
		ch.Outcome, ch.Reverted = Unchanged, nil
		return ch, nil
	}
	out, err := ri.Patch(ctx, o.Name, types.ApplyPatchType, data, patchOptions(false, force))
	if err != nil {
		return ch, fmt.Errorf("apply %s: %w", subject, err)
	}
	c.wrote(o, out)
	ch.Outcome = Configured
	return ch, nil
}

// wrote tells the informer cache, if any, to show this write before the
// next Observe reads it.
func (c *Client) wrote(o planner.Object, out *unstructured.Unstructured) {
	if cache := c.informerCache(); cache != nil && out != nil {
		cache.expectWrite(o.APIVersion+"/"+o.Kind, o.Namespace, o.Name, out.GetResourceVersion())
	}
}

// contentOf is the object minus what a no-op apply may still change or
// what the dry run fills differently: managedFields (ownership, not
// content), resourceVersion, generation and status.
func contentOf(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "status" {
			out[k] = v
		}
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		cp := make(map[string]any, len(md))
		for k, v := range md {
			switch k {
			case "managedFields", "resourceVersion", "generation":
			default:
				cp[k] = v
			}
		}
		out["metadata"] = cp
	}
	return out
}

var conflictManager = regexp.MustCompile(`^conflict with ("(?:[^"\\]|\\.)*")`)

// classifyConflict lists the conflicting fields with their managers, and
// reports whether every conflicting manager only ever wrote to the object
// with Update operations (kubectl edit, patch, scale, a client's Update):
// hand edits rather than another tool's declared intent. A manager it
// cannot identify counts as an apply manager, so that Gantry never forces
// on a guess.
func classifyConflict(err error, live *unstructured.Unstructured) ([]string, bool) {
	ops := map[string]map[metav1.ManagedFieldsOperationType]bool{}
	for _, e := range live.GetManagedFields() {
		if ops[e.Manager] == nil {
			ops[e.Manager] = map[metav1.ManagedFieldsOperationType]bool{}
		}
		ops[e.Manager][e.Operation] = true
	}
	var fields []string
	handEdits := true
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil || len(status.Status().Details.Causes) == 0 {
		return []string{err.Error()}, false
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Type != metav1.CauseTypeFieldManagerConflict {
			continue
		}
		manager := "unknown manager"
		if m := conflictManager.FindStringSubmatch(cause.Message); m != nil {
			if name, err := strconv.Unquote(m[1]); err == nil {
				manager = name
			}
		}
		o := ops[manager]
		if o == nil || o[metav1.ManagedFieldsOperationApply] || !o[metav1.ManagedFieldsOperationUpdate] {
			handEdits = false
		}
		fields = append(fields, fmt.Sprintf("%s (%s)", cause.Field, manager))
	}
	if len(fields) == 0 {
		return []string{err.Error()}, false
	}
	sort.Strings(fields)
	return fields, handEdits
}

func (c *Client) deleteObject(ctx context.Context, o planner.Object) (Change, error) {
	ch := Change{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Outcome: Unchanged}
	subject := ch.Subject()
	ri := c.resource(o)
	live, err := ri.Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ch, nil
	case err != nil:
		return ch, fmt.Errorf("delete %s: get: %w", subject, err)
	}
	if live.GetLabels()[planner.LabelManagedBy] != planner.ManagedBy {
		return ch, &UnmanagedError{Subject: subject}
	}
	uid := live.GetUID()
	background := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, o.Name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &background,
	})
	switch {
	case apierrors.IsNotFound(err):
		return ch, nil
	case err != nil:
		return ch, fmt.Errorf("delete %s: %w", subject, err)
	}
	if cache := c.informerCache(); cache != nil {
		cache.expectGone(o.APIVersion+"/"+o.Kind, o.Namespace, o.Name, uid)
	}
	ch.Outcome = Deleted
	return ch, nil
}
