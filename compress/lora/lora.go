package lora

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Version is part of every content key of a release with adapters;
// planner.FuserVersion must equal it. Bump it whenever Merge's output for
// the same inputs would change.
const Version = "gantry-lora/1"

// Adapter is one LoRA adapter to merge.
type Adapter struct {
	// Path is a PEFT adapter directory (adapter_config.json and
	// adapter_model.safetensors) for a safetensors base, or a GGUF LoRA
	// file for a GGUF base.
	Path string
	// Scale multiplies the adapter's own scaling (lora_alpha / r, or
	// lora_alpha / √r with use_rslora). It is used as given: 0 makes the
	// adapter's deltas zero (modules_to_save tensors still replace).
	Scale float64
}

// Report says what Merge did.
type Report struct {
	// Tensors is the number of tensors written.
	Tensors int `json:"tensors"`
	// Merged is the number of base tensors that received at least one
	// low-rank delta.
	Merged int `json:"merged"`
	// Replaced is the number of base tensors replaced by an adapter's
	// saved copy (PEFT modules_to_save).
	Replaced int `json:"replaced"`
	// Bytes is the size of the weight files written (the .safetensors
	// shards or the .gguf file).
	Bytes int64 `json:"bytes"`
}

// Sentinel errors wrapped by Merge's errors; test with errors.Is.
var (
	// ErrUnsupported is wrapped by the refusal of an adapter Merge cannot
	// merge exactly (DoRA, other PEFT types, quantized bases, …).
	ErrUnsupported = errors.New("unsupported adapter")
	// ErrShape is wrapped when an adapter's matrices do not fit the base
	// tensor.
	ErrShape = errors.New("shape mismatch")
	// ErrMissing is wrapped when an adapter names a tensor the base does
	// not have, a target module matches nothing, or one half of a pair
	// is missing.
	ErrMissing = errors.New("missing tensor")
	// ErrNonFinite is wrapped for a NaN or Inf in an adapter, in a merged
	// base tensor, or in a merged result (an overflow of the base dtype).
	ErrNonFinite = errors.New("non-finite value")
)

// Merge writes base with every adapter merged, in order. format is
// "safetensors" or "gguf".
//
// For "safetensors", base is a checkpoint directory (model.safetensors, or
// shards with model.safetensors.index.json, plus config.json and the
// tokenizer files, which are copied unchanged) and out is a directory that
// Merge creates: it is built in a temporary directory next to out and
// renamed to out at the end, so out appears complete or not at all. out
// must not exist, or be an empty directory.
//
// For "gguf", base is a .gguf file and out is the .gguf file to write,
// through a temporary file in out's directory renamed over out at the end
// (an existing file is replaced, as Quantize replaces it).
//
// On error nothing is left at out.
func Merge(ctx context.Context, format, base, out string, adapters []Adapter) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	if len(adapters) == 0 {
		return Report{}, errors.New("lora: merge: no adapters")
	}
	for i, a := range adapters {
		if math.IsNaN(a.Scale) || math.IsInf(a.Scale, 0) {
			return Report{}, fmt.Errorf("lora: adapter %d (%s): scale is not finite: %w", i+1, a.Path, ErrNonFinite)
		}
	}
	if out == "" {
		return Report{}, errors.New("lora: merge: empty output path")
	}
	if sameFile(base, out) {
		return Report{}, fmt.Errorf("lora: merge: output %s is the base", out)
	}
	switch strings.ToLower(format) {
	case "safetensors":
		return mergeSafetensors(ctx, base, out, adapters)
	case "gguf":
		return mergeGGUF(ctx, base, out, adapters)
	}
	return Report{}, fmt.Errorf("lora: merge: format %q: want safetensors or gguf", format)
}

func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// factors are one adapter's low-rank matrices for one base tensor, laid out
// for the base tensor's row-major [rows][cols] storage:
//
//	delta[i][j] = scale · Σ_k l[i·rank+k] · r[k·cols+j]
//
// Values are float32 values held as float64, so every product is exact
// and only the sums and the scaling round.
type factors struct {
	rank  int
	l, r  []float64
	scale float64
}

// step is what one adapter does to one base tensor: replace it (rows are
// read from repl), add a delta, or both (replace first).
type step struct {
	repl func(ctx context.Context, row0 int, dst []float64) error // nil: no replacement
	f    *factors
}

// kernel computes merged rows. acc must hold n·cols values and holds the
// base rows [row0, row0+n) on entry; d is scratch of cols values.
func applyDelta(acc []float64, row0, n, cols int, f *factors, d []float64) {
	r := f.rank
	for i := 0; i < n; i++ {
		row := acc[i*cols : (i+1)*cols]
		for j := range d {
			d[j] = 0
		}
		li := f.l[(row0+i)*r : (row0+i+1)*r]
		// Four ranks per pass over d, summed in the same order (k
		// ascending) as one rank at a time. Products of float32 values
		// are exact in float64, so fused multiply-adds round the same.
		k := 0
		for ; k+4 <= r; k += 4 {
			l0, l1, l2, l3 := li[k], li[k+1], li[k+2], li[k+3]
			r0 := f.r[k*cols : (k+1)*cols]
			r1 := f.r[(k+1)*cols : (k+2)*cols][:len(r0)]
			r2 := f.r[(k+2)*cols : (k+3)*cols][:len(r0)]
			r3 := f.r[(k+3)*cols : (k+4)*cols][:len(r0)]
			dd := d[:len(r0)]
			for j, v := range r0 {
				s := dd[j] + float64(l0*v)
				s += float64(l1 * r1[j])
				s += float64(l2 * r2[j])
				s += float64(l3 * r3[j])
				dd[j] = s
			}
		}
		for ; k < r; k++ {
			lk := li[k]
			rk := f.r[k*cols : (k+1)*cols]
			for j, v := range rk {
				d[j] += float64(lk * v)
			}
		}
		for j, v := range d {
			row[j] += float64(f.scale * v)
		}
	}
}

// roundOdd32 rounds x to float32 with round-to-odd: exact values stay,
// inexact ones are truncated toward zero with the last bit set. Rounding
// that result to nearest-even F16 or BF16 (11 and 8 significant bits, far
// fewer than float32's 24) gives x correctly rounded once, with no
// double-rounding error.
func roundOdd32(x float64) float32 {
	f := float32(x)
	if float64(f) == x || x != x {
		return f
	}
	if math.Abs(float64(f)) > math.Abs(x) {
		f = math.Nextafter32(f, 0)
	}
	return math.Float32frombits(math.Float32bits(f) | 1)
}

func finite32(f float32) bool {
	return math.Float32bits(f)&0x7f800000 != 0x7f800000
}

// chunkRows is the number of rows processed at a time for a tensor of
// cols columns: about 1 MiB of float64 accumulators, at least one row.
func chunkRows(cols int) int {
	return max(1, (1<<17)/max(cols, 1))
}
