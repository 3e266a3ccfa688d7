package spec

import (
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// MaxRolloutSteps bounds the steps of one rollout. Each step waits for
// its pods and its analysis, so even a few dozen steps take days; a list
// longer than this is a mistake (or a generated file gone wrong), and it
// is refused before any step is decoded.
const MaxRolloutSteps = 100

// rolloutStepKeys are the keys a step object may have.
var rolloutStepKeys = []string{"replicas", "percent", "weight", "pause"}

// decodeRollout decodes ro's steps and waves with ctx, the evaluation
// context of the rest of the release. fleet says whether the specs have
// cluster blocks, which only the message for a rollout with neither
// depends on. Without steps but with waves, Steps is the one implicit
// step { percent = 100 } (its pause, wave_pause, is defaulted and
// parsed by validation).
func decodeRollout(ro *Rollout, ctx *hcl.EvalContext, fleet bool) hcl.Diagnostics {
	ro.ImplicitStep = false
	hasSteps, diags := decodeRolloutSteps(ro, ctx)
	hasWaves, d := decodeRolloutWaves(ro, ctx)
	diags = append(diags, d...)
	switch {
	case hasSteps:
	case hasWaves:
		ro.Steps = []RolloutStep{{Percent: 100, Range: ro.WavesExpr.Range()}}
		ro.ImplicitStep = true
	case !fleet:
		// gohcl gives an absent expression attribute a null value, at
		// the block's opening brace.
		diags = append(diags, stepsDiag(exprRange(ro.StepsExpr, ro.DefRange), "Missing required argument",
			"The argument \"steps\" is required: the rollout's steps, such as steps = [{ replicas = 1, pause = \"10m\" }, { percent = 100 }]."))
	default:
		diags = append(diags, stepsDiag(exprRange(ro.StepsExpr, ro.DefRange), "Missing rollout steps",
			"A rollout block needs steps, waves or both: steps = [{ replicas = 1, pause = \"10m\" }, { percent = 100 }] runs a canary in each cluster, and waves = [[\"staging\"], [\"eu-1\", \"us-1\"]] rolls the clusters group by group."))
	}
	return diags
}

// exprRange is e's range, def when e is nil.
func exprRange(e hcl.Expression, def hcl.Range) hcl.Range {
	if e == nil {
		return def
	}
	return e.Range()
}

// decodeRolloutSteps decodes ro.StepsExpr into ro.Steps with ctx and
// reports whether steps is set (absent or null is not). The steps of a
// literal tuple of objects are decoded item by item, so that each
// diagnostic points at the key or value it is about; any other
// expression (a variable, a local, a for expression) is evaluated whole,
// and its diagnostics point at it.
func decodeRolloutSteps(ro *Rollout, ctx *hcl.EvalContext) (bool, hcl.Diagnostics) {
	ro.Steps = nil
	if ro.StepsExpr == nil {
		return false, nil
	}
	exprRange := ro.StepsExpr.Range()
	if tup, ok := ro.StepsExpr.(*hclsyntax.TupleConsExpr); ok {
		if n := len(tup.Exprs); n > MaxRolloutSteps {
			return true, tooManySteps(n, exprRange)
		}
		var diags hcl.Diagnostics
		for i, e := range tup.Exprs {
			s, d := decodeRolloutStep(i+1, e, ctx)
			diags = append(diags, d...)
			ro.Steps = append(ro.Steps, s)
		}
		return true, diags
	}
	val, diags := ro.StepsExpr.Value(ctx)
	if diags.HasErrors() {
		return true, diags
	}
	if val.IsNull() {
		return false, diags
	}
	if !val.IsKnown() || !(val.Type().IsTupleType() || val.Type().IsListType()) {
		return true, hcl.Diagnostics{stepsDiag(exprRange, "Invalid rollout steps",
			"steps must be a list of step objects, such as [{ replicas = 1, pause = \"10m\" }, { percent = 100 }]; got %s.", typeName(val))}
	}
	if n := val.LengthInt(); n > MaxRolloutSteps {
		return true, tooManySteps(n, exprRange)
	}
	for i, it := 0, val.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		s, d := decodeRolloutStepValue(i+1, ev, exprRange)
		diags = append(diags, d...)
		ro.Steps = append(ro.Steps, s)
	}
	return true, diags
}

func tooManySteps(n int, r hcl.Range) hcl.Diagnostics {
	return hcl.Diagnostics{stepsDiag(r, "Too many rollout steps",
		"A rollout has at most %d steps, this one has %d. Each step waits for its pods and its analysis; use fewer, larger steps.", MaxRolloutSteps, n)}
}

func stepsDiag(r hcl.Range, summary, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: r.Ptr()}
}

// stepField is one key of a step with its value and where each is.
type stepField struct {
	key        string
	keyRange   hcl.Range
	val        cty.Value
	valueRange hcl.Range
}

// decodeRolloutStep decodes step n (1-based) from its expression.
func decodeRolloutStep(n int, e hclsyntax.Expression, ctx *hcl.EvalContext) (RolloutStep, hcl.Diagnostics) {
	obj, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		val, diags := e.Value(ctx)
		if diags.HasErrors() {
			return RolloutStep{Range: e.Range()}, diags
		}
		return decodeRolloutStepValue(n, val, e.Range())
	}
	var diags hcl.Diagnostics
	fields := make([]stepField, 0, len(obj.Items))
	for _, item := range obj.Items {
		kv, d := item.KeyExpr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		key, err := convert.Convert(kv, cty.String)
		if err != nil || key.IsNull() || !key.IsKnown() {
			diags = append(diags, stepsDiag(item.KeyExpr.Range(), "Invalid rollout step key",
				"Step %d: a key must be one of %s.", n, strings.Join(rolloutStepKeys, ", ")))
			continue
		}
		val, d := item.ValueExpr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		fields = append(fields, stepField{key.AsString(), item.KeyExpr.Range(), val, item.ValueExpr.Range()})
	}
	s, d := decodeStepFields(n, fields, e.Range())
	return s, append(diags, d...)
}

// decodeRolloutStepValue decodes step n from an evaluated value; every
// diagnostic points at r.
func decodeRolloutStepValue(n int, val cty.Value, r hcl.Range) (RolloutStep, hcl.Diagnostics) {
	if val.IsNull() || !val.IsKnown() || !(val.Type().IsObjectType() || val.Type().IsMapType()) {
		return RolloutStep{Range: r}, hcl.Diagnostics{stepsDiag(r, "Invalid rollout step",
			"Step %d must be an object such as { percent = 50, pause = \"30m\" }; got %s.", n, typeName(val))}
	}
	var fields []stepField
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		fields = append(fields, stepField{k.AsString(), r, v, r})
	}
	return decodeStepFields(n, fields, r)
}

// decodeStepFields checks and decodes the keys of step n, whose object
// is at r.
func decodeStepFields(n int, fields []stepField, r hcl.Range) (RolloutStep, hcl.Diagnostics) {
	s := RolloutStep{Range: r}
	var diags hcl.Diagnostics
	seen := map[string]hcl.Range{}
	set := map[string]bool{} // keys with a value that is not null
	for _, f := range fields {
		if !slices.Contains(rolloutStepKeys, f.key) {
			detail := fmt.Sprintf("Step %d: a step has no key %q; its keys are %s.", n, f.key, strings.Join(rolloutStepKeys, ", "))
			if near := nearest(f.key, rolloutStepKeys); near != "" {
				detail = fmt.Sprintf("Step %d: a step has no key %q. Did you mean %q?", n, f.key, near)
			}
			diags = append(diags, stepsDiag(f.keyRange, "Unknown rollout step key", "%s", detail))
			continue
		}
		if prev, ok := seen[f.key]; ok {
			diags = append(diags, stepsDiag(f.keyRange, "Duplicate rollout step key",
				"Step %d sets %s twice. Previous definition at %s:%d.", n, f.key, prev.Filename, prev.Start.Line))
			continue
		}
		seen[f.key] = f.keyRange
		if f.val.IsNull() {
			continue // as if absent, like a null attribute
		}
		set[f.key] = true
		switch f.key {
		case "pause":
			str, err := convert.Convert(f.val, cty.String)
			if err != nil || !str.IsKnown() {
				diags = append(diags, stepsDiag(f.valueRange, "Invalid duration",
					"Step %d: pause must be a duration string such as \"10m\"; got %s.", n, typeName(f.val)))
				continue
			}
			d, perr := ParseDuration(str.AsString())
			if perr != nil {
				diags = append(diags, stepsDiag(f.valueRange, "Invalid duration", "Step %d: pause: %s", n, sentence(perr)))
				continue
			}
			s.PauseRaw, s.Pause = str.AsString(), d
		case "replicas":
			if v, ok := stepWhole(&diags, n, f, 1, 1<<20, "a number of replicas, at least 1"); ok {
				s.Replicas = v
			}
		case "percent":
			if v, ok := stepWhole(&diags, n, f, 1, 100, "a percent of the release's replicas, from 1 to 100"); ok {
				s.Percent = v
			}
		case "weight":
			if v, ok := stepWhole(&diags, n, f, 0, 100, "a percent of traffic, from 0 to 100"); ok {
				s.Weight = &v
			}
		}
	}
	hasReplicas, hasPercent := set["replicas"], set["percent"]
	switch {
	case hasReplicas && hasPercent:
		diags = append(diags, stepsDiag(seen["percent"], "Conflicting rollout step",
			"Step %d sets both replicas and percent; a step gives the new version either a count of replicas or a percent of them, not both.", n))
	case !hasReplicas && !hasPercent && !diags.HasErrors():
		diags = append(diags, stepsDiag(r, "Incomplete rollout step",
			"Step %d says neither replicas nor percent: set one, such as { replicas = 1 } or { percent = 50 }.", n))
	}
	return s, diags
}

// stepWhole converts f's value to a whole number in [lo, hi], reporting
// what it must be (want) otherwise.
func stepWhole(diags *hcl.Diagnostics, n int, f stepField, lo, hi int64, want string) (int, bool) {
	num, err := convert.Convert(f.val, cty.Number)
	if err != nil || !num.IsKnown() {
		*diags = append(*diags, stepsDiag(f.valueRange, "Invalid rollout step",
			"Step %d: %s must be %s; got %s.", n, f.key, want, typeName(f.val)))
		return 0, false
	}
	bf := num.AsBigFloat()
	if !bf.IsInt() {
		*diags = append(*diags, stepsDiag(f.valueRange, "Invalid rollout step",
			"Step %d: %s must be a whole number, %s; got %s.", n, f.key, want, bf.Text('g', 10)))
		return 0, false
	}
	if bf.Cmp(big.NewFloat(float64(lo))) < 0 || bf.Cmp(big.NewFloat(float64(hi))) > 0 {
		*diags = append(*diags, stepsDiag(f.valueRange, "Invalid rollout step",
			"Step %d: %s must be %s; got %s.", n, f.key, want, bf.Text('g', 10)))
		return 0, false
	}
	v, _ := bf.Int64()
	return int(v), true
}

// typeName is how a diagnostic names what a value is.
func typeName(v cty.Value) string {
	switch {
	case !v.IsKnown():
		return "a value not known until apply"
	case v.IsNull():
		return "null"
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return fmt.Sprintf("the string %q", v.AsString())
	case t == cty.Number:
		return "the number " + v.AsBigFloat().Text('g', 10)
	case t == cty.Bool:
		return "a bool"
	case t.IsObjectType() || t.IsMapType():
		return "an object"
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	}
	return t.FriendlyName()
}

// MaxRolloutWaves bounds the waves of one rollout, as MaxRolloutSteps
// bounds its steps: each wave runs every step and its analysis, so a
// longer list is a mistake, refused before any wave is decoded.
const MaxRolloutWaves = 100

// decodeRolloutWaves decodes ro.WavesExpr into ro.Waves and
// ro.WaveRanges with ctx and reports whether waves is set (absent or
// null is not); when it is, Waves is not nil, even for waves = []. A literal list of lists is decoded wave by wave and name
// by name, so that each diagnostic points at its entry; any other
// expression is evaluated whole.
func decodeRolloutWaves(ro *Rollout, ctx *hcl.EvalContext) (bool, hcl.Diagnostics) {
	ro.Waves, ro.WaveRanges = nil, nil
	if ro.WavesExpr == nil {
		return false, nil
	}
	r := ro.WavesExpr.Range()
	if tup, ok := ro.WavesExpr.(*hclsyntax.TupleConsExpr); ok {
		if n := len(tup.Exprs); n > MaxRolloutWaves {
			return true, tooManyWaves(n, r)
		}
		ro.Waves = [][]string{} // set, if empty
		var diags hcl.Diagnostics
		for i, e := range tup.Exprs {
			w, d := decodeRolloutWave(i+1, e, ctx)
			diags = append(diags, d...)
			ro.Waves = append(ro.Waves, w)
			ro.WaveRanges = append(ro.WaveRanges, e.Range())
		}
		return true, diags
	}
	val, diags := ro.WavesExpr.Value(ctx)
	if diags.HasErrors() {
		return true, diags
	}
	if val.IsNull() {
		return false, diags
	}
	if !isList(val) {
		return true, hcl.Diagnostics{stepsDiag(r, "Invalid rollout waves",
			"waves must be a list of lists of cluster names, such as [[\"staging\"], [\"eu-1\"], [\"eu-2\", \"us-1\"]]; got %s.", typeName(val))}
	}
	if n := val.LengthInt(); n > MaxRolloutWaves {
		return true, tooManyWaves(n, r)
	}
	ro.Waves = [][]string{}
	for i, it := 0, val.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		w, d := decodeRolloutWaveValue(i+1, ev, r)
		diags = append(diags, d...)
		ro.Waves = append(ro.Waves, w)
		ro.WaveRanges = append(ro.WaveRanges, r)
	}
	return true, diags
}

func tooManyWaves(n int, r hcl.Range) hcl.Diagnostics {
	return hcl.Diagnostics{stepsDiag(r, "Too many rollout waves",
		"A rollout has at most %d waves, this one has %d. Each wave runs every step and its analysis; group the clusters into fewer waves.", MaxRolloutWaves, n)}
}

// isList reports whether v is a known, non-null list, tuple or set.
func isList(v cty.Value) bool {
	if !v.IsKnown() || v.IsNull() {
		return false
	}
	t := v.Type()
	return t.IsTupleType() || t.IsListType() || t.IsSetType()
}

// decodeRolloutWave decodes wave n (1-based) from its expression.
func decodeRolloutWave(n int, e hclsyntax.Expression, ctx *hcl.EvalContext) ([]string, hcl.Diagnostics) {
	tup, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		val, diags := e.Value(ctx)
		if diags.HasErrors() {
			return nil, diags
		}
		return decodeRolloutWaveValue(n, val, e.Range())
	}
	var diags hcl.Diagnostics
	wave := make([]string, 0, len(tup.Exprs))
	for j, ne := range tup.Exprs {
		val, d := ne.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		name, d := waveName(n, j+1, val, ne.Range())
		diags = append(diags, d...)
		wave = append(wave, name)
	}
	return wave, diags
}

// decodeRolloutWaveValue decodes wave n from an evaluated value; every
// diagnostic points at r.
func decodeRolloutWaveValue(n int, val cty.Value, r hcl.Range) ([]string, hcl.Diagnostics) {
	if !isList(val) {
		return nil, hcl.Diagnostics{stepsDiag(r, "Invalid rollout wave",
			"Wave %d must be a list of cluster names, such as [\"eu-1\", \"eu-2\"]; got %s.", n, typeName(val))}
	}
	var diags hcl.Diagnostics
	wave := make([]string, 0, val.LengthInt())
	for j, it := 0, val.ElementIterator(); it.Next(); j++ {
		_, ev := it.Element()
		name, d := waveName(n, j+1, ev, r)
		diags = append(diags, d...)
		wave = append(wave, name)
	}
	return wave, diags
}

// waveName is entry j of wave n: a cluster's name.
func waveName(n, j int, val cty.Value, r hcl.Range) (string, hcl.Diagnostics) {
	if val.IsKnown() && !val.IsNull() && val.Type().IsPrimitiveType() {
		if s, err := convert.Convert(val, cty.String); err == nil {
			return s.AsString(), nil
		}
	}
	return "", hcl.Diagnostics{stepsDiag(r, "Invalid rollout wave",
		"Wave %d: entry %d must be the name of a cluster block, a string; got %s.", n, j, typeName(val))}
}
