package spec

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes through the whole loader: parsing,
// variables, decoding and validation must never panic, and must either
// succeed or say why.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "invalid", "*", "*.hcl"))
	seeds = append(seeds, filepath.Join("..", "examples", "quickstart", "releases.hcl"))
	rollouts, _ := filepath.Glob(filepath.Join("testdata", "rollout", "*.hcl"))
	more, _ := filepath.Glob(filepath.Join("testdata", "rollout", "*", "*.hcl"))
	seeds = append(append(seeds, rollouts...), more...)
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	// A model path that exists (the spec itself), so that fuzzing reaches
	// the format sniffing; FuzzModelFormat fuzzes the model bytes.
	f.Add([]byte("release \"r\" {\n  model {\n    source = \"main.hcl\"\n    format = \"gguf\"\n  }\n  runtime {\n    image = \"x\"\n  }\n}\n"))
	// A valid rollout block with every attribute, so that fuzzing reaches
	// its validation (the model is pinned, so nothing is read).
	f.Add([]byte(rolloutSrc(4, "", `    steps = [{ replicas = 1, weight = 5, pause = "10m" }, { percent = 50, pause = "30m" }, { percent = var.p }]
    traffic = "gateway"
    gateway = "infra/inference"
    prestage_timeout = "30m"
    analysis {
      interval      = "1m"
      failure_limit = 2
      metric "error_ratio" {
        query = "sum(rate(x{pod=~\"{{.Pods}}\"}[1m]))"
        max   = 0.01
      }
    }
    step    = 2
    version = "3f2a1c9d"`)))
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(context.Background(), dir, LoadOptions{NoEnv: true})
		if cfg == nil {
			t.Fatal("nil config")
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Errorf("diagnostic without summary: %+v", d)
			}
		}
		// Printing masks secrets in the source; positions must survive.
		if err := WriteDiagnostics(io.Discard, cfg.Files, diags, 80, false); err != nil {
			t.Fatal(err)
		}
		if m := maskSource("main.hcl", src, nil); len(m) != len(src) {
			t.Fatalf("masking changed the length: %d -> %d", len(src), len(m))
		}
	})
}

// FuzzParseMemory checks that the quantity parser never panics and that
// what it accepts is non-negative.
func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"80Gi", "40GB", "1.5Ti", "", "9e9", "0.000001Ki"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseMemory(s); err == nil && n < 0 {
			t.Errorf("ParseMemory(%q) = %d", s, n)
		}
		_, _ = ParseCPU(s)
	})
}
