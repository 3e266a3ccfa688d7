package planner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/gantry-dev/gantry/spec"
)

// ignoredPaths are fields that never by themselves make an update: the Git
// revision changes on every commit, and would otherwise touch every object.
var ignoredPaths = map[string]bool{
	"metadata.annotations." + AnnotationRevision: true,
}

// Diff compares the fields of desired with the same fields of live and
// returns every difference, in path order. Fields only live has (status,
// server defaults, other managers' fields) are not compared: Gantry owns
// what it renders and nothing else, as with server-side apply. Lists are
// compared element by element when their lengths agree, else whole.
func Diff(desired, live map[string]any) []FieldChange {
	var out []FieldChange
	diffValue("", desired, live, true, &out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func diffValue(path string, want, have any, present bool, out *[]FieldChange) {
	if ignoredPaths[path] {
		return
	}
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok || !present {
			*out = append(*out, change(path, have, want, present))
			return
		}
		for _, k := range sortedKeys(w) {
			hv, ok := h[k]
			diffValue(join(path, k), w[k], hv, ok, out)
		}
	case []any:
		h, ok := have.([]any)
		if !ok || !present || len(h) != len(w) {
			*out = append(*out, change(path, have, want, present))
			return
		}
		for i := range w {
			n := len(*out)
			diffValue(fmt.Sprintf("%s[%d]", path, i), w[i], h[i], true, out)
			if isSecretEntry(w[i]) || isSecretEntry(h[i]) {
				for k := n; k < len(*out); k++ {
					(*out)[k].Sensitive = true
				}
			}
		}
	default:
		if !present || !scalarEqual(want, have) {
			*out = append(*out, change(path, have, want, present))
		}
	}
}

func change(path string, old, new any, present bool) FieldChange {
	c := FieldChange{Path: path, New: new}
	if present {
		c.Old = old
	}
	c.Sensitive = containsSecret(old) || containsSecret(new)
	return c
}

// isSecretEntry reports whether v itself is an env entry with a
// secret-looking name.
func isSecretEntry(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	name, _ := m["name"].(string)
	_, hasValue := m["value"]
	return hasValue && spec.LooksSecret(name)
}

// containsSecret reports whether v holds an environment entry whose name
// looks like a secret ({name: HF_TOKEN, value: ...}). Such values are
// redacted wherever a plan is shown or saved: a plan is posted on pull
// requests, and somebody may have put a token in Git by mistake.
func containsSecret(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		if name, ok := t["name"].(string); ok && spec.LooksSecret(name) {
			if _, ok := t["value"]; ok {
				return true
			}
		}
		for _, e := range t {
			if containsSecret(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if containsSecret(e) {
				return true
			}
		}
	}
	return false
}

// scalarEqual treats numbers by value, so that int64 from a renderer and
// float64 from YAML or JSON compare equal.
func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
