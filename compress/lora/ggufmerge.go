package lora

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
)

// GGUF LoRA metadata keys and tensor suffixes, as llama.cpp's
// convert_lora_to_gguf.py writes them and src/llama-adapter.cpp reads them.
const (
	keyArch      = "general.architecture"
	keyType      = "general.type"
	keyAdapter   = "adapter.type"
	keyAlpha     = "adapter.lora.alpha"
	keyALoRA     = "adapter.alora.invocation_tokens"
	suffixLoRAA  = ".lora_a"
	suffixLoRAB  = ".lora_b"
	tokenEmbd    = "token_embd"
	maxLoRABytes = 1 << 30 // one lora_a or lora_b tensor
)

type ggufPair struct {
	a, b *gguf.TensorInfo
	emb  bool // token_embd: a is ne [r, n_vocab], b is ne [r, n_embd]
}

type ggufAdapter struct {
	path  string
	scale float64 // the user's scale
	alpha float64
	f     *gguf.File
	osf   *os.File
	pairs map[string]*ggufPair
}

func openGGUF(ctx context.Context, path string) (*gguf.File, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	g, err := gguf.Read(ctx, f, fi.Size(), path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return g, f, nil
}

func getString(f *gguf.File, key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

func mergeGGUF(ctx context.Context, base, out string, adapters []Adapter) (rep Report, err error) {
	bf, bos, err := openGGUF(ctx, base)
	if err != nil {
		return rep, fmt.Errorf("lora: base: %w", err)
	}
	defer bos.Close()
	if t, _ := getString(bf, keyType); t == "adapter" {
		return rep, fmt.Errorf("lora: base %s is itself an adapter (general.type = adapter)", base)
	}
	arch, _ := getString(bf, keyArch)

	var ads []*ggufAdapter
	defer func() {
		for _, a := range ads {
			a.osf.Close()
		}
	}()
	for i, a := range adapters {
		ga, err := openGGUFAdapter(ctx, a, bf, arch)
		if ga != nil {
			ads = append(ads, ga)
		}
		if err != nil {
			return rep, fmt.Errorf("lora: adapter %d (%s): %w", i+1, a.Path, err)
		}
	}

	tensors := make([]gguf.TensorInfo, len(bf.Tensors))
	for i, t := range bf.Tensors {
		tensors[i] = gguf.TensorInfo{Name: t.Name, Shape: append([]int64(nil), t.Shape...), Type: t.Type}
	}
	for _, a := range adapters {
		if sameFile(a.Path, out) {
			return rep, fmt.Errorf("lora: output %s is an adapter", out)
		}
	}
	fw, err := gguf.Create(ctx, out, bf.KV, tensors)
	if err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	defer fw.Abort()
	cw := &countWriter{w: fw}
	for i := range bf.Tensors {
		t := &bf.Tensors[i]
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Tensors++
		var steps []func(context.Context) (step, error)
		for _, a := range ads {
			if p, ok := a.pairs[t.Name]; ok {
				steps = append(steps, a.deltaStep(t.Name, p))
			}
		}
		if len(steps) == 0 {
			if _, err := io.Copy(cw, bf.TensorReader(t)); err != nil {
				return rep, fmt.Errorf("lora: tensor %s: %w", t.Name, err)
			}
			continue
		}
		rep.Merged++
		if err := ggufJob(bf, t, cw, steps).run(ctx); err != nil {
			return rep, fmt.Errorf("lora: %w", err)
		}
	}
	if err := fw.Commit(ctx); err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	if fi, err := os.Stat(out); err == nil {
		rep.Bytes = fi.Size()
	} else {
		rep.Bytes = cw.n
	}
	return rep, nil
}

func openGGUFAdapter(ctx context.Context, a Adapter, bf *gguf.File, arch string) (*ggufAdapter, error) {
	f, osf, err := openGGUF(ctx, a.Path)
	if err != nil {
		return nil, err
	}
	ga := &ggufAdapter{path: a.Path, scale: a.Scale, f: f, osf: osf, pairs: map[string]*ggufPair{}}
	if t, ok := getString(f, keyType); !ok || t != "adapter" {
		return ga, fmt.Errorf("%s is not \"adapter\" (not a GGUF LoRA adapter): %w", keyType, ErrUnsupported)
	}
	switch t, _ := getString(f, keyAdapter); t {
	case "lora":
	case "control_vector":
		return ga, fmt.Errorf("%s is control_vector: only LoRA adapters are merged: %w", keyAdapter, ErrUnsupported)
	default:
		return ga, fmt.Errorf("%s is not \"lora\": %w", keyAdapter, ErrUnsupported)
	}
	if _, ok := f.Get(keyALoRA); ok {
		return ga, fmt.Errorf("%s is set: activated LoRA applies after its invocation tokens only and cannot be merged: %w", keyALoRA, ErrUnsupported)
	}
	if aa, _ := getString(f, keyArch); aa != arch {
		return ga, fmt.Errorf("%s is %q, the base's is %q: %w", keyArch, printable(aa), printable(arch), ErrUnsupported)
	}
	if v, ok := f.Get(keyAlpha); ok {
		switch v := v.(type) {
		case float32:
			ga.alpha = float64(v)
		case float64:
			ga.alpha = v
		case uint32:
			ga.alpha = float64(v)
		case int32:
			ga.alpha = float64(v)
		default:
			return ga, fmt.Errorf("%s is a %T, want a number", keyAlpha, v)
		}
		if !isFinite(ga.alpha) {
			return ga, fmt.Errorf("%s is not finite: %w", keyAlpha, ErrNonFinite)
		}
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		var bn string
		var isA bool
		switch {
		case strings.HasSuffix(t.Name, suffixLoRAA):
			bn, isA = strings.TrimSuffix(t.Name, suffixLoRAA), true
		case strings.HasSuffix(t.Name, suffixLoRAB):
			bn = strings.TrimSuffix(t.Name, suffixLoRAB)
		default:
			return ga, fmt.Errorf("adapter tensor %s: not a .lora_a or .lora_b tensor: %w", t.Name, ErrUnsupported)
		}
		if _, ok := bf.Tensor(bn); !ok {
			return ga, fmt.Errorf("adapter tensor %s: the base has no tensor %s: %w", t.Name, bn, ErrMissing)
		}
		if len(t.Shape) != 2 {
			return ga, fmt.Errorf("adapter tensor %s: shape %s, want a matrix: %w", t.Name, dims(t.Shape), ErrShape)
		}
		if n, _ := t.Type.RowSize(t.Elements()); n > maxLoRABytes {
			return ga, fmt.Errorf("adapter tensor %s: %d bytes is not a low-rank matrix: %w", t.Name, n, ErrShape)
		}
		if !dequantizable(t.Type) {
			return ga, fmt.Errorf("adapter tensor %s: type %v cannot be dequantized: %w", t.Name, t.Type, ErrUnsupported)
		}
		p := ga.pairs[bn]
		if p == nil {
			p = &ggufPair{emb: strings.HasPrefix(bn, tokenEmbd)}
			ga.pairs[bn] = p
		}
		if isA {
			p.a = t
		} else {
			p.b = t
		}
	}
	if len(ga.pairs) == 0 {
		return ga, fmt.Errorf("no LoRA tensors: %w", ErrMissing)
	}
	for _, bn := range slices.Sorted(maps.Keys(ga.pairs)) {
		p := ga.pairs[bn]
		if p.a == nil || p.b == nil {
			have, miss := "lora_a", "lora_b"
			if p.a == nil {
				have, miss = miss, have
			}
			return ga, fmt.Errorf("tensor %s: adapter has %s but no %s: %w", bn, have, miss, ErrMissing)
		}
		bt, _ := bf.Tensor(bn)
		if err := checkGGUFShapes(bn, p, bt); err != nil {
			return ga, err
		}
	}
	return ga, nil
}

// checkGGUFShapes checks a pair against its base tensor, in ggml's ne order
// (ne0 is the contiguous dimension). For a base of ne [n_in, n_out], lora_a
// is ne [n_in, r] and lora_b ne [r, n_out]; for token_embd (ne [n_embd,
// n_vocab]) lora_a is ne [r, n_vocab] and lora_b ne [r, n_embd].
func checkGGUFShapes(bn string, p *ggufPair, bt *gguf.TensorInfo) error {
	switch bt.Type {
	case ggml.F32, ggml.F16, ggml.BF16:
	default:
		return fmt.Errorf("tensor %s: the base tensor is %v: only f32, f16 and bf16 tensors can be merged (merge into the F16 model, then quantize): %w", bn, bt.Type, ErrUnsupported)
	}
	if len(bt.Shape) != 2 {
		return fmt.Errorf("tensor %s: base shape %s is not a matrix: %w", bn, dims(bt.Shape), ErrShape)
	}
	a, b := p.a.Shape, p.b.Shape
	var rows, cols int64
	if p.emb {
		if a[0] != b[0] {
			return fmt.Errorf("tensor %s: lora_a has rank %d, lora_b rank %d: %w", bn, a[0], b[0], ErrShape)
		}
		rows, cols = a[1], b[1]
	} else {
		if a[1] != b[0] {
			return fmt.Errorf("tensor %s: lora_a has rank %d, lora_b rank %d (lora_a must be ne [n_in, r]): %w", bn, a[1], b[0], ErrShape)
		}
		rows, cols = b[1], a[0]
	}
	if rows != bt.Shape[1] || cols != bt.Shape[0] {
		return fmt.Errorf("tensor %s: adapter B·A is %d×%d, base is %d×%d (rows × ne0): %w", bn, rows, cols, bt.Shape[1], bt.Shape[0], ErrShape)
	}
	return nil
}

func dequantizable(t ggml.Type) bool {
	switch t {
	case ggml.F32, ggml.F16, ggml.BF16, ggml.Q8_0, ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K:
		return true
	}
	return false
}

// printable returns s if it is a short plain name (an architecture), else
// a placeholder: values from files are not echoed at length.
func printable(s string) string {
	if isIdent(s) {
		return s
	}
	return "(not a plain name)"
}

func (ga *ggufAdapter) readMatrix(t *gguf.TensorInfo) (matrix, error) {
	raw := make([]byte, t.Bytes())
	if _, err := ga.f.TensorReader(t).ReadAt(raw, 0); err != nil {
		return matrix{}, fmt.Errorf("adapter tensor %s: %w", t.Name, err)
	}
	v := make([]float32, t.Elements())
	if err := ggml.Dequantize(t.Type, v, raw); err != nil {
		return matrix{}, fmt.Errorf("adapter tensor %s: %w", t.Name, err)
	}
	return matrix{rows: int(t.Shape[1]), cols: int(t.Shape[0]), v: v}, nil
}

func (ga *ggufAdapter) deltaStep(bn string, p *ggufPair) func(context.Context) (step, error) {
	return func(context.Context) (step, error) {
		a, err := ga.readMatrix(p.a)
		if err != nil {
			return step{}, err
		}
		b, err := ga.readMatrix(p.b)
		if err != nil {
			return step{}, err
		}
		// llama.cpp: scale = user scale · alpha / rank, rank = lora_b ne0;
		// alpha 0 means no alpha scaling.
		scale := ga.scale
		if ga.alpha != 0 {
			scale = ga.scale * ga.alpha / float64(p.b.Shape[0])
		}
		var f *factors
		if p.emb {
			// delta[v][e] = Σ_k a[v][k]·b[e][k]: L = a (n_vocab×r), R = bᵀ.
			f, err = lowRank(a, false, b, true, scale, "adapter tensor "+p.a.Name, "adapter tensor "+p.b.Name)
		} else {
			// delta[o][i] = Σ_k b[o][k]·a[k][i]: L = b (n_out×r), R = a (r×n_in).
			f, err = lowRank(b, false, a, false, scale, "adapter tensor "+p.b.Name, "adapter tensor "+p.a.Name)
		}
		if err != nil {
			return step{}, err
		}
		return step{f: f}, nil
	}
}

func ggufJob(bf *gguf.File, t *gguf.TensorInfo, w io.Writer, steps []func(context.Context) (step, error)) *job {
	cols, rows := int(t.Shape[0]), int(t.Shape[1])
	es := int(t.Type.TypeSize())
	sec := bf.TensorReader(t)
	var raw []byte
	var f32 []float32
	return &job{
		name: t.Name, rows: rows, cols: cols, elemBytes: es,
		readBase: func(row0, n int, dst []float64) error {
			nb := n * cols * es
			if cap(raw) < nb {
				raw, f32 = make([]byte, nb), make([]float32, n*cols)
			}
			if _, err := sec.ReadAt(raw[:nb], int64(row0*cols*es)); err != nil {
				return fmt.Errorf("tensor %s: %w", t.Name, err)
			}
			if err := ggml.Dequantize(t.Type, f32[:n*cols], raw[:nb]); err != nil {
				return fmt.Errorf("tensor %s: %w", t.Name, err)
			}
			return widen(dst, f32[:n*cols], "tensor "+t.Name+" of the base", row0*cols)
		},
		load:   loadSteps(steps),
		encode: func(dst []byte, src []float64) int { return encodeFloats(dst, src, t.Type) },
		write: func(p []byte) error {
			_, err := w.Write(p)
			return err
		},
	}
}

// encodeFloats rounds src once to t (F32, F16 or BF16) into dst and
// returns the index of the first value that is not finite there (-1:
// none). F16 and BF16 go through a round-to-odd float32, which makes the
// two roundings one.
func encodeFloats(dst []byte, src []float64, t ggml.Type) int {
	le := binary.LittleEndian
	bad := -1
	switch t {
	case ggml.F32:
		for i, x := range src {
			v := float32(x)
			if bad < 0 && !finite32(v) {
				bad = i
			}
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case ggml.F16:
		for i, x := range src {
			h := ggml.FP32ToFP16(roundOdd32(x))
			if bad < 0 && h&0x7c00 == 0x7c00 {
				bad = i
			}
			le.PutUint16(dst[2*i:], h)
		}
	case ggml.BF16:
		for i, x := range src {
			h := ggml.FP32ToBF16(roundOdd32(x))
			if bad < 0 && h&0x7f80 == 0x7f80 {
				bad = i
			}
			le.PutUint16(dst[2*i:], h)
		}
	}
	return bad
}
