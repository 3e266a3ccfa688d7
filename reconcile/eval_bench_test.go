package reconcile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// BenchmarkEvalGate is one gate of one eval on a candidate: hit reads
// the cached result (nothing runs), miss runs a trivial local evaluator
// (a fresh build each time, so that nothing is cached).
func BenchmarkEvalGate(b *testing.B) {
	ctx := context.Background()
	repo := b.TempDir()
	m := filepath.Join(b.TempDir(), "model")
	writeFileB(b, filepath.Join(m, "config.json"), "{}")
	ev := spec.Eval{Name: "trivial", Command: []string{"sh", "-c", `echo '{"score": 1}'`}, Timeout: time.Minute,
		Min: map[string]float64{"score": 0.5}}
	r := &spec.Release{Name: "chat", Model: spec.Model{Source: "models/chat", Format: "safetensors"}, Gate: &spec.Gate{Evals: []spec.Eval{ev}}}
	cfg := &spec.Config{Settings: spec.Settings{Namespace: "ml"}}
	in := func(key string) evalInput {
		return evalInput{Snap: Snapshot{Dir: repo}, Cfg: cfg, Release: r, Key: key, ModelPath: m}
	}
	e := &Engine{WorkDir: b.TempDir(), Log: discardLog()}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		key := fmt.Sprintf("%064x", 1)
		if _, err := e.evaluate(ctx, nil, in(key)); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			checks, err := e.evaluate(ctx, nil, in(key))
			if err != nil || len(checks) != 1 || !checks[0].OK {
				b.Fatal(checks, err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := 1 << 32
		for b.Loop() {
			i++
			key := fmt.Sprintf("%064x", i)
			checks, err := e.evaluate(ctx, nil, in(key))
			if err != nil || len(checks) != 1 || !checks[0].OK {
				b.Fatal(checks, err)
			}
			// Keep the cache directory small: a run per iteration.
			if err := os.Remove(e.evalPath(planner.EvalKey(key, &r.Gate.Evals[0]))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeFileB(b *testing.B, p, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}
