package lora

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// tinyST is the safetensors base of most tests: 2 layers, 64 wide, 2 KV
// heads (k/v are 32×64), 96-wide MLP, 80 tokens.
func tinyST(dt st.DType, shards int) stgen.Config {
	return stgen.Config{Layers: 2, Hidden: 64, Intermediate: 96, Vocab: 80, Heads: 4, KVHeads: 2, DType: dt, Shards: shards, Seed: 3}
}

func tinyGGUF(t ggml.Type) ggufgen.Config {
	return ggufgen.Config{Layers: 2, Embd: 64, FF: 96, Vocab: 64, Heads: 4, HeadsKV: 2, Type: t, Seed: 5}
}

func writeSTBase(t testing.TB, dir string, cfg stgen.Config) {
	t.Helper()
	if err := stgen.WriteLlamaCheckpoint(context.Background(), dir, cfg); err != nil {
		t.Fatal(err)
	}
}

// tensor is a test tensor: values are exactly representable in dtype.
type tensor struct {
	name  string
	dtype st.DType
	shape []int64
	vals  []float32
}

// randMatrix returns rows×cols values of magnitude about amp, rounded to
// dtype so that the file holds them exactly.
func randMatrix(rng *rand.Rand, rows, cols int, amp float64, dt st.DType) []float32 {
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32((rng.Float64()*2 - 1) * amp)
	}
	return roundTo(v, dt)
}

func roundTo(v []float32, dt st.DType) []float32 {
	b := make([]byte, len(v)*int(dt.Size()))
	if err := st.EncodeFloat32(b, v, dt); err != nil {
		panic(err)
	}
	out := make([]float32, len(v))
	if err := st.DecodeFloat32(out, b, dt); err != nil {
		panic(err)
	}
	return out
}

func writeSTFile(t testing.TB, path string, ts []tensor) {
	t.Helper()
	infos := make([]st.TensorInfo, len(ts))
	for i, x := range ts {
		infos[i] = st.TensorInfo{Name: x.name, DType: x.dtype, Shape: x.shape}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	w, err := st.NewWriter(bw, map[string]string{"format": "pt"}, infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		b := make([]byte, len(x.vals)*int(x.dtype.Size()))
		if err := st.EncodeFloat32(b, x.vals, x.dtype); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(x.name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// peftDir writes a PEFT adapter directory.
func peftDir(t testing.TB, dir string, config map[string]any, ts []tensor) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSTFile(t, filepath.Join(dir, "adapter_model.safetensors"), ts)
	return dir
}

func loraConfig(r int, alpha float64, targets ...string) map[string]any {
	return map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
		"target_modules": targets, "bias": "none", "lora_dropout": 0.05, "fan_in_fan_out": false,
		"use_rslora": false, "use_dora": false, "init_lora_weights": true, "modules_to_save": nil,
		"rank_pattern": map[string]any{}, "alpha_pattern": map[string]any{}, "inference_mode": true,
		"base_model_name_or_path": "models/llama", "revision": nil, "layers_to_transform": nil,
	}
}

// loraPair returns PEFT's A (r×in) and B (out×r) tensors for a module of
// a base of out×in.
func loraPair(rng *rand.Rand, module string, out, in, r int, dt st.DType) (a, b tensor) {
	p := "base_model.model." + module
	a = tensor{p + ".lora_A.weight", dt, []int64{int64(r), int64(in)}, randMatrix(rng, r, in, 0.2, dt)}
	b = tensor{p + ".lora_B.weight", dt, []int64{int64(out), int64(r)}, randMatrix(rng, out, r, 0.2, dt)}
	return a, b
}

// stModel is a checkpoint's tensors decoded to float64.
type stModel map[string]stValue

type stValue struct {
	dtype st.DType
	shape []int64
	raw   []byte
	vals  []float64
}

func readSTDir(t testing.TB, dir string) stModel {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if len(paths) == 0 {
		t.Fatalf("%s: no safetensors files", dir)
	}
	m := stModel{}
	for _, p := range paths {
		f, err := st.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range f.Tensors() {
			raw, err := f.ReadTensor(context.Background(), ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			v32 := make([]float32, ti.NumElements())
			if err := st.DecodeFloat32(v32, raw, ti.DType); err != nil {
				t.Fatal(err)
			}
			v := make([]float64, len(v32))
			for i, x := range v32 {
				v[i] = float64(x)
			}
			m[ti.Name] = stValue{ti.DType, ti.Shape, raw, v}
		}
		f.Close()
	}
	return m
}

// refDelta is one adapter's contribution to one tensor in the reference:
// delta[i][j] = scale · Σ_k B[i][k]·A[k][j] for a rows×cols base, or with
// transposed, delta[i][j] = scale · Σ_k B[j][k]·A[k][i].
type refDelta struct {
	a, b       []float32 // A is r×(cols, or rows), B (rows, or cols)×r
	r          int
	scale      float64
	transposed bool
	replace    []float32 // replaces the tensor before the delta
}

// refMerge is the float64 reference: a plain triple loop.
func refMerge(w []float64, rows, cols int, ds []refDelta) []float64 {
	out := append([]float64(nil), w...)
	for _, d := range ds {
		if d.replace != nil {
			for i, v := range d.replace {
				out[i] = float64(v)
			}
		}
		if d.a == nil {
			continue
		}
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				var s float64
				for k := 0; k < d.r; k++ {
					if d.transposed {
						s += float64(d.b[j*d.r+k]) * float64(d.a[k*rows+i])
					} else {
						s += float64(d.b[i*d.r+k]) * float64(d.a[k*cols+j])
					}
				}
				out[i*cols+j] += float64(d.scale * s)
			}
		}
	}
	return out
}

// roundRef rounds x to the nearest value of dt, ties to even, by
// searching the neighbours of a first guess: independent of the package's
// round-to-odd path.
func roundRef(x float64, dt st.DType) float64 {
	switch dt {
	case st.F32:
		return float64(float32(x))
	case st.F64:
		return x
	}
	enc := func(f float32) uint16 {
		if dt == st.F16 {
			return st.F32ToF16(f)
		}
		return st.F32ToBF16(f)
	}
	dec := func(h uint16) float64 {
		if dt == st.F16 {
			return float64(st.F16ToF32(h))
		}
		return float64(st.BF16ToF32(h))
	}
	h0 := enc(float32(x))
	best, bestD := h0, math.Inf(1)
	for _, c := range []uint16{h0 - 1, h0, h0 + 1} {
		v := dec(c)
		if math.IsNaN(v) || math.Signbit(v) != math.Signbit(dec(h0)) && v != 0 {
			continue
		}
		d := math.Abs(v - x)
		if d < bestD || d == bestD && c&1 == 0 {
			best, bestD = c, d
		}
	}
	return dec(best)
}

// ulps is the distance in units in the last place of dt between two values
// of dt (0 when equal).
func ulps(a, b float64, dt st.DType) int {
	if a == b {
		return 0
	}
	var ua, ub int64
	switch dt {
	case st.F32:
		ua, ub = int64(ordered32(float32(a))), int64(ordered32(float32(b)))
	case st.F16, st.BF16:
		ua, ub = int64(ordered16(a, dt)), int64(ordered16(b, dt))
	}
	d := ua - ub
	if d < 0 {
		d = -d
	}
	return int(d)
}

func ordered32(f float32) int32 {
	b := int32(math.Float32bits(f))
	if b < 0 {
		b = math.MinInt32 - b
	}
	return b
}

func ordered16(x float64, dt st.DType) int32 {
	var h uint16
	if dt == st.F16 {
		h = st.F32ToF16(float32(x))
	} else {
		h = st.F32ToBF16(float32(x))
	}
	b := int32(h)
	if h&0x8000 != 0 {
		b = -int32(h & 0x7fff)
	}
	return b
}

// checkTensor compares a merged tensor with the rounded reference and
// reports the largest ULP difference.
func checkTensor(t testing.TB, name string, got stValue, ref []float64, maxULP int) {
	t.Helper()
	if len(got.vals) != len(ref) {
		t.Fatalf("%s: %d values, reference has %d", name, len(got.vals), len(ref))
	}
	worst, at, exact := 0, -1, 0
	for i, g := range got.vals {
		want := roundRef(ref[i], got.dtype)
		u := ulps(g, want, got.dtype)
		if u == 0 {
			exact++
		}
		if u > worst {
			worst, at = u, i
		}
	}
	if worst > maxULP {
		t.Errorf("%s (%s): value %d is %v, reference %v rounded is %v: %d ULP (limit %d); %d of %d exact",
			name, got.dtype, at, got.vals[at], ref[at], roundRef(ref[at], got.dtype), worst, maxULP, exact, len(ref))
	}
}

// noOutput checks that nothing was left at out or next to it.
func noOutput(t testing.TB, out string, before []string) {
	t.Helper()
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed merge (stat: %v)", out, err)
	}
	after := dirNames(t, filepath.Dir(out))
	if strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("directory of the output changed: before %v, after %v", before, after)
	}
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

// GGUF fixtures.

type gtensor struct {
	name string
	typ  ggml.Type
	ne   []int64   // ggml order
	vals []float32 // row-major, ne0 contiguous; for Q8_0, before quantization
}

func encodeGGMLTensor(t testing.TB, g gtensor) []byte {
	t.Helper()
	n, err := g.typ.RowSize(int64(len(g.vals)))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	switch g.typ {
	case ggml.F32:
		ggml.EncodeF32(b, g.vals)
	case ggml.F16:
		ggml.EncodeF16(b, g.vals)
	case ggml.BF16:
		ggml.EncodeBF16(b, g.vals)
	default:
		if _, err := ggml.Quantize(g.typ, b, g.vals); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// decoded returns the values the file holds for g (after quantization).
func decoded(t testing.TB, g gtensor) []float32 {
	t.Helper()
	v := make([]float32, len(g.vals))
	if err := ggml.Dequantize(g.typ, v, encodeGGMLTensor(t, g)); err != nil {
		t.Fatal(err)
	}
	return v
}

func writeGGUFFile(t testing.TB, path string, kvs []gguf.KV, ts []gtensor) {
	t.Helper()
	infos := make([]gguf.TensorInfo, len(ts))
	for i, g := range ts {
		infos[i] = gguf.TensorInfo{Name: g.name, Shape: g.ne, Type: g.typ}
	}
	fw, err := gguf.Create(context.Background(), path, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Abort()
	for _, g := range ts {
		if _, err := fw.Write(encodeGGMLTensor(t, g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func loraKV(arch string, alpha float32) []gguf.KV {
	return []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: alpha},
	}
}

// ggufLoRA returns lora_a (ne [n_in, r]) and lora_b (ne [r, n_out]) for a
// base tensor of ne [n_in, n_out].
func ggufLoRA(rng *rand.Rand, base string, nIn, nOut, r int, ta, tb ggml.Type) (a, b gtensor) {
	a = gtensor{base + ".lora_a", ta, []int64{int64(nIn), int64(r)}, randF32(rng, nIn*r, 0.2)}
	b = gtensor{base + ".lora_b", tb, []int64{int64(r), int64(nOut)}, randF32(rng, r*nOut, 0.2)}
	return a, b
}

func randF32(rng *rand.Rand, n int, amp float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((rng.Float64()*2 - 1) * amp)
	}
	return v
}

type ggufModel struct {
	f    *gguf.File
	osf  *os.File
	vals map[string][]float64
	raw  map[string][]byte
}

func readGGUF(t testing.TB, path string) *ggufModel {
	t.Helper()
	f, osf, err := openGGUF(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osf.Close() })
	m := &ggufModel{f: f, osf: osf, vals: map[string][]float64{}, raw: map[string][]byte{}}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		raw := make([]byte, ti.Bytes())
		if _, err := f.TensorReader(ti).ReadAt(raw, 0); err != nil {
			t.Fatal(err)
		}
		m.raw[ti.Name] = raw
		if ti.Type.Quantized() {
			continue
		}
		v32 := make([]float32, ti.Elements())
		if err := ggml.Dequantize(ti.Type, v32, raw); err != nil {
			t.Fatal(err)
		}
		v := make([]float64, len(v32))
		for i, x := range v32 {
			v[i] = float64(x)
		}
		m.vals[ti.Name] = v
	}
	return m
}

func ggmlToST(t ggml.Type) st.DType {
	switch t {
	case ggml.F16:
		return st.F16
	case ggml.BF16:
		return st.BF16
	}
	return st.F32
}
