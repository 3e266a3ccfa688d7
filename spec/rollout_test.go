package spec

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// rolloutSrc is a release of replicas replicas (plus extra, such as an
// autoscale block) with a rollout block holding body.
func rolloutSrc(replicas int, extra, body string) string {
	return fmt.Sprintf("variable \"p\" {\n  default = 100\n}\n\nrelease \"r\" {\n  %s\n  replicas = %d\n%s\n  rollout {\n%s\n  }\n}\n", ociModel, replicas, extra, body)
}

const autoscaleBlock = `  autoscale {
    query  = "sum(x)"
    target = 1
    min    = 1
    max    = 10
  }`

func loadRollout(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "main.hcl"), src)
	return Load(context.Background(), root, LoadOptions{NoEnv: true})
}

// TestRolloutErrors loads one rollout block per case and checks the
// error's text and where it points. at marks the expected start of the
// subject: the text around it, with "|" where the range starts, found
// after the rollout block's opening.
func TestRolloutErrors(t *testing.T) {
	const ok100 = `{ percent = 100 }`
	steps := func(s ...string) string { return "    steps = [" + strings.Join(s, ", ") + "]" }
	analysis := func(body string) string {
		return steps(`{ replicas = 1, pause = "10m" }`, ok100) + "\n    analysis {\n" + body + "\n    }"
	}
	const metricX = "      metric \"m\" {\n        query = \"x\"\n        max   = 1\n      }"
	metric := func(attrs string) string {
		return analysis("      metric \"m\" {\n        " + strings.ReplaceAll(attrs, ", ", "\n        ") + "\n      }")
	}
	for _, tc := range []struct {
		name     string
		replicas int
		extra    string
		body     string
		summary  string
		want     string // in the detail
		at       string
	}{
		// Steps, one at a time (decoding).
		{"no steps", 4, "", steps(), "No rollout steps", "A rollout needs at least one step, and its last step must give the new version every replica: end with { percent = 100 }.", "steps = |[]"},
		{"steps not a list", 4, "", `    steps = "canary"`, "Invalid rollout steps", `steps must be a list of step objects, such as [{ replicas = 1, pause = "10m" }, { percent = 100 }]; got the string "canary".`, `steps = |"canary"`},
		{"step not an object", 4, "", steps(`1`, ok100), "Invalid rollout step", "Step 1 must be an object such as { percent = 50, pause = \"30m\" }; got the number 1.", "[|1,"},
		{"typo key", 4, "", steps(`{ percnt = 100 }`), "Unknown rollout step key", `Step 1: a step has no key "percnt". Did you mean "percent"?`, "{ |percnt"},
		{"unknown key", 4, "", steps(`{ percent = 100, colour = "red" }`), "Unknown rollout step key", `Step 1: a step has no key "colour"; its keys are replicas, percent, weight, pause.`, "|colour"},
		{"quoted unknown key", 4, "", steps(`{ "nope" = 1, percent = 100 }`), "Unknown rollout step key", `no key "nope"`, `{ |"nope"`},
		{"duplicate key", 4, "", steps(`{ percent = 50, percent = 100 }`), "Duplicate rollout step key", "Step 1 sets percent twice. Previous definition at", "50, |percent"},
		{"replicas and percent", 4, "", steps(`{ replicas = 1, percent = 10 }`, ok100), "Conflicting rollout step", "Step 1 sets both replicas and percent", "1, |percent"},
		{"neither", 4, "", steps(`{ pause = "10m" }`, ok100), "Incomplete rollout step", "Step 1 says neither replicas nor percent: set one, such as { replicas = 1 } or { percent = 50 }.", `[|{ pause`},
		{"replicas zero", 4, "", steps(`{ replicas = 0 }`, ok100), "Invalid rollout step", "Step 1: replicas must be a number of replicas, at least 1; got 0.", "replicas = |0"},
		{"replicas fraction", 4, "", steps(`{ replicas = 1.5 }`, ok100), "Invalid rollout step", "Step 1: replicas must be a whole number, a number of replicas, at least 1; got 1.5.", "replicas = |1.5"},
		{"replicas string", 4, "", steps(`{ replicas = "one" }`, ok100), "Invalid rollout step", `Step 1: replicas must be a number of replicas, at least 1; got the string "one".`, `replicas = |"one"`},
		{"percent over", 4, "", steps(`{ percent = 101 }`), "Invalid rollout step", "Step 1: percent must be a percent of the release's replicas, from 1 to 100; got 101.", "percent = |101"},
		{"percent zero", 4, "", steps(`{ percent = 0 }`, ok100), "Invalid rollout step", "percent must be a percent of the release's replicas, from 1 to 100; got 0.", "percent = |0"},
		{"weight over", 4, "", steps(`{ percent = 10, weight = 101 }`, ok100) + "\n    traffic = \"gateway\"\n    gateway = \"gw\"", "Invalid rollout step", "Step 1: weight must be a percent of traffic, from 0 to 100; got 101.", "weight = |101"},
		{"weight negative", 4, "", steps(`{ percent = 10, weight = -1 }`, ok100) + "\n    traffic = \"gateway\"\n    gateway = \"gw\"", "Invalid rollout step", "got -1.", "weight = |-1"},
		{"pause no unit", 4, "", steps(`{ replicas = 1, pause = "10" }`, ok100), "Invalid duration", `Step 1: pause: "10" is not a duration; write a number with a unit such as 30s, 5m or 1h.`, `pause = |"10"`},
		{"pause zero", 4, "", steps(`{ replicas = 1, pause = "0s" }`, ok100), "Invalid duration", `Step 1: pause: "0s" must be greater than zero.`, `pause = |"0s"`},
		{"pause object", 4, "", steps(`{ replicas = 1, pause = { a = 1 } }`, ok100), "Invalid duration", "Step 1: pause must be a duration string such as \"10m\"; got an object.", `pause = |{ a`},
		{"second step", 4, "", steps(`{ replicas = 1 }`, `{ percent = 1000 }`), "Invalid rollout step", "Step 2: percent must be", "percent = |1000"},
		{"step from a variable", 4, "", steps(`{ replicas = var.p }`, ok100), "Canary as big as the release", "Step 1 gives the new version 100 replicas, but the release has 4", "replicas = |var.p"},
		{"steps from a for", 4, "", `    steps = [for p in [50, 0, 100] : { percent = p }]`, "Invalid rollout step", "Step 2: percent must be a percent of the release's replicas, from 1 to 100; got 0.", "steps = |[for"},

		// Steps against each other and the release.
		{"backwards", 4, "", steps(`{ replicas = 2 }`, `{ replicas = 1 }`, ok100), "Rollout steps go backwards", "Step 2 gives the new version 1 of 4 replicas, fewer than step 1's 2; each step must keep or grow the canary.", "}, { replicas = |1"},
		// 50% of 4 is 2, 25% of 4 is 1.
		{"backwards percent", 4, "", steps(`{ percent = 50 }`, `{ percent = 25 }`, ok100), "Rollout steps go backwards", "Step 2 gives the new version 1 of 4 replicas, fewer than step 1's 2", "percent = |25"},
		// 3 replicas, then 50% of 4 = 2.
		{"backwards mixed", 4, "", steps(`{ replicas = 3 }`, `{ percent = 50 }`, ok100), "Rollout steps go backwards", "Step 2 gives the new version 2 of 4 replicas, fewer than step 1's 3", "percent = |50"},
		{"backwards autoscale", 4, autoscaleBlock, steps(`{ percent = 50 }`, `{ replicas = 1 }`, `{ percent = 20 }`, ok100), "Rollout steps go backwards", "Step 3 gives the new version 20% of the replicas, less than step 1's 50%", "percent = |20"},
		{"does not finish", 4, "", steps(`{ replicas = 1 }`, `{ percent = 50 }`), "Rollout does not finish", "The last step must give the new version every replica: end with { percent = 100 }.", "}, |{ percent = 50"},
		{"canary as big", 4, "", steps(`{ replicas = 4 }`, ok100), "Canary as big as the release", "Step 1 gives the new version 4 replicas, but the release has 4: a replicas step must leave some on the old version. Finish with { percent = 100 } instead.", "replicas = |4"},
		{"pause on last", 4, "", steps(`{ replicas = 1, pause = "5m" }`, `{ percent = 100, pause = "1h" }`), "Pause on the last step", "Step 2 is the last: nothing follows it, so there is nothing to pause for. Remove its pause.", `pause = |"1h"`},
		{"weight with service", 4, "", steps(`{ percent = 10, weight = 5 }`, ok100), "weight without gateway traffic", `Step 1 sets weight, the canary's share of an HTTPRoute's traffic, but this rollout's traffic is "service"`, "weight = |5"},

		// Traffic.
		{"traffic", 4, "", steps(ok100) + "\n    traffic = \"mesh\"", "Invalid traffic", `traffic must be "service"`, `traffic = |"mesh"`},
		{"gateway missing", 4, "", steps(ok100) + "\n    traffic = \"gateway\"", "Missing gateway", `traffic = "gateway" needs gateway = "NAME" or "NAMESPACE/NAME"`, `traffic = |"gateway"`},
		{"gateway invalid", 4, "", steps(ok100) + "\n    traffic = \"gateway\"\n    gateway = \"Infra/x\"", "Invalid gateway", `not "Infra/x".`, `gateway = |"Infra/x"`},
		{"gateway too many slashes", 4, "", steps(ok100) + "\n    traffic = \"gateway\"\n    gateway = \"a/b/c\"", "Invalid gateway", `not "a/b/c".`, `gateway = |"a/b/c"`},
		{"gateway with service", 4, "", steps(ok100) + "\n    gateway = \"infra/gw\"", "gateway without gateway traffic", `but this rollout's traffic is "service"`, `gateway = |"infra/gw"`},
		{"prestage timeout", 4, "", steps(ok100) + "\n    prestage_timeout = \"soon\"", "Invalid duration", `prestage_timeout: "soon" is not a duration`, `prestage_timeout = |"soon"`},

		// Analysis.
		{"interval", 4, "", analysis(`      interval = "fast"` + "\n" + metricX), "Invalid duration", `interval: "fast" is not a duration`, `interval = |"fast"`},
		{"interval short", 4, "", analysis(`      interval = "500ms"` + "\n" + metricX), "Analysis interval too short", "interval must be at least 1s, got 500ms.", `interval = |"500ms"`},
		{"failure limit", 4, "", analysis(`      failure_limit = 0` + "\n" + metricX), "Invalid failure_limit", "must be at least 1, got 0.", "failure_limit = |0"},
		{"no metrics", 4, "", analysis(`      interval = "1m"`), "Analysis without metrics", "An analysis block needs at least one metric block", "|analysis {"},
		{"metric name", 4, "", analysis(strings.Replace(metricX, `"m"`, `"Error Ratio"`, 1)), "Invalid metric name", `"Error Ratio" cannot name a metric`, `metric |"Error Ratio"`},
		{"duplicate metric", 4, "", analysis(metricX + "\n" + metricX), "Duplicate metric", `A metric named "m" was already defined in this analysis. Previous definition at`, "}\n      metric |\"m\""},
		{"no bounds", 4, "", metric(`query = "x"`), "Metric without bounds", `Metric "m" needs min, max or max_ratio_to_stable: without a bound it can never fail.`, `|metric "m"`},
		{"ratio zero", 4, "", metric(`query = "x", max_ratio_to_stable = 0`), "Invalid max_ratio_to_stable", "must be greater than zero, got 0.", "max_ratio_to_stable = |0"},
		{"min over max", 4, "", metric(`query = "x", min = 2, max = 1`), "min is greater than max", `Metric "m": min (2) must not exceed max (1), or no value could pass.`, "max = |1"},
		{"empty query", 4, "", metric(`query = " ", max = 1`), "Empty query", `Metric "m" needs a PromQL query.`, `query = |" "`},
		{"unknown field", 4, "", metric(`query = "sum(x{pod=~\"{{.Pod}}\"})", max = 1`), "Invalid query template", `Metric "m": the query uses .Pod, which is not a field of a query: it may use only .Version, .Pods, .Release and .Namespace (line 1, column 14 of the query).`, `query = |"sum`},
		{"field of a field", 4, "", metric(`query = "{{.Pods.Name}}", max = 1`), "Invalid query template", ".Pods is a string and has no field Name", `query = |"{{`},
		{"field in with", 4, "", metric(`query = "{{with .Pods}}{{.Version}}{{end}}", max = 1`), "Invalid query template", ".Version is a field of a value that is not the query's data", `query = |"{{`},
		{"dollar field", 4, "", metric(`query = "{{$.Nope}}", max = 1`), "Invalid query template", "the query uses .Nope", `query = |"{{`},
		{"bad template", 4, "", metric(`query = "sum({{.Pods)", max = 1`), "Invalid query template", `Metric "m": the query is not a valid template: line 1: unexpected right paren.`, `query = |"sum`},
		{"unknown function", 4, "", metric(`query = "{{lower .Pods}}", max = 1`), "Invalid query template", `function "lower" not defined`, `query = |"{{`},
		{"range", 4, "", metric(`query = "{{range 1000000000}}x{{end}}", max = 1`), "Invalid query template", "range is not supported in a query", `query = |"{{`},
		{"template call", 4, "", metric(`query = "{{define \"a\"}}x{{end}}{{template \"a\"}}", max = 1`), "Invalid query template", "template calls are not supported", `query = |"{{`},
		{"dot", 4, "", metric(`query = "{{.}}", max = 1`), "Invalid query template", "the query uses . alone", `query = |"{{`},
		{"pause under interval", 4, "", steps(`{ replicas = 1, pause = "30s" }`, ok100) + "\n    analysis {\n      interval = \"1m\"\n      metric \"m\" {\n        query = \"x\"\n        max = 1\n      }\n    }", "Pause shorter than the analysis interval", "Step 1 pauses 30s, shorter than the analysis interval of 1m0s: no sample of the metrics could pass before the step ends. Pause for at least 1m0s.", `pause = |"30s"`},
		{"pause under default interval", 4, "", steps(`{ replicas = 1, pause = "10s" }`, ok100) + "\n    analysis {\n      metric \"m\" {\n        query = \"x\"\n        max = 1\n      }\n    }", "Pause shorter than the analysis interval", "Step 1 pauses 10s", `pause = |"10s"`},

		// Position.
		{"step zero", 4, "", steps(ok100) + "\n    step = 0\n    version = \"3f2a1c9d\"", "Invalid rollout step", "step is the rollout's position, from 1 to 1 (the number of steps); got 0.", "step = |0"},
		{"step past the end", 4, "", steps(`{ replicas = 1 }`, ok100) + "\n    step = 3\n    version = \"3f2a1c9d\"", "Invalid rollout step", "from 1 to 2 (the number of steps); got 3.", "step = |3"},
		{"version upper", 4, "", steps(ok100) + "\n    step = 1\n    version = \"3F2A1C9D\"", "Invalid rollout version", `8 lowercase hex digits, such as "3f2a1c9d"; got "3F2A1C9D".`, `version = |"3F2A1C9D"`},
		{"version long", 4, "", steps(ok100) + "\n    step = 1\n    version = \"3f2a1c9d0\"", "Invalid rollout version", `got "3f2a1c9d0"`, `version = |"3f2a1c9d0"`},
		{"step without version", 4, "", steps(ok100) + "\n    step = 1", "Rollout step without version", "step = 1 says where the rollout is but not of which version", "step = |1"},
		{"version without step", 4, "", steps(ok100) + "\n    version = \"3f2a1c9d\"", "Rollout version without step", `version = "3f2a1c9d" says which version the rollout is of but not where it is`, `version = |"3f2a1c9d"`},
		{"step not whole", 4, "", steps(ok100) + "\n    step = 1.5\n    version = \"3f2a1c9d\"", "Unsuitable value type", "", "step = |1.5"},
		{"unknown attribute", 4, "", steps(ok100) + "\n    stepz = 1", "Unsupported argument", `An argument named "stepz" is not expected here.`, "|stepz"},
		{"missing steps", 4, "", "    traffic = \"service\"", "Missing required argument", `The argument "steps" is required`, "  rollout |{"},
		{"two rollout blocks", 4, "", steps(ok100) + "\n  }\n  rollout {\n    steps = [{ percent = 100 }]", "Duplicate rollout block", "", "  |rollout {\n    steps = [{ percent = 100 }]\n  }\n}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := rolloutSrc(tc.replicas, tc.extra, tc.body)
			_, diags := loadRollout(t, src)
			got := findError(t, diags, tc.summary, tc.want, src)
			before, after, ok := strings.Cut(tc.at, "|")
			if !ok {
				t.Fatalf("at %q has no |", tc.at)
			}
			from := strings.Index(src, "  rollout {")
			if tc.at[0] == '|' && strings.HasPrefix(after, "rollout {") {
				from = 0
			}
			i := strings.Index(src[from:], before+after)
			if i < 0 {
				t.Fatalf("%q is not in the source:\n%s", before+after, src)
			}
			off := from + i + len(before)
			line := strings.Count(src[:off], "\n") + 1
			col := off - strings.LastIndex(src[:off], "\n")
			if got.Subject == nil {
				t.Fatalf("%s: no subject", got.Error())
			}
			if s := got.Subject.Start; s.Line != line || s.Column != col {
				t.Errorf("%s\npoints at %d:%d, want %d:%d (%q)", got.Error(), s.Line, s.Column, line, col, tc.at)
			}
		})
	}
}

// findError is the first error of diags with the summary and want in its
// detail; the test fails without one.
func findError(t *testing.T, diags hcl.Diagnostics, summary, want, src string) *hcl.Diagnostic {
	t.Helper()
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary == summary && strings.Contains(d.Detail, want) {
			return d
		}
	}
	t.Fatalf("no error %q with %q in:\n%s\nsource:\n%s", summary, want, diags.Error(), src)
	return nil
}

// Valid rollouts load, with the defaults filled in.
func TestRolloutDefaults(t *testing.T) {
	ten, two, fifty := 10, 2, 50
	for _, tc := range []struct {
		name     string
		replicas int
		extra    string
		body     string
		want     Rollout
	}{
		{
			name: "minimal", replicas: 1,
			body: `    steps = [{ percent = 100 }]`,
			want: Rollout{Steps: []RolloutStep{{Percent: 100}}, Traffic: "service", PrestageTimeout: 30 * time.Minute},
		},
		{
			name: "the issue's example", replicas: 4,
			body: `    steps = [{ replicas = 1, pause = "10m" }, { percent = 50, pause = "30m" }, { percent = 100 }]
    traffic = "gateway"            # optional: "service" (default) or "gateway"
    gateway = "infra/inference"    # required with traffic = "gateway": NAME or NAMESPACE/NAME
    prestage_timeout = "30m"       # optional, default 30m
    analysis {
      interval      = "1m"         # default 1m
      failure_limit = 2            # default 1
      metric "error_ratio" {
        query = "sum(rate(x{pod=~\"{{.Pods}}\"}[1m]))"
        max   = 0.01
      }
      metric "ttft_p95" {
        query               = "histogram_quantile(0.95, x{version=\"{{.Version}}\", namespace=\"{{$.Namespace}}\", release=\"{{.Release}}\"})"
        max_ratio_to_stable = 1.2
      }
    }
    step    = 2
    version = "3f2a1c9d"`,
			want: Rollout{
				Steps: []RolloutStep{
					{Replicas: 1, PauseRaw: "10m", Pause: 10 * time.Minute},
					{Percent: 50, PauseRaw: "30m", Pause: 30 * time.Minute},
					{Percent: 100},
				},
				Traffic: "gateway", Gateway: "infra/inference",
				PrestageTimeoutRaw: "30m", PrestageTimeout: 30 * time.Minute,
				Analysis: &Analysis{
					IntervalRaw: "1m", Interval: time.Minute, FailureLimit: 2,
					Metrics: []AnalysisMetric{
						{Name: "error_ratio", Query: `sum(rate(x{pod=~"{{.Pods}}"}[1m]))`, Max: ptr(0.01)},
						{Name: "ttft_p95", Query: `histogram_quantile(0.95, x{version="{{.Version}}", namespace="{{$.Namespace}}", release="{{.Release}}"})`, MaxRatioToStable: ptr(1.2)},
					},
				},
				Step: &two, Version: "3f2a1c9d",
			},
		},
		{
			name: "analysis defaults, weights, a one-replica canary of two", replicas: 2,
			body: `    steps = [{ replicas = 1, weight = 10, pause = "1m" }, { percent = 50, weight = 50 }, { percent = 100 }]
    traffic = "gateway"
    gateway = "gw"
    analysis {
      metric "up" {
        query = "up"
        min   = 1
      }
    }`,
			want: Rollout{
				Steps: []RolloutStep{
					{Replicas: 1, Weight: &ten, PauseRaw: "1m", Pause: time.Minute},
					{Percent: 50, Weight: &fifty},
					{Percent: 100},
				},
				Traffic: "gateway", Gateway: "gw", PrestageTimeout: 30 * time.Minute,
				Analysis: &Analysis{Interval: time.Minute, FailureLimit: 1, Metrics: []AnalysisMetric{{Name: "up", Query: "up", Min: ptr(1.0)}}},
			},
		},
		{
			// With autoscale a replicas step may be any size, and only
			// percent steps must grow.
			name: "autoscale", replicas: 2, extra: autoscaleBlock,
			body: `    steps = [{ percent = 10 }, { replicas = 5 }, { replicas = 1 }, { percent = 100 }]`,
			want: Rollout{
				Steps:   []RolloutStep{{Percent: 10}, {Replicas: 5}, {Replicas: 1}, {Percent: 100}},
				Traffic: "service", PrestageTimeout: 30 * time.Minute,
			},
		},
		{
			name: "variables, a for expression, quoted keys and nulls", replicas: 3,
			body: `    steps = [for p in [34, var.p] : { "percent" = p, weight = null }]`,
			want: Rollout{
				Steps:   []RolloutStep{{Percent: 34}, {Percent: 100}},
				Traffic: "service", PrestageTimeout: 30 * time.Minute,
			},
		},
		{
			name: "steps of a variable", replicas: 3,
			body: `    steps = [{ replicas = 2 }, { percent = var.p }]
    prestage_timeout = "2h"`,
			want: Rollout{
				Steps:              []RolloutStep{{Replicas: 2}, {Percent: 100}},
				Traffic:            "service",
				PrestageTimeoutRaw: "2h", PrestageTimeout: 2 * time.Hour,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := loadRollout(t, rolloutSrc(tc.replicas, tc.extra, tc.body))
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			r, _ := cfg.Release("r")
			ignore := cmp.FilterPath(func(p cmp.Path) bool {
				s := p.Last().String()
				return strings.HasSuffix(s, "DefRange") || s == ".Range" || s == ".StepsExpr" || s == ".WavesExpr"
			}, cmp.Ignore())
			if d := cmp.Diff(&tc.want, r.Rollout, ignore); d != "" {
				t.Errorf("rollout (-want +got):\n%s", d)
			}
			for i, s := range r.Rollout.Steps {
				if s.Range.Filename == "" || s.Range.Start.Line == 0 {
					t.Errorf("step %d has no range", i+1)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// Each step of a literal list has its own object's range.
func TestRolloutStepRanges(t *testing.T) {
	src := rolloutSrc(4, "", "    steps = [\n      { replicas = 1 },\n      { percent = 100 },\n    ]")
	cfg, diags := loadRollout(t, src)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	r, _ := cfg.Release("r")
	for i, want := range []string{"{ replicas = 1 }", "{ percent = 100 }"} {
		rg := r.Rollout.Steps[i].Range
		if got := src[rg.Start.Byte:rg.End.Byte]; got != want {
			t.Errorf("step %d range holds %q, want %q", i+1, got, want)
		}
	}
}

func TestCanaryReplicas(t *testing.T) {
	for _, tc := range []struct {
		step        RolloutStep
		total, want int
	}{
		{RolloutStep{Replicas: 1}, 4, 1},
		{RolloutStep{Replicas: 9}, 4, 4},
		{RolloutStep{Percent: 50}, 4, 2},
		{RolloutStep{Percent: 10}, 4, 1},  // 0.4 rounds up
		{RolloutStep{Percent: 34}, 3, 2},  // 1.02 rounds up
		{RolloutStep{Percent: 100}, 7, 7}, //
		{RolloutStep{Percent: 100}, 0, 0},
	} {
		if got := tc.step.CanaryReplicas(tc.total); got != tc.want {
			t.Errorf("%+v.CanaryReplicas(%d) = %d, want %d", tc.step, tc.total, got, tc.want)
		}
	}
}

func TestCheckQueryTemplate(t *testing.T) {
	for _, q := range []string{
		"up",
		`sum(rate(x{pod=~"{{.Pods}}"}[1m]))`,
		`{{.Version}} {{.Release}} {{.Namespace}} {{$.Pods}}`,
		`{{if .Version}}{{.Pods | printf "%s"}}{{else}}x{{end}}`,
		`{{with $p := .Pods}}{{$p}}{{$.Version}}{{.}}{{end}}`,
		`{{/* a comment */}}{{printf "%q" .Pods}}`,
	} {
		if err := CheckQueryTemplate(q); err != nil {
			t.Errorf("CheckQueryTemplate(%q): %v", q, err)
		}
	}
	for q, want := range map[string]string{
		"{{.Podz}}":                    "the query uses .Podz",
		"{{$x := .Pods}}{{$x.Y}}":      "$x.Y is a field of a variable",
		"{{(.Pods).Y}}":                "a field of (.Pods)",
		"{{if .Pods}}{{.Nope}}{{end}}": "the query uses .Nope",
		"{{":                           "not a valid template",
	} {
		if err := CheckQueryTemplate(q); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckQueryTemplate(%q) = %v, want %q", q, err, want)
		}
	}
}
