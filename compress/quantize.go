package compress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantry-dev/gantry/compress/ctensors"
	"github.com/gantry-dev/gantry/compress/ggufquant"
	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
)

// Version identifies the quantizers' output. The planner puts it into
// every content key (planner.QuantizerVersion must equal it), so bumping it
// rebuilds every model once.
const Version = "gantry-compress/1"

// Options says how to quantize.
type Options struct {
	// Type is a GGUF target (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k,
	// q6_k, q4_k_s, q4_k_m, q5_k_s, q5_k_m) or a safetensors scheme (fp8,
	// int8, int4).
	Type string
	// Threads is the number of workers; 0 means GOMAXPROCS.
	Threads int
	// Pure turns off llama-quantize's per-tensor mixes (GGUF only).
	Pure bool
	// Skip lists globs of tensor names left unquantized.
	Skip []string
	// GroupSize is the int4 group size (safetensors only): 32, 64 or 128
	// (0 means 128), or -1 for channel-wise; see ctensors.ValidGroupSize.
	GroupSize int
	// LeaveOutput keeps output.weight unquantized (GGUF only).
	LeaveOutput bool
	// AllowNonFinite accepts NaN and Inf values, in quantized tensors and in
	// float tensors copied unchanged, instead of failing.
	AllowNonFinite bool
	// Progress is called with the input bytes handled so far.
	Progress func(done int64)
	// Profile, if set, receives where the time went (GGUF only; a
	// safetensors conversion leaves it zero).
	Profile *Profile
}

// Profile is where a GGUF quantization spent its time, stage by stage.
type Profile = ggufquant.Profile

// SIMD names the instruction set the kernels use in this process: scalar,
// sse2, avx2, avx512 or avx512vbmi (the best the CPU has, capped by
// GANTRY_SIMD).
func SIMD() string { return simd.Current().String() }

// Format is a model file format.
type Format string

const (
	GGUF        Format = "gguf"
	Safetensors Format = "safetensors"
)

// Detect tells a GGUF file from a safetensors checkpoint directory.
func Detect(in string) (Format, error) {
	info, err := os.Stat(in)
	if err != nil {
		return "", err
	}
	if info.IsDir() {
		if _, err := os.Stat(filepath.Join(in, "config.json")); err != nil {
			return "", fmt.Errorf("%s: a checkpoint directory needs a config.json", in)
		}
		return Safetensors, nil
	}
	f, err := os.Open(in)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err == nil && bytes.Equal(magic, []byte("GGUF")) {
		return GGUF, nil
	}
	if strings.HasSuffix(in, ".safetensors") {
		return "", fmt.Errorf("%s: quantize the checkpoint directory that holds it (with config.json), not the file", in)
	}
	return "", fmt.Errorf("%s: neither a GGUF file nor a safetensors checkpoint directory", in)
}

// InputSize is the number of bytes Progress counts up to: the file's size,
// or the sum of a checkpoint's *.safetensors files.
func InputSize(in string) (int64, error) {
	info, err := os.Stat(in)
	if err != nil {
		return 0, err
	}
	if !info.IsDir() {
		return info.Size(), nil
	}
	matches, err := filepath.Glob(filepath.Join(in, "*.safetensors"))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			total += fi.Size()
		}
	}
	return total, nil
}

// Quantize reads the model at in (a GGUF file or a safetensors checkpoint
// directory) and writes the quantized model to out atomically.
func Quantize(ctx context.Context, in, out string, opts Options) (quality.Report, error) {
	format, err := Detect(in)
	if err != nil {
		return quality.Report{}, fmt.Errorf("quantize: %w", err)
	}
	t := strings.ToLower(opts.Type)
	switch format {
	case GGUF:
		if t == "fp8" || t == "int8" || t == "int4" {
			return quality.Report{}, fmt.Errorf("quantize %s: %s is for safetensors checkpoints; GGUF takes q8_0, q4_k_m, …", in, t)
		}
		if _, err := ggufquant.ParseType(t); err != nil {
			return quality.Report{}, fmt.Errorf("quantize %s: %w", in, err)
		}
		if opts.GroupSize != 0 {
			return quality.Report{}, fmt.Errorf("quantize %s: group size %d: GGUF types have fixed block sizes; group size is for int4 safetensors checkpoints", in, opts.GroupSize)
		}
		f, err := os.Open(in)
		if err != nil {
			return quality.Report{}, fmt.Errorf("quantize: %w", err)
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return quality.Report{}, fmt.Errorf("quantize: %w", err)
		}
		return ggufquant.Quantize(ctx, f, info.Size(), out, ggufquant.Options{
			Type: t, Threads: opts.Threads, Pure: opts.Pure, Skip: opts.Skip, AllowNonFinite: opts.AllowNonFinite,
			LeaveOutput: opts.LeaveOutput, Progress: opts.Progress, InputName: in, Profile: opts.Profile,
		})
	default:
		switch t {
		case "fp8", "int8", "int4":
		default:
			return quality.Report{}, fmt.Errorf("quantize %s: %q does not apply to safetensors checkpoints; use fp8, int8 or int4", in, opts.Type)
		}
		return ctensors.Convert(ctx, in, out, ctensors.Options{
			Scheme: t, GroupSize: opts.GroupSize, Threads: opts.Threads, Skip: opts.Skip,
			AllowNonFinite: opts.AllowNonFinite, Progress: opts.Progress,
		})
	}
}
