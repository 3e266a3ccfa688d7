package spec

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRolloutInvalidGolden loads each repository under
// testdata/rollout/invalid-* and compares the printed diagnostics, with
// their file:line:col and source lines, with the golden file beside it
// (refresh with -update).
func TestRolloutInvalidGolden(t *testing.T) {
	for name, mentions := range map[string][]string{
		"invalid-steps": {
			`main.hcl:14:9`, `Step 1: a step has no key "replica". Did you mean "replicas"?`,
			`main.hcl:15:31`, `Step 2: pause: "30" is not a duration`,
			`main.hcl:16:23`, "Step 3 sets both replicas and percent",
			`main.hcl:17:7`, "Step 4 says neither replicas nor percent",
			`main.hcl:18:19`, "Step 5: percent must be a whole number",
			`main.hcl:18:35`, "Step 5: weight must be a percent of traffic, from 0 to 100; got 200.",
			`main.hcl:19:7`, `Step 6 must be an object such as { percent = 50, pause = "30m" }; got the string "all at once".`,
		},
		"invalid-rollout": {
			`main.hcl:13:41`, "weight without gateway traffic",
			`main.hcl:13:60`, "Step 2 gives the new version 4 replicas, but the release has 4",
			`main.hcl:13:71`, "Step 2 pauses 20s, shorter than the analysis interval of 30s",
			`main.hcl:13:92`, "Step 3 gives the new version 1 of 4 replicas, fewer than step 2's 4",
			`main.hcl:13:104`, "Step 3 is the last: nothing follows it",
			`main.hcl:13:80`, "The last step must give the new version every replica: end with { percent = 100 }.",
			`main.hcl:15:15`, `gateway is the Gateway of traffic = "gateway"`,
			`main.hcl:19:23`, "failure_limit is how many failed evaluations abort the rollout and must be at least 1, got -1.",
			`main.hcl:22:17`, "the query uses .Pod, which is not a field of a query",
			`main.hcl:24:17`, `Metric "error_ratio": min (0.5) must not exceed max (0.01)`,
			`main.hcl:26:14`, `A metric named "error_ratio" was already defined in this analysis. Previous definition at testdata/rollout/invalid-rollout/main.hcl:21.`,
			`main.hcl:28:31`, "max_ratio_to_stable bounds the canary's value",
			`main.hcl:30:14`, `"TTFT" cannot name a metric`,
			`main.hcl:30:7`, `Metric "TTFT" needs min, max or max_ratio_to_stable`,
			`main.hcl:31:17`, `Metric "TTFT" needs a PromQL query.`,
			`main.hcl:35:15`, "from 1 to 3 (the number of steps); got 4.",
			`main.hcl:36:15`, `got "HEAD"`,
			`main.hcl:51:24`, `traffic = "gateway" needs gateway`,
			`main.hcl:52:24`, `prestage_timeout: "forever" is not a duration`,
			`main.hcl:53:5`, "An analysis block needs at least one metric block",
			`main.hcl:54:15`, `version = "3f2a1c9d" says which version the rollout is of but not where it is`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			invalidGolden(t, filepath.Join("testdata", "rollout", name), mentions)
		})
	}
}

// invalidGolden loads the repository dir, which must fail with every
// diagnostic in a file, compares the printed diagnostics with dir's
// golden file, checks that they hold each of mentions and returns them.
func invalidGolden(t *testing.T, dir string, mentions []string) string {
	t.Helper()
	cfg, diags := Load(context.Background(), dir, LoadOptions{NoEnv: true})
	if !diags.HasErrors() {
		t.Fatal("no errors")
	}
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Start.Line == 0 {
			t.Errorf("diagnostic %q has no source range", d.Summary)
		}
	}
	out := renderDiags(t, cfg.Files, diags)
	golden(t, dir+".golden", out)
	for _, m := range mentions {
		if !strings.Contains(out, m) {
			t.Errorf("diagnostics lack %q", m)
		}
	}
	return out
}

// gantry fmt keeps a rollout block whole: every step, attribute, nested
// block and comment, only re-spaced, and the result loads as the same
// rollout.
func TestFormatRollout(t *testing.T) {
	in := readFile(t, filepath.Join("testdata", "rollout", "fmt.in.hcl"))
	out, diags := Format("fmt.in.hcl", in)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	golden(t, filepath.Join("testdata", "rollout", "fmt.golden"), string(out))
	squash := func(b []byte) string { return strings.Join(strings.Fields(string(b)), "") }
	if squash(in) != squash(out) {
		t.Errorf("formatting changed more than spacing:\n%s", out)
	}
	again, _ := Format("fmt.golden", out)
	if !bytes.Equal(again, out) {
		t.Error("formatting is not idempotent")
	}
	load := func(src []byte) *Rollout {
		cfg, diags := loadRollout(t, string(src))
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		r, _ := cfg.Release("tiny-chat")
		return r.Rollout
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		s := p.Last().String()
		return strings.HasSuffix(s, "DefRange") || s == ".Range" || s == ".StepsExpr" || s == ".WavesExpr"
	}, cmp.Ignore())
	before, after := load(in), load(out)
	if d := cmp.Diff(before, after, ignore); d != "" {
		t.Errorf("rollout after formatting (-before +after):\n%s", d)
	}
	if len(after.Steps) != 3 || after.Analysis == nil || len(after.Analysis.Metrics) != 2 || after.Step == nil || *after.Step != 2 {
		t.Errorf("formatted rollout lost parts: %+v", after)
	}
	// The position reads the same before and after.
	p1, _, _ := ReleasePartsOf(in, "in.hcl", "tiny-chat")
	p2, _, _ := ReleasePartsOf(out, "out.hcl", "tiny-chat")
	if p1.Position != `step=2 version="3f2a1c9d"` || p1.Position != p2.Position {
		t.Errorf("Position %q before formatting, %q after", p1.Position, p2.Position)
	}
}
