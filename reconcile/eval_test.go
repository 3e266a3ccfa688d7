package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// evalScript is a plain evaluator: it counts its runs (a line per run in
// $RUNS), logs a line, and prints the metric it reads from the model
// directory's "score" file.
const evalScript = `#!/bin/sh
echo run >> "$RUNS"
echo "evaluating $GANTRY_MODEL" >&2
echo "a log line that is not JSON"
printf '{"score": %s, "tokens": 3}\n' "$(cat "$GANTRY_MODEL_DIR/score")"
`

type evalFixture struct {
	t     *testing.T
	e     *Engine
	snap  Snapshot
	cfg   *spec.Config
	runs  string
	log   *bytes.Buffer
	store *registry.Layout
}

func newEvalFixture(t *testing.T) *evalFixture {
	t.Helper()
	repo := t.TempDir()
	writeFile(t, filepath.Join(repo, "evals", "score.sh"), evalScript)
	log := &bytes.Buffer{}
	f := &evalFixture{t: t, snap: Snapshot{Dir: repo}, runs: filepath.Join(t.TempDir(), "runs"), log: log,
		store: registry.NewLayout(t.TempDir())}
	f.e = &Engine{WorkDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&syncWriter{w: log}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	f.cfg = &spec.Config{Settings: spec.Settings{Namespace: "ml"}}
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// model makes a safetensors-shaped model directory whose evaluator score
// is score.
func model(t *testing.T, dir string, score float64) string {
	t.Helper()
	writeFile(t, filepath.Join(dir, "config.json"), "{}")
	writeFile(t, filepath.Join(dir, "score"), strconv.FormatFloat(score, 'g', -1, 64))
	return dir
}

func (f *evalFixture) release(evs ...spec.Eval) *spec.Release {
	for i := range evs {
		if evs[i].Env == nil {
			evs[i].Env = map[string]string{}
		}
		evs[i].Env["RUNS"] = f.runs
	}
	return &spec.Release{Name: "chat", Model: spec.Model{Source: "models/chat", Format: "safetensors", Digest: "sha256:" + strings.Repeat("a", 64)},
		Gate: &spec.Gate{Evals: evs}}
}

func (f *evalFixture) runCount() int {
	data, err := os.ReadFile(f.runs)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Count(string(data), "run\n")
}

// serving is an observed Deployment of release chat serving build key
// with replicas replicas.
func serving(name, key, version string, replicas int) planner.Object {
	labels := map[string]any{planner.LabelRelease: "chat", planner.LabelManagedBy: planner.ManagedBy}
	if version != "" {
		labels[planner.LabelVersion] = version
	}
	return planner.Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ml", Name: name, Manifest: map[string]any{
		"metadata": map[string]any{"name": name, "labels": labels, "annotations": map[string]any{planner.AnnotationContentKey: key}},
		"spec":     map[string]any{"replicas": int64(replicas)},
	}}
}

var (
	candKey = strings.Repeat("c", 64)
	baseKey = strings.Repeat("b", 64)
)

func scoreEval(name string) spec.Eval {
	return spec.Eval{Name: name, Command: []string{"sh", "evals/score.sh"}, Timeout: time.Minute}
}

func TestEvalPassesAndBlocks(t *testing.T) {
	f := newEvalFixture(t)
	ctx := context.Background()
	cand := model(t, filepath.Join(t.TempDir(), "model"), 0.75)

	pass := scoreEval("acc")
	pass.Min = map[string]float64{"score": 0.7}
	pass.Max = map[string]float64{"tokens": 10}
	r := f.release(pass)
	checks, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 2 || planner.Blocked(checks) != "" {
		t.Fatalf("checks %+v blocked %q, want two passing", checks, planner.Blocked(checks))
	}
	if checks[0].Metric != "score" || checks[0].Value != 0.75 || checks[1].Metric != "tokens" || checks[1].Value != 3 {
		t.Errorf("checks %+v: want score 0.75 then tokens 3", checks)
	}

	block := scoreEval("acc")
	block.Min = map[string]float64{"score": 0.8}
	block.Max = map[string]float64{"tokens": 2}
	r = f.release(block)
	checks, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	want := "eval acc: score = 0.75 is below min 0.8 by 0.05; eval acc: tokens = 3 exceeds max 2 by 1"
	if got := planner.Blocked(checks); got != want {
		t.Fatalf("blocked:\n got %q\nwant %q", got, want)
	}
	// The bounds are not part of the eval key: tightening them ran nothing.
	if n := f.runCount(); n != 1 {
		t.Errorf("the evaluator ran %d times, want 1 (the second gate reads the cached result)", n)
	}
	missing := scoreEval("acc")
	missing.Min = map[string]float64{"f1": 0.5}
	checks, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(missing), Key: candKey, ModelPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	if got := planner.Blocked(checks); got != "eval acc: f1 is missing from the output of eval acc" {
		t.Errorf("missing metric: blocked %q", got)
	}
}

func TestEvalRatioToBaseline(t *testing.T) {
	f := newEvalFixture(t)
	ctx := context.Background()
	cand := model(t, filepath.Join(t.TempDir(), "model"), 10.5)
	ev := scoreEval("ppl")
	ev.MaxRatioToBaseline = map[string]float64{"score": 1.02}
	r := f.release(ev)

	// Nothing serves: the ratio bound is skipped, saying why.
	checks, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1 || !checks[0].OK || checks[0].Skipped != NoBaseline {
		t.Fatalf("first release: %+v, want a skipped ratio bound (%q)", checks, NoBaseline)
	}
	if got := checks[0].String(); got != "score = 10.5; max_ratio_to_baseline 1.02 not checked: nothing serves yet" {
		t.Errorf("skipped check says %q", got)
	}
	// The candidate itself serves: skipped too.
	obs := planner.Observed{Objects: []planner.Object{serving("chat-n1", candKey, "", 1)}}
	checks, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand, Observed: obs})
	if err != nil {
		t.Fatal(err)
	}
	if checks[0].Skipped != CandidateServes {
		t.Errorf("candidate serving: %+v", checks[0])
	}

	// The serving build is in the build cache.
	model(t, filepath.Join(f.e.WorkDir, "builds", baseKey, "model"), 10)
	obs = planner.Observed{Objects: []planner.Object{serving("chat-n1", baseKey, "", 2)}}
	checks, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand, Observed: obs})
	if err != nil {
		t.Fatal(err)
	}
	want := "eval ppl: score = 10.5 exceeds 1.02 × baseline 10 = 10.2 by 0.3 (ratio 1.05)"
	if got := planner.Blocked(checks); got != want {
		t.Fatalf("blocked:\n got %q\nwant %q", got, want)
	}
	if n := f.runCount(); n != 2 {
		t.Errorf("%d runs, want 2: the candidate once (cached), the baseline once", n)
	}
	ev.MaxRatioToBaseline["score"] = 1.06
	checks, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(ev), Key: candKey, ModelPath: cand, Observed: obs})
	if err != nil {
		t.Fatal(err)
	}
	if planner.Blocked(checks) != "" || checks[0].Baseline == nil || *checks[0].Baseline != 10 {
		t.Errorf("looser ratio: %+v", checks)
	}
	if n := f.runCount(); n != 2 {
		t.Errorf("%d runs after a looser bound, want still 2", n)
	}
}

// The serving build only in the registry: it is pulled into
// WorkDir/sources and evaluated there.
func TestEvalBaselinePulled(t *testing.T) {
	f := newEvalFixture(t)
	ctx := context.Background()
	ev := scoreEval("ppl")
	ev.MaxRatioToBaseline = map[string]float64{"score": 1.02}
	r := f.release(ev)
	baseDir := model(t, filepath.Join(t.TempDir(), "base"), 12)
	b, err := modelFiles(baseDir, "safetensors", nil)
	if err != nil {
		t.Fatal(err)
	}
	baseRef := planner.ImageRepository(f.cfg, r.Name) + ":" + planner.ImageTag(baseKey)
	if _, err := f.e.push(ctx, f.store, f.cfg, r, baseKey, baseRef, b); err != nil {
		t.Fatal(err)
	}
	// During a rollout the stable version (most replicas besides the
	// candidate's) is the baseline, not another canary.
	obs := planner.Observed{Objects: []planner.Object{
		serving("chat-n1-aaaa", baseKey, "aaaa", 3),
		serving("chat-n1-dddd", strings.Repeat("d", 64), "dddd", 1),
		serving("chat-n2-cccc", candKey, "cccc", 4),
	}}
	cand := model(t, filepath.Join(t.TempDir(), "model"), 12.1)
	checks, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: cand, Observed: obs})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1 || !checks[0].OK || checks[0].Baseline == nil || *checks[0].Baseline != 12 {
		t.Fatalf("checks %+v, want a passing ratio against the pulled baseline's 12", checks)
	}
	pulled, _ := filepath.Glob(filepath.Join(f.e.WorkDir, "sources", "sha256-*", "score"))
	if len(pulled) != 1 {
		t.Errorf("pulled baseline files: %v", pulled)
	}
}

func TestServingKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objs    []planner.Object
		key     string
		why     string
		comment string
	}{
		{"none", nil, "", NoBaseline, "a first release"},
		{"candidate", []planner.Object{serving("a", candKey, "", 2)}, "", CandidateServes, ""},
		{"stable", []planner.Object{serving("a", baseKey, "v1", 3), serving("b", candKey, "v2", 1)}, baseKey, "", "a rollout of the candidate"},
		{"scaled to zero", []planner.Object{serving("a", baseKey, "", 0)}, "", NoBaseline, ""},
		{"most replicas", []planner.Object{serving("a", baseKey, "v1", 1), serving("b", strings.Repeat("d", 64), "v3", 1),
			serving("c", strings.Repeat("d", 64), "v3", 1)}, strings.Repeat("d", 64), "", "two shards of one version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, why := ServingKey(planner.Observed{Objects: tc.objs}, "chat", candKey)
			if key != tc.key || why != tc.why {
				t.Errorf("ServingKey = %q, %q; want %q, %q", key, why, tc.key, tc.why)
			}
		})
	}
}

func TestEvalCacheHitRunsNothing(t *testing.T) {
	f := newEvalFixture(t)
	ctx := context.Background()
	cand := model(t, filepath.Join(t.TempDir(), "model"), 0.9)
	a, b := scoreEval("a"), scoreEval("b")
	a.Min = map[string]float64{"score": 0.5}
	b.Min = map[string]float64{"score": 0.5}
	b.Env = map[string]string{"OTHER": "1"} // another evaluator: its own key
	r := f.release(a, b)
	cfg := &spec.Config{Settings: f.cfg.Settings, Releases: []spec.Release{*r}}
	key := planner.ContentKey(r)
	if got := f.e.cachedEvals(cfg, nil); len(got) != 0 {
		t.Fatalf("cachedEvals before any run: %v", got)
	}
	for range 3 {
		if _, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: cfg, Release: r, Key: key, ModelPath: cand}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.runCount(); n != 2 {
		t.Errorf("three gates ran the evaluators %d times, want 2 (each once)", n)
	}
	got := f.e.cachedEvals(cfg, nil)
	for _, ev := range r.Gate.Evals {
		res, ok := got[planner.EvalKey(key, &ev)]
		if !ok || res.Metrics["score"] != 0.9 || res.Seconds <= 0 {
			t.Errorf("cachedEvals[%s] = %+v, %v", ev.Name, res, ok)
		}
	}
	// The plan shows the cached result against the bounds.
	if files, _ := filepath.Glob(filepath.Join(f.e.WorkDir, "evals", "*.json")); len(files) != 2 {
		t.Errorf("cache files %v, want 2", files)
	}
	if tmp, _ := filepath.Glob(filepath.Join(f.e.WorkDir, "evals", ".eval-*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	// Another engine on the same state dir (a restarted daemon) hits too.
	e2 := &Engine{WorkDir: f.e.WorkDir, Log: f.e.Log}
	if _, err := e2.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: cfg, Release: r, Key: key, ModelPath: cand}); err != nil {
		t.Fatal(err)
	}
	if n := f.runCount(); n != 2 {
		t.Errorf("a restarted engine ran the evaluators again (%d runs)", n)
	}
}

func TestEvalTimeoutKillsGroup(t *testing.T) {
	f := newEvalFixture(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	writeFile(t, filepath.Join(f.snap.Dir, "evals", "hang.sh"), `#!/bin/sh
sleep 60 &
echo $! > "$PIDFILE"
wait
`)
	ev := spec.Eval{Name: "hang", Command: []string{"sh", "evals/hang.sh"}, Timeout: 500 * time.Millisecond,
		Env: map[string]string{"PIDFILE": pidFile}, Max: map[string]float64{"x": 1}}
	cand := model(t, filepath.Join(t.TempDir(), "model"), 1)
	start := time.Now()
	_, err := f.e.evaluate(context.Background(), f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(ev), Key: candKey, ModelPath: cand})
	if err == nil || !strings.Contains(err.Error(), "timed out after 500ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("evaluate returned after %s", d)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the evaluator's child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if files, _ := filepath.Glob(filepath.Join(f.e.WorkDir, "evals", "*.json")); len(files) != 0 {
		t.Errorf("a failed run was cached: %v", files)
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestEvalBadOutput(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"no json", `echo "accuracy: 0.9"; echo oops >&2`, "printed no JSON object (and wrote none to GANTRY_METRICS); stderr: oops"},
		{"not a number", `echo '{"accuracy": "high"}'`, `metric "accuracy" is "high", not a number`},
		{"null", `echo '{"accuracy": null}'`, `metric "accuracy" is null, not a number`},
		{"bad metrics file", `echo '{"accuracy": 0.9}'; echo '{"accuracy": [1]}' > "$GANTRY_METRICS"`, `wrote to GANTRY_METRICS: metric "accuracy" is [1], not a number`},
		{"crash", `echo '{"accuracy": 0.9}'; echo "Traceback: boom" >&2; exit 3`, "exit status 3; stderr: Traceback: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newEvalFixture(t)
			writeFile(t, filepath.Join(f.snap.Dir, "evals", "bad.sh"), tc.script+"\n")
			ev := spec.Eval{Name: "bad", Command: []string{"sh", "evals/bad.sh"}, Timeout: time.Minute, Min: map[string]float64{"accuracy": 0.5}}
			cand := model(t, filepath.Join(t.TempDir(), "model"), 1)
			_, err := f.e.evaluate(context.Background(), f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(ev), Key: candKey, ModelPath: cand})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "release chat: eval bad: ") {
				t.Errorf("err %q does not name the release and the eval", err)
			}
		})
	}
}

func TestEvalMetricsFileWins(t *testing.T) {
	f := newEvalFixture(t)
	writeFile(t, filepath.Join(f.snap.Dir, "evals", "file.sh"), `echo '{"accuracy": 0.1}'
printf '{"accuracy": 0.93}' > "$GANTRY_METRICS"
`)
	ev := spec.Eval{Name: "file", Command: []string{"sh", "evals/file.sh"}, Timeout: time.Minute, Min: map[string]float64{"accuracy": 0.9}}
	cand := model(t, filepath.Join(t.TempDir(), "model"), 1)
	checks, err := f.e.evaluate(context.Background(), f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(ev), Key: candKey, ModelPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1 || checks[0].Value != 0.93 || !checks[0].OK {
		t.Errorf("checks %+v, want accuracy 0.93 from GANTRY_METRICS", checks)
	}
}

func TestEvalEnvHasNoSecret(t *testing.T) {
	const secret = "ghp_plantedSecretValue123"
	t.Setenv("GANTRY_GIT_TOKEN", secret)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	f := newEvalFixture(t)
	dump := filepath.Join(t.TempDir(), "env")
	writeFile(t, filepath.Join(f.snap.Dir, "evals", "env.sh"), `env > "$DUMP"
pwd >> "$DUMP"
echo '{"ok": 1}'
`)
	ev := spec.Eval{Name: "env", Command: []string{"sh", "evals/env.sh"}, Timeout: time.Minute,
		Env: map[string]string{"DUMP": dump, "HF_HOME": "/cache/hf"}, Min: map[string]float64{"ok": 1}}
	gguf := filepath.Join(t.TempDir(), "model", "model.gguf")
	writeFile(t, gguf, "GGUF")
	r := f.release(ev)
	r.Model.Format = "gguf"
	if _, err := f.e.evaluate(context.Background(), f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: r, Key: candKey, ModelPath: gguf}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	if strings.Contains(env, secret) || strings.Contains(env, "GANTRY_GIT_TOKEN") {
		t.Errorf("the evaluator's environment holds the daemon's secret:\n%s", env)
	}
	for _, want := range []string{"GANTRY_MODEL=" + gguf + "\n", "GANTRY_MODEL_DIR=" + filepath.Dir(gguf) + "\n", "GANTRY_METRICS=", "HF_HOME=/cache/hf\n",
		"PATH=" + os.Getenv("PATH") + "\n", f.snap.Dir + "\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("the evaluator's environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(f.log.String(), secret) {
		t.Errorf("the log holds the secret:\n%s", f.log.String())
	}
}

// fakeEvalJobs records the eval Jobs it is asked to run and returns
// score by the model image.
type fakeEvalJobs struct {
	mu     sync.Mutex
	jobs   []EvalJob
	scores map[string]float64 // by image digest
}

func (j *fakeEvalJobs) RunEval(_ context.Context, job EvalJob) (map[string]float64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.jobs = append(j.jobs, job)
	_, digest, _ := strings.Cut(job.Model, "@")
	s, ok := j.scores[digest]
	if !ok {
		return nil, fmt.Errorf("no such image %s", job.Model)
	}
	return map[string]float64{"score": s}, nil
}

func TestEvalRunsImageEvalsAsJobs(t *testing.T) {
	f := newEvalFixture(t)
	ctx := context.Background()
	ev := spec.Eval{Name: "kl", Image: "ghcr.io/ggml-org/llama.cpp:full", Command: []string{"/app/eval.sh"}, Timeout: time.Minute,
		Max: map[string]float64{"score": 0.2}, MaxRatioToBaseline: map[string]float64{"score": 1.1}}
	r := f.release(ev)
	cfg := &spec.Config{Settings: spec.Settings{Namespace: "ml", Registry: "registry.example/models"}}
	// Without a job runner an image-only eval cannot run.
	imageOnly := ev
	imageOnly.Command = nil
	_, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: cfg, Release: f.release(imageOnly), Key: candKey})
	if err == nil || !strings.Contains(err.Error(), "needs --target kube") {
		t.Fatalf("image-only eval without a job runner: %v", err)
	}

	baseRef := planner.ImageRepository(cfg, "chat") + ":" + planner.ImageTag(baseKey)
	b, err := modelFiles(model(t, filepath.Join(t.TempDir(), "base"), 1), "safetensors", nil)
	if err != nil {
		t.Fatal(err)
	}
	baseDigest, err := f.e.push(ctx, f.store, cfg, r, baseKey, baseRef, b)
	if err != nil {
		t.Fatal(err)
	}
	const candDigest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	jobs := &fakeEvalJobs{scores: map[string]float64{baseDigest: 0.1, candDigest: 0.105}}
	f.e.EvalJobs = jobs
	// Without a registry the cluster cannot pull the model image.
	_, err = f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(imageOnly), Key: candKey})
	if err == nil || !strings.Contains(err.Error(), "set gantry { registry }") {
		t.Fatalf("image-only eval with the local layout: %v", err)
	}
	pushes := 0
	push := func(context.Context) (string, string, error) {
		pushes++
		return "registry.example/models/chat:candidate-" + candKey[:12], candDigest, nil
	}
	obs := planner.Observed{Objects: []planner.Object{serving("chat-n1", baseKey, "", 1)}}
	checks, err := f.e.evaluate(ctx, f.store, evalInput{Snap: f.snap, Cfg: cfg, Release: r, Key: candKey, Observed: obs, Push: push})
	if err != nil {
		t.Fatal(err)
	}
	if planner.Blocked(checks) != "" || len(checks) != 2 {
		t.Fatalf("checks %+v", checks)
	}
	if pushes != 1 || len(jobs.jobs) != 2 {
		t.Fatalf("%d pushes, jobs %+v", pushes, jobs.jobs)
	}
	c, bl := jobs.jobs[0], jobs.jobs[1]
	if c.Model != "registry.example/models/chat:candidate-"+candKey[:12]+"@"+candDigest || c.Baseline || c.ContentKey != candKey ||
		c.EvalKey != planner.EvalKey(candKey, &r.Gate.Evals[0]) || c.Namespace != "ml" || c.Eval.Image != ev.Image {
		t.Errorf("candidate job %+v", c)
	}
	if bl.Model != baseRef+"@"+baseDigest || !bl.Baseline || bl.ContentKey != baseKey {
		t.Errorf("baseline job %+v", bl)
	}
	if f.runCount() != 0 {
		t.Errorf("the command ran locally")
	}
}

// An evaluator that exits leaving a background child: the child goes
// with it.
func TestEvalReapsLeftovers(t *testing.T) {
	f := newEvalFixture(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	writeFile(t, filepath.Join(f.snap.Dir, "evals", "leave.sh"), `#!/bin/sh
sleep 60 > /dev/null 2>&1 &
echo $! > "$PIDFILE"
echo '{"x": 0.5}'
`)
	ev := spec.Eval{Name: "leave", Command: []string{"sh", "evals/leave.sh"}, Timeout: time.Minute,
		Env: map[string]string{"PIDFILE": pidFile}, Max: map[string]float64{"x": 1}}
	cand := model(t, filepath.Join(t.TempDir(), "model"), 1)
	if _, err := f.e.evaluate(context.Background(), f.store, evalInput{Snap: f.snap, Cfg: f.cfg, Release: f.release(ev), Key: candKey, ModelPath: cand}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the evaluator's background child %d outlived it", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
