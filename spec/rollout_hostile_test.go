package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Hostile rollout blocks: huge or deeply nested steps, huge queries and
// many metrics must each give a few clear errors, quickly.
func TestRolloutHostile(t *testing.T) {
	many := func(n int, step string) string {
		return "    steps = [" + strings.TrimSuffix(strings.Repeat(step+", ", n), ", ") + "]"
	}
	metrics := func(n int) string {
		var b strings.Builder
		b.WriteString("    steps = [{ replicas = 1, pause = \"10m\" }, { percent = 100 }]\n    analysis {\n")
		for range n {
			b.WriteString("      metric \"m\" {\n        query = \"up\"\n        max   = 1\n      }\n")
		}
		b.WriteString("    }")
		return b.String()
	}
	for _, tc := range []struct {
		name    string
		body    string
		summary string
		want    string
		max     int // most errors allowed
	}{
		{"ten thousand steps", many(10000, "{ percent = 100 }"), "Too many rollout steps", "A rollout has at most 100 steps, this one has 10000.", 1},
		{"ten thousand bad steps", many(10000, `{ nope = [1, 2, 3], pause = "x" }`), "Too many rollout steps", "this one has 10000", 1},
		{"a thousand steps from a for", `    steps = [for i in range(1000) : { percent = 100 }]`, "Too many rollout steps", "this one has 1000.", 1},
		{"a hundred bad steps", many(100, `{ percnt = 5 }`), "Unknown rollout step key", `Step 100: a step has no key "percnt". Did you mean "percent"?`, 100},
		{"deeply nested list", "    steps = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "Invalid rollout step", "Step 1 must be an object", 1},
		{"deeply nested pause", "    steps = [{ replicas = 1, pause = " + strings.Repeat("{ a = ", 2000) + "1" + strings.Repeat(" }", 2000) + " }, { percent = 100 }]", "Invalid duration", "Step 1: pause must be a duration string", 1},
		{"deeply nested key", "    steps = [{ percent = " + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + " }]", "Invalid rollout step", "Step 1: percent must be a percent of the release's replicas, from 1 to 100; got a list.", 1},
		{"huge number", "    steps = [{ percent = 1e400 }]", "Invalid rollout step", "percent must be a percent of the release's replicas, from 1 to 100; got 1e+400.", 1},
		{"huge query", "    steps = [{ replicas = 1, pause = \"10m\" }, { percent = 100 }]\n    analysis {\n      metric \"m\" {\n        query = \"" + strings.Repeat("{{.Pods}}", 100000) + "{{.Nope}}\"\n        max = 1\n      }\n    }", "Invalid query template", "the query uses .Nope", 1},
		{"nested query", "    steps = [{ replicas = 1, pause = \"10m\" }, { percent = 100 }]\n    analysis {\n      metric \"m\" {\n        query = \"" + strings.Repeat("{{if .Pods}}", 2000) + "{{.Nope}}" + strings.Repeat("{{end}}", 2000) + "\"\n        max = 1\n      }\n    }", "Invalid query template", "the query uses .Nope", 1},
		{"ten thousand metrics", metrics(10000), "Duplicate metric", `A metric named "m" was already defined`, 9999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkHostile(t, rolloutSrc(4, "", tc.body), tc.summary, tc.want, tc.max)
		})
	}
}

// checkHostile loads src and checks that it takes under 10s and gives
// the error summary with want in its detail (none is wanted when summary
// is ""), at most max errors, each with a source range.
func checkHostile(t *testing.T, src, summary, want string, max int) {
	t.Helper()
	start := time.Now()
	_, diags := loadRollout(t, src)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Load took %s", d)
	}
	var errs hcl.Diagnostics
	found := summary == ""
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		errs = append(errs, d)
		if d.Summary == summary && strings.Contains(d.Detail, want) {
			found = true
		}
		if d.Subject == nil || d.Subject.Start.Line == 0 {
			t.Errorf("%q has no source range", d.Summary)
		}
	}
	if !found {
		t.Fatalf("no error %q with %q; got %d errors, the first: %v", summary, want, len(errs), first(errs))
	}
	if len(errs) > max {
		t.Errorf("%d errors, want at most %d; the first: %v", len(errs), max, first(errs))
	}
}

func first(diags hcl.Diagnostics) string {
	if len(diags) == 0 {
		return "none"
	}
	return diags[0].Error()
}
