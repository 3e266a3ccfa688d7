package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Defaults of a rollout block.
const (
	// DefaultPrestageTimeout bounds the wait for a step's nodes to pull
	// the new model image.
	DefaultPrestageTimeout = 30 * time.Minute
	// DefaultAnalysisInterval is how often an analysis evaluates its
	// metrics.
	DefaultAnalysisInterval = time.Minute
	// DefaultFailureLimit is how many failed evaluations abort a step.
	DefaultFailureLimit = 1
	// MinAnalysisInterval is the shortest analysis interval: Prometheus
	// scrapes no faster.
	MinAnalysisInterval = time.Second
	// DefaultWavePause is how long a wave's analysis runs when the
	// rollout has waves and no steps (the pause of its implicit step).
	DefaultWavePause = 10 * time.Minute
)

// QueryFields are the fields a metric query's template may use: the
// version the query is evaluated for, a regular expression matching its
// pods' names, the release and its namespace.
var QueryFields = []string{"Version", "Pods", "Release", "Namespace"}

var (
	// metricNameRE is a DNS label that may also hold '_', as metric
	// names in PromQL do.
	metricNameRE = regexp.MustCompile(`^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)
	// subdomainRE is a DNS subdomain (RFC 1123), what a Gateway's name is.
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// rollout defaults and validates a release's rollout block. Each step
// was checked on its own when it was decoded; here the steps are checked
// against each other, the release and the analysis.
func (v *validator) rollout(r *Release) {
	ro := r.Rollout
	if ro == nil {
		return
	}
	switch ro.Traffic {
	case "":
		ro.Traffic = "service"
	case "service", "gateway":
	default:
		v.errorf(v.attr(ro.DefRange, "traffic"), "Invalid traffic", "traffic must be \"service\" (both versions behind the release's Service, traffic follows the replicas) or \"gateway\" (an HTTPRoute with weights), not %q.", ro.Traffic)
	}
	switch {
	case ro.Traffic == "gateway" && ro.Gateway == "":
		v.errorf(v.attr(ro.DefRange, "traffic"), "Missing gateway", "traffic = \"gateway\" needs gateway = \"NAME\" or \"NAMESPACE/NAME\": the Gateway the release's HTTPRoute attaches to.")
	case ro.Gateway != "" && !validGatewayRef(ro.Gateway):
		v.errorf(v.attr(ro.DefRange, "gateway"), "Invalid gateway", "gateway must be \"NAME\" or \"NAMESPACE/NAME\" of a Gateway (a namespace of at most 63 and a name of at most 253 lowercase letters, digits, '-' and '.'), not %q.", ro.Gateway)
	case ro.Gateway != "" && ro.Traffic == "service":
		v.errorf(v.attr(ro.DefRange, "gateway"), "gateway without gateway traffic", "gateway is the Gateway of traffic = \"gateway\", but this rollout's traffic is \"service\"; set traffic = \"gateway\" or remove gateway.")
	}
	ro.PrestageTimeout = v.duration(ro.DefRange, "prestage_timeout", ro.PrestageTimeoutRaw, DefaultPrestageTimeout)
	if ro.Analysis != nil {
		v.analysis(ro.Analysis)
	}
	waves := v.rolloutWaves(r)
	v.rolloutSteps(r)
	v.rolloutPosition(ro)
	v.rolloutWavePosition(ro, waves)
}

// validGatewayRef reports whether s is "NAME" or "NAMESPACE/NAME".
func validGatewayRef(s string) bool {
	ns, name, ok := strings.Cut(s, "/")
	if !ok {
		ns, name = "", s
	} else if !dnsLabelRE.MatchString(ns) || len(ns) > 63 {
		return false
	}
	return subdomainRE.MatchString(name) && len(name) <= 253
}

func (v *validator) rolloutSteps(r *Release) {
	ro := r.Rollout
	if len(ro.Steps) == 0 {
		v.errorf(v.attr(ro.DefRange, "steps"), "No rollout steps", "A rollout needs at least one step, and its last step must give the new version every replica: end with { percent = 100 }.")
		return
	}
	autoscale := r.Autoscale != nil
	total := r.ReplicaCount()
	if v.cfg.Fleet() {
		total = r.FleetReplicas(len(v.cfg.ClustersOf(r)))
	}
	var interval time.Duration
	if a := ro.Analysis; a != nil {
		interval = a.Interval
	}
	prev, prevStep := 0, 0 // the last canary size (replicas, or percent with autoscale) and its step
	for i, s := range ro.Steps {
		n := i + 1
		size := v.stepValue(ro, s, "percent")
		if s.Replicas > 0 {
			size = v.stepValue(ro, s, "replicas")
			if !autoscale && s.Replicas >= total {
				v.errorf(size, "Canary as big as the release", "Step %d gives the new version %d replicas, but the release has %d: a replicas step must leave some on the old version. Finish with { percent = 100 } instead.", n, s.Replicas, total)
			}
		}
		switch {
		case !autoscale:
			c := s.CanaryReplicas(total)
			if prevStep > 0 && c < prev {
				v.errorf(size, "Rollout steps go backwards", "Step %d gives the new version %d of %d replicas, fewer than step %d's %d; each step must keep or grow the canary.", n, c, total, prevStep, prev)
			}
			prev, prevStep = c, n
		case s.Percent > 0:
			// The replicas of an autoscaled release move, so only
			// percent steps compare.
			if prevStep > 0 && s.Percent < prev {
				v.errorf(size, "Rollout steps go backwards", "Step %d gives the new version %d%% of the replicas, less than step %d's %d%%; each step must keep or grow the canary.", n, s.Percent, prevStep, prev)
			}
			prev, prevStep = s.Percent, n
		}
		if s.Weight != nil && ro.Traffic != "gateway" {
			v.errorf(v.stepValue(ro, s, "weight"), "weight without gateway traffic", "Step %d sets weight, the canary's share of an HTTPRoute's traffic, but this rollout's traffic is %q, where traffic follows the replicas. Set traffic = \"gateway\" or remove weight.", n, ro.Traffic)
		}
		last := n == len(ro.Steps)
		switch {
		case last && s.Pause > 0 && len(ro.Waves) == 0:
			// With waves the last step's pause gates the next wave.
			v.errorf(v.stepValue(ro, s, "pause"), "Pause on the last step", "Step %d is the last: nothing follows it, so there is nothing to pause for. Remove its pause.", n)
		case s.Pause > 0 && interval > 0 && s.Pause < interval:
			v.errorf(v.stepValue(ro, s, "pause"), "Pause shorter than the analysis interval", "Step %d pauses %s, shorter than the analysis interval of %s: no sample of the metrics could pass before the step ends. Pause for at least %s.", n, s.Pause, interval, interval)
		}
		if last && s.Percent != 100 {
			v.errorf(s.Range, "Rollout does not finish", "The last step must give the new version every replica: end with { percent = 100 }.")
		}
	}
}

// stepValue is the range of key's value in step s, or the step's range
// when the steps are not written as a literal list of objects.
func (v *validator) stepValue(ro *Rollout, s RolloutStep, key string) hcl.Range {
	if ro.ImplicitStep {
		if key == "pause" {
			return v.attr(ro.DefRange, "wave_pause")
		}
		return s.Range
	}
	b := v.syntaxBlock(ro.DefRange)
	if b == nil {
		return s.Range
	}
	a, ok := b.Body.Attributes["steps"]
	if !ok {
		return s.Range
	}
	tup, ok := a.Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return s.Range
	}
	for _, e := range tup.Exprs {
		obj, ok := e.(*hclsyntax.ObjectConsExpr)
		if !ok || e.Range() != s.Range {
			continue
		}
		for _, item := range obj.Items {
			if objectKey(item.KeyExpr) == key {
				return item.ValueExpr.Range()
			}
		}
	}
	return s.Range
}

// objectKey is the name an object item's key gives, "" when it is not a
// literal.
func objectKey(e hclsyntax.Expression) string {
	if k := hcl.ExprAsKeyword(e); k != "" {
		return k
	}
	val, diags := e.Value(nil)
	if diags.HasErrors() || !val.IsKnown() || val.IsNull() || val.Type() != cty.String {
		return ""
	}
	return val.AsString()
}

// syntaxBlock is the block defined at def, nil when it cannot be found.
func (v *validator) syntaxBlock(def hcl.Range) *hclsyntax.Block {
	f := v.cfg.Files[def.Filename]
	if f == nil {
		return nil
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	return v.block(def.Filename, body, def)
}

// hasAttr reports whether the block defined at def sets attribute name.
func (v *validator) hasAttr(def hcl.Range, name string) bool {
	b := v.syntaxBlock(def)
	if b == nil {
		return false
	}
	_, ok := b.Body.Attributes[name]
	return ok
}

// label is the range of the first label of the block defined at def.
func (v *validator) label(def hcl.Range) hcl.Range {
	if b := v.syntaxBlock(def); b != nil && len(b.LabelRanges) > 0 {
		return b.LabelRanges[0]
	}
	return def
}

func (v *validator) analysis(a *Analysis) {
	a.Interval = DefaultAnalysisInterval
	if a.IntervalRaw != "" {
		d, err := ParseDuration(a.IntervalRaw)
		switch {
		case err != nil:
			v.errorf(v.attr(a.DefRange, "interval"), "Invalid duration", "interval: %s", sentence(err))
		case d < MinAnalysisInterval:
			v.errorf(v.attr(a.DefRange, "interval"), "Analysis interval too short", "interval must be at least %s, got %s.", MinAnalysisInterval, d)
		default:
			a.Interval = d
		}
	}
	if !v.hasAttr(a.DefRange, "failure_limit") {
		a.FailureLimit = DefaultFailureLimit
	} else if a.FailureLimit < 1 {
		v.errorf(v.attr(a.DefRange, "failure_limit"), "Invalid failure_limit", "failure_limit is how many failed evaluations abort the rollout and must be at least 1, got %d.", a.FailureLimit)
	}
	if len(a.Metrics) == 0 {
		v.errorf(a.DefRange, "Analysis without metrics", "An analysis block needs at least one metric block: a query and its bounds (min, max or max_ratio_to_stable).")
	}
	seen := map[string]hcl.Range{}
	for i := range a.Metrics {
		m := &a.Metrics[i]
		if !metricNameRE.MatchString(m.Name) || len(m.Name) > 63 {
			v.errorf(v.label(m.DefRange), "Invalid metric name", "%q cannot name a metric: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit.", m.Name)
		}
		if prev, ok := seen[m.Name]; ok {
			v.errorf(v.label(m.DefRange), "Duplicate metric", "A metric named %q was already defined in this analysis. Previous definition at %s:%d.", m.Name, prev.Filename, prev.Start.Line)
		} else {
			seen[m.Name] = m.DefRange
		}
		if m.Min == nil && m.Max == nil && m.MaxRatioToStable == nil {
			v.errorf(m.DefRange, "Metric without bounds", "Metric %q needs min, max or max_ratio_to_stable: without a bound it can never fail.", m.Name)
		}
		if m.MaxRatioToStable != nil && *m.MaxRatioToStable <= 0 {
			v.errorf(v.attr(m.DefRange, "max_ratio_to_stable"), "Invalid max_ratio_to_stable", "max_ratio_to_stable bounds the canary's value divided by the stable version's and must be greater than zero, got %g.", *m.MaxRatioToStable)
		}
		if m.Min != nil && m.Max != nil && *m.Min > *m.Max {
			v.errorf(v.attr(m.DefRange, "max"), "min is greater than max", "Metric %q: min (%g) must not exceed max (%g), or no value could pass.", m.Name, *m.Min, *m.Max)
		}
		if strings.TrimSpace(m.Query) == "" {
			v.errorf(v.attr(m.DefRange, "query"), "Empty query", "Metric %q needs a PromQL query.", m.Name)
		} else if err := CheckQueryTemplate(m.Query); err != nil {
			v.errorf(v.attr(m.DefRange, "query"), "Invalid query template", "Metric %q: %s", m.Name, sentence(err))
		}
	}
}

func (v *validator) rolloutPosition(ro *Rollout) {
	if ro.Step != nil && (*ro.Step < 1 || (len(ro.Steps) > 0 && *ro.Step > len(ro.Steps))) {
		v.errorf(v.attr(ro.DefRange, "step"), "Invalid rollout step", "step is the rollout's position, from 1 to %d (the number of steps); got %d.", max(1, len(ro.Steps)), *ro.Step)
	}
	if ro.Version != "" && !isRolloutVersion(ro.Version) {
		v.errorf(v.attr(ro.DefRange, "version"), "Invalid rollout version", "version is the version the rollout's position is of: 8 lowercase hex digits, such as \"3f2a1c9d\"; got %q.", ro.Version)
	}
	switch {
	case ro.Step != nil && ro.Version == "":
		v.errorf(v.attr(ro.DefRange, "step"), "Rollout step without version", "step = %d says where the rollout is but not of which version: set version too (Gantry's promotion commits write both), or remove step.", *ro.Step)
	case ro.Step == nil && ro.Version != "":
		v.errorf(v.attr(ro.DefRange, "version"), "Rollout version without step", "version = %q says which version the rollout is of but not where it is: set step too (Gantry's promotion commits write both), or remove version.", ro.Version)
	}
}

// CheckQueryTemplate checks that a metric query is a Go text/template
// that uses only QueryFields (.Version, .Pods, .Release and .Namespace,
// each a string) and the template's built-in functions. It
// does not execute the template. range and template calls are refused:
// no field is a collection, and the query is one template.
func CheckQueryTemplate(q string) error {
	t, err := template.New("query").Parse(q)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: ")
		msg = strings.TrimPrefix(msg, "query:")
		return fmt.Errorf("the query is not a valid template: line %s", msg)
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	c := queryChecker{tree: t.Tree}
	c.node(t.Tree.Root, true)
	return c.err
}

// queryChecker walks a query template's parse tree for the first field
// or construct a query cannot have.
type queryChecker struct {
	tree *parse.Tree
	err  error
}

func (c *queryChecker) fail(n parse.Node, format string, args ...any) {
	if c.err != nil {
		return
	}
	loc, _ := c.tree.ErrorContext(n)
	line, col, _ := strings.Cut(strings.TrimPrefix(loc, "query:"), ":")
	c.err = fmt.Errorf("%s (line %s, column %s of the query)", fmt.Sprintf(format, args...), line, col)
}

var queryFieldList = ".Version, .Pods, .Release and .Namespace"

// field checks a field chain on dot (or on $, the data itself); root
// says whether dot is the data there.
func (c *queryChecker) field(n parse.Node, idents []string, root bool) {
	name := "." + strings.Join(idents, ".")
	switch {
	case !root:
		c.fail(n, "%s is a field of a value that is not the query's data (inside with, dot is a string); a query may use only %s", name, queryFieldList)
	case len(idents) > 1 && isQueryField(idents[0]):
		c.fail(n, ".%s is a string and has no field %s", idents[0], idents[1])
	case !isQueryField(idents[0]):
		c.fail(n, "the query uses %s, which is not a field of a query: it may use only %s", name, queryFieldList)
	}
}

func isQueryField(s string) bool { return slices.Contains(QueryFields, s) }

func (c *queryChecker) node(n parse.Node, root bool) {
	if n == nil || c.err != nil {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, x := range n.Nodes {
			c.node(x, root)
		}
	case *parse.ActionNode:
		c.node(n.Pipe, root)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, cmd := range n.Cmds {
			c.node(cmd, root)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			c.node(a, root)
		}
	case *parse.FieldNode:
		c.field(n, n.Ident, root)
	case *parse.DotNode:
		if root {
			c.fail(n, "the query uses . alone, the whole query data; use one of %s", queryFieldList)
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			if n.Ident[0] == "$" {
				c.field(n, n.Ident[1:], true)
			} else {
				c.fail(n, "%s is a field of a variable, and a query's variables are strings", strings.Join(n.Ident, "."))
			}
		}
	case *parse.ChainNode:
		c.node(n.Node, root)
		c.fail(n, "the query uses a field of (%s): the query's fields are strings", n.Node)
	case *parse.IfNode:
		c.node(n.Pipe, root)
		c.node(n.List, root)
		c.node(n.ElseList, root)
	case *parse.WithNode:
		c.node(n.Pipe, root)
		c.node(n.List, false)
		c.node(n.ElseList, root)
	case *parse.RangeNode:
		c.fail(n, "range is not supported in a query: none of its fields is a list")
	case *parse.TemplateNode:
		c.fail(n, "template calls are not supported in a query")
	}
}
