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
	fleets, _ := filepath.Glob(filepath.Join("testdata", "fleet", "*", "*.hcl"))
	seeds = append(append(append(seeds, rollouts...), more...), fleets...)
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
	// A fleet with every cluster attribute, per-cluster bounds and waves
	// written every way (literal, for expression, local), so that fuzzing
	// reaches the fleet checks.
	f.Add([]byte(fleetSeed()))
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

// fleetSeed is a valid fleet: every cluster attribute, per-cluster
// bounds, and waves written as a literal and as a for expression.
func fleetSeed() string {
	return `locals {
  prod = ["eu-1", "us-1"]
}
gantry {
  lease_cluster = "staging"
}
cluster "staging" {
  in_cluster = true
  labels     = { tier = "staging" }
}
cluster "eu-1" {
  kubeconfig      = "/etc/gantry/eu-1.kubeconfig"
  context         = "admin"
  weight          = 2
  namespace       = "llm-eu"
  registry_mirror = "mirror.eu.example.com/models"
  labels          = { tier = "prod" }
}
cluster "us-1" {
  kubeconfig = "/etc/gantry/us-1.kubeconfig"
  labels     = { tier = "prod" }
}
node_pool "p" {}
node "n" {
  cluster    = "eu-1"
  pool       = "p"
  gpus       = 8
  gpu_memory = "80Gi"
}
` + rolloutSrc(4, `  cluster_selector = { tier = "prod" }
  min_per_cluster = 1
  max_per_cluster = 3`, `    waves = [for c in local.prod : [c]]
    wave_pause = "15m"
    wave = 2
    step = 1
    version = "3f2a1c9d"`) + `
release "r2" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  clusters = ["staging", "eu-1"]
  replicas_per_cluster = 2
  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100, pause = "30m" }]
    waves = [["staging"], ["eu-1"]]
  }
}
`
}
