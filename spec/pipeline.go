package spec

import (
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Adapter is a LoRA adapter merged into the base weights before
// quantization: W' = W + scale · s · B·A, tensor by tensor.
//
// For a safetensors base, Source is a PEFT adapter directory in the
// repository (adapter_config.json and adapter_model.safetensors). For a
// GGUF base it is a GGUF LoRA file (general.type = "adapter", as
// llama.cpp's convert_lora_to_gguf.py writes it).
type Adapter struct {
	Source string `hcl:"source" json:"source"`
	// Scale multiplies the adapter's own scaling (lora_alpha / r);
	// default 1.
	Scale *float64 `hcl:"scale,optional" json:"scale,omitempty"`
	// Digest pins the adapter's content, "sha256:<hex>"; computed from
	// the files when absent, as for a model.
	Digest string `hcl:"digest,optional" json:"digest,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// ScaleOrDefault is Scale, 1 when unset.
func (a *Adapter) ScaleOrDefault() float64 {
	if a.Scale == nil {
		return 1
	}
	return *a.Scale
}

// Eval is one evaluator of a gate: a program that reads the candidate
// model and prints (or writes) a JSON object of metrics, which the bounds
// are checked against.
//
// With the kube target and build Jobs, an eval that has Image runs as a
// Kubernetes Job from Image, with the candidate model image mounted at
// /models, and Command (if any) as the container's command; its metrics
// are the last JSON object of the pod's log. Otherwise Command runs as a
// local process in the specs' directory, with GANTRY_MODEL_DIR (the
// build's directory), GANTRY_MODEL (the model file of a GGUF build, else
// the directory) and GANTRY_METRICS (a file it may write the metrics to;
// if it writes none, its standard output is read).
type Eval struct {
	Name    string            `hcl:"name,label" json:"name"`
	Command []string          `hcl:"command,optional" json:"command,omitempty"`
	Image   string            `hcl:"image,optional" json:"image,omitempty"`
	Env     map[string]string `hcl:"env,optional" json:"env,omitempty"`
	// TimeoutRaw bounds one run (default 30m).
	TimeoutRaw string `hcl:"timeout,optional" json:"timeout,omitempty"`
	// Min and Max are absolute bounds by metric name.
	Min map[string]float64 `hcl:"min,optional" json:"min,omitempty"`
	Max map[string]float64 `hcl:"max,optional" json:"max,omitempty"`
	// MaxRatioToBaseline bounds a metric relative to the same evaluator's
	// value on the build the release serves now (the baseline): the
	// candidate's value may be at most ratio × the baseline's. Without a
	// serving build (a first release) these bounds are not checked.
	MaxRatioToBaseline map[string]float64 `hcl:"max_ratio_to_baseline,optional" json:"max_ratio_to_baseline,omitempty"`
	// CPU, Memory and GPUs are what the eval Job requests.
	CPU    string `hcl:"cpu,optional" json:"cpu,omitempty"`
	Memory string `hcl:"memory,optional" json:"memory,omitempty"`
	GPUs   int    `hcl:"gpus,optional" json:"gpus,omitempty"`

	Timeout  time.Duration `json:"-"`
	DefRange hcl.Range     `hcl:",def_range" json:"-"`
}

// Metrics lists the metric names the eval's bounds name, sorted.
func (e *Eval) Metrics() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]float64{e.Min, e.Max, e.MaxRatioToBaseline} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Inference engines Gantry knows the formats of.
const (
	EngineVLLM     = "vllm"
	EngineLlamaCpp = "llama.cpp"
	EngineSGLang   = "sglang"
	EngineTGI      = "tgi"
	EngineOllama   = "ollama"
	// EngineOther opts out of the checks.
	EngineOther = "other"
)

// Engines are the values runtime { engine } takes.
var Engines = []string{EngineVLLM, EngineLlamaCpp, EngineSGLang, EngineTGI, EngineOllama, EngineOther}

// EngineName is the runtime's engine: Engine when set, else inferred from
// the image name ("" when the name says nothing Gantry knows).
func (rt *Runtime) EngineName() string {
	if rt.Engine != "" {
		return rt.Engine
	}
	return InferEngine(rt.Image)
}

// InferEngine guesses the engine from an image reference by its
// repository name: vllm/vllm-openai is vLLM, ghcr.io/ggml-org/llama.cpp
// is llama.cpp, and so on. "" when it cannot tell.
func InferEngine(image string) string {
	repo := strings.ToLower(image)
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	switch {
	case strings.Contains(repo, "vllm"):
		return EngineVLLM
	case strings.Contains(repo, "llama.cpp"), strings.Contains(repo, "llama-cpp"), strings.Contains(repo, "llamacpp"), strings.Contains(repo, "llama-server"):
		return EngineLlamaCpp
	case strings.Contains(repo, "sglang"):
		return EngineSGLang
	case strings.Contains(repo, "text-generation-inference"), strings.HasSuffix(repo, "/tgi"):
		return EngineTGI
	case strings.Contains(repo, "ollama"):
		return EngineOllama
	}
	return ""
}

// SparsityRefusal is why Gantry does not build 2:4 (or other structured)
// sparse models.
const SparsityRefusal = "2:4 sparsity is not a step Gantry builds: vLLM removed sparse-24 support (vllm PR #36799), llm-compressor removed sparse compression (PR #2452), and llama.cpp has none, so no engine Gantry targets would run the pruned weights faster"
