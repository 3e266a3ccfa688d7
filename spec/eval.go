package spec

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions are the functions expressions may call: the common part of the
// cty standard library under the names Terraform users know.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,
		"pow": stdlib.PowFunc, "signum": stdlib.SignumFunc, "log": stdlib.LogFunc,
		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
		"replace": stdlib.ReplaceFunc, "split": stdlib.SplitFunc, "strrev": stdlib.ReverseFunc,
		"substr": stdlib.SubstrFunc, "title": stdlib.TitleFunc, "trim": stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace": stdlib.TrimSpaceFunc, "strlen": stdlib.StrlenFunc,
		"coalesce": stdlib.CoalesceFunc, "coalescelist": stdlib.CoalesceListFunc,
		"compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc,
		"index": stdlib.IndexFunc, "keys": stdlib.KeysFunc, "length": stdlib.LengthFunc,
		"lookup": stdlib.LookupFunc, "merge": stdlib.MergeFunc, "range": stdlib.RangeFunc,
		"reverse": stdlib.ReverseListFunc, "setintersection": stdlib.SetIntersectionFunc,
		"setproduct": stdlib.SetProductFunc, "setunion": stdlib.SetUnionFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "values": stdlib.ValuesFunc,
		"zipmap": stdlib.ZipmapFunc, "chunklist": stdlib.ChunklistFunc,
		"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
		"csvdecode": stdlib.CSVDecodeFunc,
		"tostring":  stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)), "tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
	}
}

// variableDecl is a decoded variable block.
type variableDecl struct {
	Name     string
	Type     cty.Type
	Default  cty.Value
	DefRange hcl.Range
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
}

func decodeVariable(b *hcl.Block) (*variableDecl, hcl.Diagnostics) {
	v := &variableDecl{Name: b.Labels[0], Type: cty.DynamicPseudoType, DefRange: b.DefRange}
	if !hclsyntax.ValidIdentifier(v.Name) {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Invalid variable name",
			Detail:  "A variable name must start with a letter or underscore and may contain only letters, digits, underscores, and dashes.",
			Subject: b.LabelRanges[0].Ptr(),
		}}
	}
	content, diags := b.Body.Content(variableSchema)
	if a, ok := content.Attributes["type"]; ok {
		ty, d := typeexpr.TypeConstraint(a.Expr)
		diags = append(diags, d...)
		if !d.HasErrors() {
			v.Type = ty
		}
	}
	if a, ok := content.Attributes["default"]; ok {
		val, d := a.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "Invalid default value for variable",
					Detail:  fmt.Sprintf("This default value is not compatible with the variable's type constraint: %s.", err),
					Subject: a.Expr.Range().Ptr(),
				})
				v.Default = cty.DynamicVal // reported; do not also say it is missing
			} else {
				v.Default = cv
			}
		}
	}
	return v, diags
}

// variableValue resolves one variable from, in order: opts.Vars,
// the environment (GANTRY_VAR_name) and the default.
func variableValue(v *variableDecl, opts LoadOptions) (cty.Value, hcl.Diagnostics) {
	raw, ok := opts.Vars[v.Name]
	src := "-var"
	if !ok && !opts.NoEnv {
		raw, ok = os.LookupEnv("GANTRY_VAR_" + v.Name)
		src = "GANTRY_VAR_" + v.Name
	}
	if !ok {
		if v.Default == cty.NilVal {
			return cty.DynamicVal, hcl.Diagnostics{{
				Severity: hcl.DiagError, Summary: "No value for required variable",
				Detail:  fmt.Sprintf("The variable %q has no default, so a value must be set with -var %s=VALUE or GANTRY_VAR_%s.", v.Name, v.Name, v.Name),
				Subject: v.DefRange.Ptr(),
			}}
		}
		return v.Default, nil
	}
	var val cty.Value
	if v.Type == cty.String || v.Type == cty.DynamicPseudoType {
		val = cty.StringVal(raw)
	} else {
		expr, diags := hclsyntax.ParseExpression([]byte(raw), src, hcl.InitialPos)
		if diags.HasErrors() {
			return cty.DynamicVal, diags
		}
		val, diags = expr.Value(nil)
		if diags.HasErrors() {
			return cty.DynamicVal, diags
		}
	}
	cv, err := convert.Convert(val, v.Type)
	if err != nil {
		return cty.DynamicVal, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Invalid value for variable",
			Detail:  fmt.Sprintf("The value of %q from %s does not fit its type: %s.", v.Name, src, err),
			Subject: v.DefRange.Ptr(),
		}}
	}
	return cv, nil
}

// undeclaredVars reports each -var that names no variable block, as
// Terraform does: a typo there would otherwise leave the default in place
// without a word. The diagnostics have no subject (the mistake is on the
// command line, not in a file) and never repeat the value, which may be a
// secret.
func undeclaredVars(set map[string]string, declared map[string]bool) hcl.Diagnostics {
	names := make([]string, 0, len(declared))
	for n := range declared {
		names = append(names, n)
	}
	sort.Strings(names)
	var diags hcl.Diagnostics
	for _, n := range sortedKeys(set) {
		if declared[n] {
			continue
		}
		detail := fmt.Sprintf("A value for the variable %q was set with -var, but no variable block declares it.", n)
		switch best := nearest(n, names); {
		case best != "":
			detail += fmt.Sprintf(" Did you mean %q?", best)
		case len(names) > 0:
			detail += fmt.Sprintf(" Declared variables: %s.", strings.Join(names, ", "))
		default:
			detail += " The specs declare no variables."
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value for undeclared variable", Detail: detail})
	}
	return diags
}

// nearest returns the name in names closest to s by edit distance, if it is
// close enough to be a likely typo (at most a third of s, at least one
// edit), or "".
func nearest(s string, names []string) string {
	best, bestD := "", max(1, len(s)/3)+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, by bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// evalLocals evaluates locals in dependency order, reporting cycles and
// references to locals that do not exist.
func evalLocals(attrs map[string]*hcl.Attribute, vars cty.Value, funcs map[string]function.Function) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	deps := map[string][]string{}
	undeclared := map[string]bool{} // locals that refer to missing ones; not evaluated
	names := make([]string, 0, len(attrs))
	for name, a := range attrs {
		names = append(names, name)
		for _, tr := range a.Expr.Variables() {
			if tr.RootName() != "local" || len(tr) < 2 {
				continue
			}
			if s, ok := tr[1].(hcl.TraverseAttr); ok {
				if _, exists := attrs[s.Name]; !exists {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError, Summary: "Reference to undeclared local value",
						Detail:  fmt.Sprintf("A local value named %q has not been declared.", s.Name),
						Subject: tr.SourceRange().Ptr(),
					})
					undeclared[name] = true
					continue
				}
				deps[name] = append(deps[name], s.Name)
			}
		}
	}
	sort.Strings(names)
	out := map[string]cty.Value{}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, stack []string) bool
	visit = func(n string, stack []string) bool {
		switch state[n] {
		case 2:
			return true
		case 1:
			a := attrs[n]
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Cycle in local values",
				Detail:  fmt.Sprintf("The local values refer to each other in a cycle: %s -> %s.", strings.Join(stack, " -> "), n),
				Subject: a.NameRange.Ptr(),
			})
			return false
		}
		state[n] = 1
		for _, d := range deps[n] {
			if !visit(d, append(stack, n)) {
				return false
			}
		}
		if undeclared[n] {
			state[n] = 2
			out[n] = cty.DynamicVal
			return true
		}
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": vars, "local": cty.ObjectVal(out)},
			Functions: funcs,
		}
		v, d := attrs[n].Expr.Value(ctx)
		diags = append(diags, d...)
		out[n] = v
		state[n] = 2
		return true
	}
	for _, n := range names {
		if state[n] == 0 {
			visit(n, nil)
		}
	}
	return out, diags
}
