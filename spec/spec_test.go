package spec

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite golden files")

func renderDiags(t *testing.T, files map[string]*hcl.File, diags hcl.Diagnostics) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, files, diags, 0, false); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, d)
	}
}

// TestInvalid loads every config under testdata/invalid and compares the
// printed diagnostics with the golden file beside it. Each case must fail,
// and every error must point into a file.
func TestInvalid(t *testing.T) {
	root := filepath.Join("..", "testdata", "invalid")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			dir := filepath.Join(root, e.Name())
			cfg, diags := Load(context.Background(), dir, LoadOptions{NoEnv: true})
			if !diags.HasErrors() {
				t.Fatalf("no errors for %s", dir)
			}
			for _, d := range diags {
				if d.Summary == "Possible secret in Git" {
					continue // deliberately without a subject; see validate.go
				}
				if d.Subject == nil || d.Subject.Filename == "" || d.Subject.Start.Line == 0 {
					t.Errorf("diagnostic %q has no source range", d.Summary)
				}
			}
			out := renderDiags(t, cfg.Files, diags)
			// Cases plant secrets with PLANTED in them, on lines that
			// diagnostics print.
			for _, secret := range []string{"hf_abcdefSECRETVALUE", "PLANTED"} {
				if strings.Contains(out, secret) {
					t.Errorf("a secret value (%s) was printed:\n%s", secret, out)
				}
			}
			golden(t, dir+".golden", out)
		})
	}
	if n < 10 {
		t.Fatalf("only %d invalid cases", n)
	}
}

func TestInvalidMentions(t *testing.T) {
	// The golden files pin the exact text; these spot checks say what
	// matters in each, so that an -update cannot silently lose it.
	for name, want := range map[string][]string{
		"unknown-attribute":    {`main.hcl:2:3, in gantry:`, `An argument named "namespce" is not expected here. Did you mean "namespace"?`, `An argument named "replica" is not expected here`},
		"missing-attribute":    {`The argument "format" is required`, `The argument "image" is required`},
		"wrong-type":           {"replicas", "a number is required", "list of string required"},
		"duplicate-names":      {`Duplicate release "chat"`, "Previous definition at ../testdata/invalid/duplicate-names/a.hcl:5", `Duplicate node_pool "a100"`},
		"unknown-pool":         {`There is no node_pool named "h100"`, `There is no node_pool named "l40s"`},
		"impossible-values":    {"replicas cannot be negative", "autoscale min (5) must not exceed max (2)", "needs 80Gi per GPU, but the most any node in pools l4 offers is 24Gi", "weight must be greater than zero", "port must be between"},
		"bad-quantities":       {`"24GB" has an unknown unit "GB"`, "write 24G (powers of 10) or 24Gi", `"40Gi" is not a CPU quantity`, `"5 minutes" is not a duration`, `"-10m" must be greater than zero`},
		"path-escape":          {"points outside the repository", "absolute path", `"models/nope.gguf" does not exist`},
		"method-mismatch":      {`Method "int4" is for safetensors models, but this model is gguf`, `Method "q4_k_m" is for gguf models`, "group_size applies only to int4", `format must be "safetensors" or "gguf"`, "must pin its content"},
		"variables-and-locals": {`The variable "region" has no default`, "Cycle in local values", `A local value named "nope" has not been declared`, "not compatible with the variable's type constraint"},
		"secrets":              {"HF_TOKEN looks like a secret", `must be "SECRET-NAME/KEY"`},
		"syntax-error":         {"Unterminated template string"},
		"no-node-fits": {
			// a100: 8 GPUs - reserve 1 = 7 per node; 8 does not fit.
			`45:12, in release "eight"`, "Each replica needs 8 GPUs on one node, but no node in pools a100 has that many: the best, gpu-a1, can give 7 (Insufficient nvidia.com/gpu: requested 8, reserved 1, capacity 8)",
			"Each replica needs 16 GPUs", "the best, gpu-many, can give 8 (Insufficient nvidia.com/gpu: requested 16, capacity 8)",
			// mixed: gpu-many 8 × 24Gi, gpu-big 2 × 80Gi; 4 × 80Gi fits neither.
			`92:18, in release "both"`, "no node in pools mixed has both: gpu-many can give 8 GPUs but of 24Gi each, and gpu-big has 80Gi per GPU but can give only 2",
			"The static inventory has no node in pools empty",
		},
		"format-mismatch": {
			`4:14, in release "gguf-as-safetensors"`, `"models/chat.gguf" is a GGUF file`, `Set format = "gguf"`,
			`27:14, in release "safetensors-as-gguf"`, `"models/ckpt" is a safetensors checkpoint`,
			`"models/notes.txt" does not start with the GGUF magic`, `"models/empty-dir" is a directory with no *.safetensors files`,
		},
		"bare-memory": {
			`6:16, in node "gpu-1"`, `gpu_memory: "80" has no unit, so it would mean 80 bytes; did you mean "80Gi"?`,
			`memory: "64" has no unit`, `gpu_memory: "40" has no unit`, `did you mean "16Gi"?`,
		},
		"unclosed-block":    {"main.hcl:1:16", "Missing closing brace", `main.hcl:6:11, in release "chat"`, "This runtime block, opened at ../testdata/invalid/unclosed-block/main.hcl:6:11, is never closed"},
		"secret-in-snippet": {`API_TOKEN = "****************"`, `An argument named "API_TOKEN" is not expected here`},
		"vllm-unservable":   {`11:18, in release "chat"`, "int4 group size 256: vLLM serves only -1 (channel-wise), 32, 64 and 128", `25:14, in release "chat-skip"`, "not its fused sibling k_proj"},
		"secret-in-env":     {`DB_PASSWORD = "**************"`, `"postgres://******************@db/x"`, `"bad name" is not a valid environment variable name`},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, diags := Load(context.Background(), filepath.Join("..", "testdata", "invalid", name), LoadOptions{NoEnv: true})
			out := renderDiags(t, cfg.Files, diags)
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSymlinkOutOfRepo(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "weights.gguf")
	if err := os.WriteFile(secret, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(repo, "model.gguf")); err != nil {
		t.Skip("symlinks unsupported:", err)
	}
	writeFile(t, filepath.Join(repo, "main.hcl"), `
release "chat" {
  model {
    source = "model.gguf"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
}
`)
	_, diags := Load(context.Background(), repo, LoadOptions{NoEnv: true})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "symlink to a file outside the repository") {
		t.Fatalf("want symlink escape error, got %v", diags)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadQuickstart(t *testing.T) {
	cfg, diags := Load(context.Background(), filepath.Join("..", "examples", "quickstart"), LoadOptions{NoEnv: true, Vars: map[string]string{"environment": "prod"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := len(diags); got != 0 {
		t.Errorf("quickstart has %d warnings: %v", got, diags)
	}
	if cfg.Settings.Namespace != "llm" {
		t.Errorf("namespace = %q", cfg.Settings.Namespace)
	}
	var names []string
	for _, r := range cfg.Releases {
		names = append(names, r.Name)
	}
	if d := cmp.Diff([]string{"tiny-chat", "tiny-chat-gguf"}, names); d != "" {
		t.Errorf("releases (-want +got):\n%s", d)
	}
	r, _ := cfg.Release("tiny-chat")
	// merge(local.common_env, {...}) with -var environment=prod.
	if d := cmp.Diff(map[string]string{"GANTRY_ENVIRONMENT": "prod", "VLLM_LOGGING_LEVEL": "INFO"}, r.Runtime.Env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	if r.Resources.GPUMemory != 20<<30 {
		t.Errorf("gpu_memory = %d, want 20Gi", r.Resources.GPUMemory)
	}
	if r.Autoscale.Cooldown.String() != "5m0s" {
		t.Errorf("cooldown = %v", r.Autoscale.Cooldown)
	}
	if !strings.HasPrefix(r.Model.Digest, "sha256:") || len(r.Model.Digest) != 71 {
		t.Errorf("model digest = %q", r.Model.Digest)
	}
	if r.Model.Packaging != "modelpack" || r.Runtime.Port != 8000 || r.Runtime.HealthPath != "/health" || r.Quantize.Runner != "local" {
		t.Errorf("defaults not filled: %+v %+v", r.Model, r.Runtime)
	}
	p, _ := cfg.Pool("l4")
	if *p.Weight != 1 {
		t.Errorf("l4 weight = %v", *p.Weight)
	}
	if cfg.Nodes[0].Name != "gpu-a1" || cfg.Nodes[2].GPUMemory != 24<<30 {
		t.Errorf("nodes: %+v", cfg.Nodes)
	}
}

func TestVariableFromEnv(t *testing.T) {
	repo := t.TempDir()
	writeFile(t, filepath.Join(repo, "main.hcl"), `
variable "replicas" {
  type = number
}
release "chat" {
  model {
    source = "oci://r/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = format("vllm:%s", lower("V1"))
  }
  replicas = var.replicas * 2
}
`)
	t.Setenv("GANTRY_VAR_replicas", "3")
	cfg, diags := Load(context.Background(), repo, LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Releases[0]
	if r.ReplicaCount() != 6 || r.Runtime.Image != "vllm:v1" {
		t.Errorf("replicas %d image %q", r.ReplicaCount(), r.Runtime.Image)
	}
}

func TestPodHashIgnoresScaling(t *testing.T) {
	cfg, diags := Load(context.Background(), filepath.Join("..", "examples", "quickstart"), LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Releases[0]
	h := r.PodHash()
	n := 7
	r.Replicas = &n
	if r.PodHash() != h {
		t.Error("replicas changed the pod hash")
	}
	r.Runtime.Image = "other"
	if r.PodHash() == h {
		t.Error("runtime image did not change the pod hash")
	}
}
