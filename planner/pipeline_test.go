package planner_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

func withPipeline(t *testing.T) spec.Config {
	t.Helper()
	cfg := quickstart(t)
	r := &cfg.Releases[0]
	half := 0.5
	r.Model.Adapters = []spec.Adapter{
		{Source: "adapters/sql", Digest: "sha256:" + strings.Repeat("1", 64)},
		{Source: "adapters/chat", Digest: "sha256:" + strings.Repeat("2", 64), Scale: &half},
	}
	r.Gate.Evals = []spec.Eval{{Name: "kl", Command: []string{"node", "kl.mjs"},
		Max: map[string]float64{"kl_divergence": 0.05}, MaxRatioToBaseline: map[string]float64{"perplexity": 1.02}}}
	return cfg
}

func TestPipelineActions(t *testing.T) {
	cfg := withPipeline(t)
	p := build(t, cfg, planner.Observed{})
	var got []string
	for _, a := range p.Actions {
		if a.Release == "tiny-chat" && a.Type.IsBuild() {
			got = append(got, fmt.Sprintf("%s %s", a.Type, a.Subject))
		}
	}
	key := planner.ContentKey(&cfg.Releases[0])
	want := []string{
		"fuse adapters/sql", "fuse adapters/chat",
		"quantize models/tiny-llama",
		"gate tiny-chat",
		"eval tiny-chat kl",
		"push gantry.local/models/tiny-chat:" + planner.ImageTag(key),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("build actions (-want +got):\n%s", d)
	}
	if s := p.Summary(); s.Fuse != 2 || s.Eval != 1 {
		t.Errorf("summary %+v", s)
	}
	var text bytes.Buffer
	if err := planner.WriteText(&text, &p, planner.TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"* eval tiny-chat kl", "kl_divergence <= 0.05", "perplexity <= 1.02 × the serving build's",
		"* fuse adapters/chat", "scale 0.5", "Build: 2 to fuse, 2 to quantize, 1 to gate, 1 to evaluate, 2 to push."} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text plan lacks %q:\n%s", w, text.String())
		}
	}

	// A cached result of this evaluator on this build is shown with its
	// bounds; one of another build (another key) is not.
	ev := &cfg.Releases[0].Gate.Evals[0]
	obs := planner.Observed{Evals: map[string]planner.EvalResult{
		planner.EvalKey(key, ev):                     {Metrics: map[string]float64{"kl_divergence": 0.08, "perplexity": 9}},
		planner.EvalKey(strings.Repeat("0", 64), ev): {Metrics: map[string]float64{"kl_divergence": 0.01}},
	}}
	p = build(t, cfg, obs)
	for _, a := range p.Actions {
		if a.Type != planner.Eval {
			continue
		}
		if a.Eval == nil || a.Eval.Cached == nil || a.Eval.Cached.Metrics["kl_divergence"] != 0.08 {
			t.Fatalf("eval action %+v", a.Eval)
		}
		if !strings.Contains(a.Reason, "kl_divergence = 0.08 exceeds max 0.05 by 0.03") {
			t.Errorf("reason %q", a.Reason)
		}
	}
}

func TestContentKeyAdapters(t *testing.T) {
	cfg := withPipeline(t)
	r := cfg.Releases[0]
	k := planner.ContentKey(&r)
	plain := quickstart(t).Releases[0]
	if k == planner.ContentKey(&plain) {
		t.Fatal("adapters do not change the content key")
	}
	swapped := r
	swapped.Model.Adapters = []spec.Adapter{r.Model.Adapters[1], r.Model.Adapters[0]}
	rescaled := r
	two := 2.0
	rescaled.Model.Adapters = []spec.Adapter{r.Model.Adapters[0], {Source: "adapters/chat", Digest: r.Model.Adapters[1].Digest, Scale: &two}}
	moved := r
	moved.Model.Adapters = []spec.Adapter{{Source: "elsewhere/sql", Digest: r.Model.Adapters[0].Digest}, r.Model.Adapters[1]}
	evals := r
	evals.Gate = &spec.Gate{}
	if planner.ContentKey(&swapped) == k || planner.ContentKey(&rescaled) == k {
		t.Error("the order or the scale of adapters does not change the content key")
	}
	if planner.ContentKey(&moved) != k || planner.ContentKey(&evals) != k {
		t.Error("an adapter's path, or the gate, changes the content key: only content does")
	}
}

func TestCheckEval(t *testing.T) {
	ev := &spec.Eval{Name: "q", Min: map[string]float64{"acc": 0.6}, Max: map[string]float64{"kl": 0.05},
		MaxRatioToBaseline: map[string]float64{"ppl": 1.02}}
	cand := map[string]float64{"acc": 0.55, "kl": 0.01, "ppl": 10.5}
	checks := planner.CheckEval(ev, cand, map[string]float64{"ppl": 10}, "")
	var got []string
	for _, c := range checks {
		got = append(got, fmt.Sprintf("%v %s", c.OK, c))
	}
	want := []string{
		"false acc = 0.55 is below min 0.6 by 0.05",
		"true kl = 0.01 <= max 0.05",
		"false ppl = 10.5 exceeds 1.02 × baseline 10 = 10.2 by 0.3 (ratio 1.05)",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if b := planner.Blocked(checks); !strings.Contains(b, "eval q: acc = 0.55 is below min 0.6 by 0.05; eval q: ppl = 10.5 exceeds") {
		t.Errorf("blocked %q", b)
	}
	// No baseline: the ratio is skipped, with the reason; a missing
	// metric fails.
	checks = planner.CheckEval(ev, map[string]float64{"acc": 0.7, "ppl": 50}, nil, "nothing serves yet")
	if planner.Blocked(checks) != "eval q: kl is missing from the output of eval q" {
		t.Errorf("blocked %q", planner.Blocked(checks))
	}
	if s := checks[len(checks)-1].String(); !strings.Contains(s, "not checked: nothing serves yet") {
		t.Errorf("skipped ratio %q", s)
	}
}
