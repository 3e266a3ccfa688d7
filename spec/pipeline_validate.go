package spec

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/gantry-dev/gantry/compress/lora"
)

// DefaultEvalTimeout bounds an eval run without a timeout.
const DefaultEvalTimeout = 30 * time.Minute

// evalNameRE: an eval's name goes into a Job's name, after the release.
var evalNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$`)

// pipelineSettings checks the signing and verification key files.
func (v *validator) pipelineSettings() {
	s := &v.cfg.Settings
	for _, k := range []struct{ attr, val, what string }{
		{"signing_key_file", s.SigningKeyFile, "private key"},
		{"verify_key_file", s.VerifyKeyFile, "public key"},
	} {
		switch {
		case k.val == "":
		case KubeconfigContents(k.val):
			// Never quoted: it may be the key itself. Printed sources
			// mask the value (the attribute name looks secret).
			v.errorf(v.attr(s.DefRange, k.attr), "Key contents in Git",
				"%s must be the path of a PEM %s file on the daemon's machine (a mounted Secret, such as \"/etc/gantry/cosign.key\"), but this value looks like the key itself. Keys never belong in Git: remove the value from the repository and its history, rotate the key, and mount the file into the daemon instead.", k.attr, k.what)
		case !filepath.IsAbs(k.val):
			v.errorf(v.attr(s.DefRange, k.attr), "Relative key path",
				"%s is a file on the daemon's machine, not in the repository: give an absolute path such as \"/etc/gantry/cosign.key\", got %q.", k.attr, k.val)
		}
	}
}

// adapters checks a release's adapter blocks: repository paths of the
// kind the base format takes.
func (v *validator) adapters(r *Release) {
	m := &r.Model
	for i := range m.Adapters {
		a := &m.Adapters[i]
		src := v.attr(a.DefRange, "source")
		if s := a.Scale; s != nil && (math.IsNaN(*s) || math.IsInf(*s, 0)) {
			v.errorf(v.attr(a.DefRange, "scale"), "Invalid adapter scale", "scale must be a finite number, got %g.", *s)
		} else if s != nil && *s == 0 {
			v.warnf(v.attr(a.DefRange, "scale"), "Adapter does nothing", "scale = 0 merges nothing of adapter %q; remove the block instead.", a.Source)
		}
		if a.Digest != "" && !digestRE.MatchString(a.Digest) {
			v.errorf(v.attr(a.DefRange, "digest"), "Invalid digest", "digest must be \"sha256:\" followed by 64 lowercase hex digits.")
		}
		if strings.Contains(a.Source, "://") {
			v.errorf(src, "Invalid adapter source", "adapter source must be a path in the repository (a PEFT adapter directory or a GGUF LoRA file), not %q.", MaskURLCredentials(a.Source))
			continue
		}
		real := v.repoPath(src, "source", a.Source, true)
		if real == "" {
			continue
		}
		info, err := os.Stat(real)
		if err != nil {
			v.errorf(src, "Cannot read adapter", "adapter %q: %s.", a.Source, describeFileError(err))
			continue
		}
		switch m.Format {
		case "safetensors":
			if !info.IsDir() {
				v.errorf(src, "Not a PEFT adapter", "A safetensors model takes PEFT adapters: %q must be a directory holding adapter_config.json and adapter_model.safetensors.", a.Source)
				continue
			}
			for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
				if _, err := os.Stat(filepath.Join(real, f)); err != nil {
					v.errorf(src, "Not a PEFT adapter", "adapter %q has no %s; a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors.", a.Source, f)
				}
			}
			data, err := os.ReadFile(filepath.Join(real, "adapter_config.json"))
			if err == nil {
				// The merge's own parser: what validation refuses is
				// exactly what the build would.
				if _, err := lora.ParsePEFTConfig(data); err != nil {
					v.errorf(src, "Unsupported adapter", "adapter %q: %s", a.Source, sentence(err))
				}
			}
		case "gguf":
			if info.IsDir() {
				v.errorf(src, "Not a GGUF adapter", "A GGUF model takes GGUF LoRA adapters (as llama.cpp's convert_lora_to_gguf.py writes them): %q is a directory. Convert a PEFT adapter with convert_lora_to_gguf.py, or serve the safetensors model.", a.Source)
				continue
			}
			if !hasGGUFMagic(real) {
				v.errorf(src, "Not a GGUF adapter", "adapter %q does not start with the GGUF magic, so it is not a GGUF LoRA file.", a.Source)
			}
		}
	}
}

func hasGGUFMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	return err == nil && bytes.Equal(magic, []byte("GGUF"))
}

// sparsity refuses pruning, whichever way it is asked for.
func (v *validator) sparsity(r *Release) {
	q := r.Quantize
	if q == nil {
		return
	}
	if q.Sparsity != "" {
		v.errorf(v.attr(q.DefRange, "sparsity"), "Sparsity is not supported", "%s. Remove sparsity = %q.", SparsityRefusal, q.Sparsity)
	}
	if l := strings.ToLower(q.Method); strings.Contains(l, "2:4") || strings.Contains(l, "sparse") || strings.Contains(l, "2_4") {
		v.errorf(v.attr(q.DefRange, "method"), "Sparsity is not supported", "%s. Choose a quantize method instead.", SparsityRefusal)
	}
}

// evals checks the gate's eval blocks.
func (v *validator) evals(r *Release) {
	g := r.Gate
	if g == nil {
		return
	}
	seen := map[string]bool{}
	for i := range g.Evals {
		ev := &g.Evals[i]
		if !evalNameRE.MatchString(ev.Name) {
			v.errorf(v.label(ev.DefRange), "Invalid eval name", "%q cannot name an eval: use at most 20 lowercase letters, digits and '-', starting and ending with a letter or digit (it names the eval's Job).", ev.Name)
		}
		if seen[ev.Name] {
			v.errorf(v.label(ev.DefRange), "Duplicate eval", "The gate of release %q has two evals named %q.", r.Name, ev.Name)
		}
		seen[ev.Name] = true
		if len(ev.Command) == 0 && ev.Image == "" {
			v.errorf(ev.DefRange, "Eval runs nothing", "eval %q needs command (a local process, argv) or image (a Kubernetes Job with --target kube), or both.", ev.Name)
		}
		if slices.Contains(ev.Command, "") {
			v.errorf(v.attr(ev.DefRange, "command"), "Empty argument", "eval %q: command holds an empty string.", ev.Name)
		}
		ev.Timeout = DefaultEvalTimeout
		if ev.TimeoutRaw != "" {
			d, err := ParseDuration(ev.TimeoutRaw)
			switch {
			case err != nil:
				v.errorf(v.attr(ev.DefRange, "timeout"), "Invalid duration", "timeout: %s", sentence(err))
			case d <= 0:
				v.errorf(v.attr(ev.DefRange, "timeout"), "Invalid timeout", "timeout must be greater than zero, got %s.", ev.TimeoutRaw)
			default:
				ev.Timeout = d
			}
		}
		if len(ev.Min)+len(ev.Max)+len(ev.MaxRatioToBaseline) == 0 {
			v.errorf(ev.DefRange, "Eval bounds nothing", "eval %q sets no bound: give min, max or max_ratio_to_baseline for the metrics it gates on.", ev.Name)
		}
		for _, k := range sortedKeys(ev.Min) {
			if hi, ok := ev.Max[k]; ok && hi < ev.Min[k] {
				v.errorf(v.attr(ev.DefRange, "max"), "Empty range", "eval %q: %s has max %g below its min %g, so no build can pass.", ev.Name, k, hi, ev.Min[k])
			}
		}
		for _, k := range sortedKeys(ev.MaxRatioToBaseline) {
			if x := ev.MaxRatioToBaseline[k]; !(x > 0) || math.IsInf(x, 0) {
				v.errorf(v.attr(ev.DefRange, "max_ratio_to_baseline"), "Invalid ratio", "eval %q: max_ratio_to_baseline for %s must be a finite number greater than zero, got %g.", ev.Name, k, x)
			}
		}
		for _, k := range sortedKeys(ev.Env) {
			if !envNameRE.MatchString(k) {
				v.errorf(v.attr(ev.DefRange, "env"), "Invalid environment variable name", "%q is not a valid environment variable name.", k)
			}
			if LooksSecret(k) && ev.Env[k] != "" {
				at := v.attr(ev.DefRange, "env")
				v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Possible secret in Git",
					Detail: fmt.Sprintf("%s:%d:%d: eval %q: %s looks like a secret, and its value is stored in Git.", at.Filename, at.Start.Line, at.Start.Column, ev.Name, k)})
			}
		}
		if ev.CPU != "" {
			if _, err := ParseCPU(ev.CPU); err != nil {
				v.errorf(v.attr(ev.DefRange, "cpu"), "Invalid quantity", "cpu: %s", sentence(err))
			}
		}
		if ev.Memory != "" {
			if _, err := ParseMemory(ev.Memory); err != nil {
				v.errorf(v.attr(ev.DefRange, "memory"), "Invalid quantity", "memory: %s", sentence(err))
			}
		}
		if ev.GPUs < 0 {
			v.errorf(v.attr(ev.DefRange, "gpus"), "Invalid GPU count", "gpus cannot be negative, got %d.", ev.GPUs)
		}
	}
}

// engineFormats is what each engine loads: "ok", or why not.
var engineFormats = map[string]map[string]string{
	EngineLlamaCpp: {"gguf": "ok", "safetensors": "llama.cpp loads GGUF files only; convert the checkpoint with convert_hf_to_gguf.py and set format = \"gguf\", or serve it with vLLM"},
	EngineOllama:   {"gguf": "ok", "safetensors": "Ollama loads GGUF models only"},
	// vLLM and SGLang load both (GGUF as one file); vLLM's int4 group
	// sizes are checked for every int4 build (vllm.ValidGroupSize).
	EngineVLLM:   {"safetensors": "ok", "gguf": "ok"},
	EngineSGLang: {"safetensors": "ok", "gguf": "ok"},
	EngineTGI:    {"safetensors": "ok", "gguf": "text-generation-inference does not load GGUF files (its llama.cpp backend is a separate image)"},
}

// engine checks that the runtime's engine can load what the release
// builds.
func (v *validator) engine(r *Release) {
	rt := &r.Runtime
	at := v.attr(rt.DefRange, "image")
	from := fmt.Sprintf("inferred from image %q", rt.Image)
	if rt.Engine != "" {
		at, from = v.attr(rt.DefRange, "engine"), "runtime engine"
		if !slices.Contains(Engines, rt.Engine) {
			v.errorf(at, "Unknown engine", "engine must be one of %s, not %q (\"other\" turns the checks off).", strings.Join(Engines, ", "), rt.Engine)
			return
		}
	}
	name := rt.EngineName()
	formats, ok := engineFormats[name]
	if !ok {
		return // unknown (or "other"): not checked
	}
	why, ok := formats[r.Model.Format]
	if !ok || why == "ok" {
		return
	}
	format := v.attr(r.Model.DefRange, "format")
	v.errorf(format, "The engine cannot load this format", "Release %q builds a %s model, but its runtime runs %s (%s), and %s. Set runtime { engine = \"other\" } if the image runs something else.", r.Name, r.Model.Format, name, from, why)
}
