package spec

import (
	"strings"
	"testing"
	"time"
)

// release wraps model, quantize, gate and runtime blocks into a release.
func pipelineRelease(model, rest string) string {
	return `release "chat" {
  model {
` + model + `
  }
` + rest + `
}
`
}

const peftConfig = `{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}`

func TestPipelineValid(t *testing.T) {
	files := map[string]string{
		"models/base/config.json":                 `{}`,
		"models/base/model.safetensors":           "\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
		"adapters/sql/adapter_config.json":        peftConfig,
		"adapters/sql/adapter_model.safetensors":  "x",
		"adapters/chat/adapter_config.json":       peftConfig,
		"adapters/chat/adapter_model.safetensors": "y",
		"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"
    adapter {
      source = "adapters/sql"
    }
    adapter {
      source = "adapters/chat"
      scale  = 0.5
    }`, `  quantize { method = "int4" }
  gate {
    eval "kl" {
      command = ["node", "kl.mjs"]
      max     = { kl_divergence = 0.05 }
      max_ratio_to_baseline = { perplexity = 1.02 }
    }
    eval "mmlu" {
      image   = "ghcr.io/example/lm-eval:1"
      min     = { acc = 0.6 }
      timeout = "2h"
    }
  }
  runtime { image = "vllm/vllm-openai:v0.8.0" }`),
	}
	cfg, diags, out := loadSrc(t, files, LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(out)
	}
	r := cfg.Releases[0]
	if len(r.Model.Adapters) != 2 || r.Model.Adapters[0].Digest == "" || r.Model.Adapters[0].Digest == r.Model.Adapters[1].Digest {
		t.Fatalf("adapter digests not resolved apart: %+v", r.Model.Adapters)
	}
	if r.Model.Adapters[0].ScaleOrDefault() != 1 || r.Model.Adapters[1].ScaleOrDefault() != 0.5 {
		t.Fatalf("scales: %+v", r.Model.Adapters)
	}
	evs := r.Gate.Evals
	if len(evs) != 2 || evs[0].Timeout != DefaultEvalTimeout || evs[1].Timeout != 2*time.Hour {
		t.Fatalf("evals: %+v", evs)
	}
	if got := strings.Join(evs[0].Metrics(), ","); got != "kl_divergence,perplexity" {
		t.Fatalf("metrics %q", got)
	}
	if r.Runtime.EngineName() != EngineVLLM {
		t.Fatalf("engine %q", r.Runtime.EngineName())
	}
}

func TestInferEngine(t *testing.T) {
	for image, want := range map[string]string{
		"vllm/vllm-openai:v0.8.0":                         EngineVLLM,
		"ghcr.io/ggml-org/llama.cpp:server":               EngineLlamaCpp,
		"ghcr.io/ggml-org/llama.cpp@sha256:0123":          EngineLlamaCpp,
		"lmsysorg/sglang:latest":                          EngineSGLang,
		"ghcr.io/huggingface/text-generation-inference:3": EngineTGI,
		"ollama/ollama":                                   EngineOllama,
		"registry.example.com/serving/custom:1":           "",
		"registry.example.com/vllm-mirror/x:1":            EngineVLLM,
		"localhost:5000/my.llama.cppish/a":                EngineLlamaCpp,
	} {
		if got := InferEngine(image); got != want {
			t.Errorf("InferEngine(%q) = %q, want %q", image, got, want)
		}
	}
}

// Each case is refused with its position and a reason, and the specs
// load as invalid (so that nothing is planned from them).
func TestPipelineInvalid(t *testing.T) {
	const gguf = "GGUF\x03\x00\x00\x00"
	base := map[string]string{
		"models/base/config.json":       `{}`,
		"models/base/model.safetensors": "\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
		"models/m.gguf":                 gguf,
	}
	cases := []struct {
		name  string
		files map[string]string
		want  []string // in the printed diagnostics
	}{
		{"dora", map[string]string{
			"a/adapter_config.json":       `{"peft_type": "LORA", "r": 8, "use_dora": true}`,
			"a/adapter_model.safetensors": "x",
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"
    adapter { source = "a" }`, `  runtime { image = "vllm/vllm-openai" }`),
		}, []string{"main.hcl:5:", "DoRA", "Unsupported adapter"}},
		{"loha", map[string]string{
			"a/adapter_config.json":       `{"peft_type": "LOHA", "r": 8}`,
			"a/adapter_model.safetensors": "x",
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"
    adapter { source = "a" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "peft_type: LOHA adapters are not LoRA"}},
		{"missing-weights", map[string]string{
			"a/adapter_config.json": peftConfig,
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"
    adapter { source = "a" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "has no adapter_model.safetensors"}},
		{"gguf-takes-files", map[string]string{
			"a/adapter_config.json":       peftConfig,
			"a/adapter_model.safetensors": "x",
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"
    adapter { source = "a" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "convert_lora_to_gguf.py"}},
		{"gguf-magic", map[string]string{
			"a.gguf": "nope",
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"
    adapter { source = "a.gguf" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "not a GGUF LoRA file"}},
		{"adapter-url", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"
    adapter { source = "https://user:PLANTED@example.com/a.gguf" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "must be a path in the repository"}},
		{"adapter-outside", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"
    adapter { source = "../etc/a.gguf" }`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:5:", "outside the repository"}},
		{"sparsity", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"`, `  quantize {
    method   = "int8"
    sparsity = "2:4"
  }
  runtime { image = "x" }`),
		}, []string{"main.hcl:8:", "vllm PR #36799", "PR #2452", "llama.cpp has none"}},
		{"sparse-method", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"`, `  quantize { method = "sparse_2:4" }
  runtime { image = "x" }`),
		}, []string{"main.hcl:6:", "2:4 sparsity is not a step Gantry builds"}},
		{"llama.cpp-safetensors", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/base"
    format = "safetensors"`, `  runtime { image = "ghcr.io/ggml-org/llama.cpp:server" }`),
		}, []string{"main.hcl:4:14", "llama.cpp loads GGUF files only", `inferred from image "ghcr.io/ggml-org/llama.cpp:server"`}},
		{"engine-explicit", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"`, `  runtime {
    image  = "registry.example.com/serve:1"
    engine = "tgi"
  }`),
		}, []string{"main.hcl:4:14", "text-generation-inference does not load GGUF"}},
		{"engine-unknown", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"`, `  runtime {
    image  = "x"
    engine = "vlm"
  }`),
		}, []string{"main.hcl:8:14", `not "vlm"`}},
		{"eval-nothing", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"`, `  gate {
    eval "kl" {
      max = { kl = 1 }
    }
  }
  runtime { image = "x" }`),
		}, []string{"main.hcl:7:", "needs command"}},
		{"eval-bounds", map[string]string{
			"main.hcl": pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"`, `  gate {
    eval "kl" {
      command = ["true"]
      min     = { acc = 0.9 }
      max     = { acc = 0.5 }
      max_ratio_to_baseline = { ppl = 0 }
      timeout = "soon"
    }
    eval "kl" {
      command = ["true"]
    }
  }
  runtime { image = "x" }`),
		}, []string{"main.hcl:10:", "max 0.5 below its min 0.9", "main.hcl:11:", "greater than zero, got 0", "main.hcl:12:", "not a duration", "Duplicate eval", "sets no bound"}},
		{"keys", map[string]string{
			"main.hcl": `gantry {
  signing_key_file = "-----BEGIN PRIVATE KEY-----PLANTED"
  verify_key_file  = "keys/pub.pem"
}
` + pipelineRelease(`    source = "models/m.gguf"
    format = "gguf"`, `  runtime { image = "x" }`),
		}, []string{"main.hcl:2:", "looks like the key itself", "main.hcl:3:", "absolute path"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range c.files {
				files[k] = v
			}
			_, diags, out := loadSrc(t, files, LoadOptions{})
			if !diags.HasErrors() {
				t.Fatalf("no error:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "PLANTED") {
				t.Errorf("a planted secret was printed:\n%s", out)
			}
		})
	}
}
