package reconcile

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// nodeLlamaCppVersion is the node-llama-cpp the llama-kl evaluator is
// tested with.
const nodeLlamaCppVersion = "3.21.1"

// nodeLlamaCpp returns a node_modules directory holding node-llama-cpp,
// installing it (npm) into the user's cache once.
func nodeLlamaCpp(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the llama.cpp evaluator needs %s: %v", tool, err)
		}
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME, else ~/.cache
	if err != nil {
		t.Skipf("no cache directory: %v", err)
	}
	prefix := filepath.Join(cache, "gantry-test", "node-llama-cpp-"+nodeLlamaCppVersion)
	modules := filepath.Join(prefix, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "node-llama-cpp", "package.json")); err == nil {
		return modules
	}
	t.Logf("installing node-llama-cpp@%s into %s", nodeLlamaCppVersion, prefix)
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "node-llama-cpp@"+nodeLlamaCppVersion)
	cmd.Dir = prefix
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install node-llama-cpp@%s: %v\n%s", nodeLlamaCppVersion, err, out)
	}
	return modules
}

// TestEvalLlamaKL runs a real inference engine as the evaluator: llama.cpp
// (through node-llama-cpp) computes the KL divergence of a q4_0 and a
// q8_0 build from their F16 source, as llama-perplexity --kl-divergence
// does, and a gate on kl_divergence passes the q8_0 build and blocks the
// q4_0 one.
func TestEvalLlamaKL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp")
	}
	modules := nodeLlamaCpp(t)
	ctx := context.Background()
	repo := t.TempDir()
	script, err := os.ReadFile("../examples/evals/llama-kl/kl.mjs")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(repo, "evals", "kl.mjs"), string(script))
	// Node resolves node-llama-cpp from the script's directory upwards.
	if err := os.Symlink(modules, filepath.Join(repo, "node_modules")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repo, "models", "tiny.gguf")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteLlama(ctx, src, ggufgen.Tiny()); err != nil {
		t.Fatal(err)
	}
	e := &Engine{WorkDir: t.TempDir()}
	keys := map[string]string{}
	paths := map[string]string{}
	for _, method := range []string{"q4_0", "q8_0"} {
		keys[method] = strings.Repeat(method[1:2], 64) // "4…4", "8…8"
		out := filepath.Join(e.WorkDir, "builds", keys[method], "model", "model.gguf")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := compress.Quantize(ctx, src, out, compress.Options{Type: method}); err != nil {
			t.Fatal(err)
		}
		paths[method] = out
	}
	klEval := func(bound float64) spec.Eval {
		return spec.Eval{Name: "kl", Command: []string{"node", "evals/kl.mjs"}, Timeout: 5 * time.Minute,
			Env: map[string]string{"KL_REFERENCE": "models/tiny.gguf", "KL_THREADS": "2"},
			Max: map[string]float64{"kl_divergence": bound}, Min: map[string]float64{"top1_agreement": 0}}
	}
	release := func(ev spec.Eval) *spec.Release {
		return &spec.Release{Name: "tiny-chat", Model: spec.Model{Source: "models/tiny.gguf", Format: "gguf"}, Gate: &spec.Gate{Evals: []spec.Eval{ev}}}
	}
	cfg := &spec.Config{Settings: spec.Settings{Namespace: "ml"}}
	run := func(method string, ev spec.Eval) []planner.BoundCheck {
		t.Helper()
		checks, err := e.evaluate(ctx, nil, evalInput{Snap: Snapshot{Dir: repo}, Cfg: cfg, Release: release(ev), Key: keys[method], ModelPath: paths[method]})
		if err != nil {
			t.Fatal(err)
		}
		return checks
	}
	metrics := map[string]map[string]float64{}
	for _, method := range []string{"q4_0", "q8_0"} {
		start := time.Now()
		run(method, klEval(math.Inf(1)))
		ev := klEval(0)
		res, ok := e.cachedEval(planner.EvalKey(keys[method], &ev))
		if !ok {
			t.Fatalf("%s: no cached result", method)
		}
		metrics[method] = res.Metrics
		t.Logf("%s: %v (%.1fs)", method, res.Metrics, time.Since(start).Seconds())
		for _, m := range []string{"kl_divergence", "top1_agreement", "perplexity", "reference_perplexity", "tokens"} {
			if _, ok := res.Metrics[m]; !ok {
				t.Errorf("%s: the evaluator printed no %s: %v", method, m, res.Metrics)
			}
		}
	}
	q4, q8 := metrics["q4_0"]["kl_divergence"], metrics["q8_0"]["kl_divergence"]
	if !(q4 > q8 && q8 > 0) {
		t.Fatalf("KL divergence from F16: q4_0 %g, q8_0 %g; want q4_0 > q8_0 > 0", q4, q8)
	}
	if a4, a8 := metrics["q4_0"]["top1_agreement"], metrics["q8_0"]["top1_agreement"]; !(a8 >= a4 && a8 <= 1) {
		t.Errorf("top-1 agreement with F16: q4_0 %g, q8_0 %g; want q8_0 >= q4_0", a4, a8)
	}
	// A bound between the two measured values (their geometric mean):
	// the gate passes q8_0 and blocks q4_0, on the cached results.
	bound := math.Sqrt(q4 * q8)
	if b := planner.Blocked(run("q8_0", klEval(bound))); b != "" {
		t.Errorf("q8_0 blocked by max kl_divergence %g: %s", bound, b)
	}
	blocked := planner.Blocked(run("q4_0", klEval(bound)))
	if !strings.HasPrefix(blocked, "eval kl: kl_divergence = ") || !strings.Contains(blocked, " exceeds max ") || !strings.Contains(blocked, " by ") {
		t.Errorf("q4_0 with max kl_divergence %g: blocked %q", bound, blocked)
	}
	t.Logf("bound %g: q8_0 passes, q4_0: %s", bound, blocked)
}
