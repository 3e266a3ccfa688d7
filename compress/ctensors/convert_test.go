package ctensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var smallCfg = stgen.Config{Layers: 2, Hidden: 256, Intermediate: 512, Vocab: 384, Heads: 4, KVHeads: 2, Seed: 3, Outliers: 512}

func gen(t testing.TB, cfg stgen.Config) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "in")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), dir, cfg); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openAll maps every tensor name of the checkpoint in dir to its file.
func openAll(t testing.TB, dir string) map[string]*st.File {
	t.Helper()
	m := map[string]*st.File{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	for _, p := range paths {
		f, err := st.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		for _, ti := range f.Tensors() {
			if _, dup := m[ti.Name]; dup {
				t.Fatalf("%s in two files", ti.Name)
			}
			m[ti.Name] = f
		}
	}
	return m
}

func readFloats(t testing.TB, f *st.File, name string) ([]float32, st.TensorInfo) {
	t.Helper()
	ti, _ := f.Lookup(name)
	b, err := f.ReadTensor(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, ti.NumElements())
	if err := st.DecodeFloat32(x, b, ti.DType); err != nil {
		t.Fatal(err)
	}
	return x, ti
}

// dequant reconstructs a quantized weight from the output files alone,
// the way a loader would, independently of the conversion code path.
func dequant(t testing.TB, out map[string]*st.File, module, scheme string, rows, cols int) []float32 {
	t.Helper()
	y := make([]float32, rows*cols)
	scales, sti := readFloats(t, out[module+".weight_scale"], module+".weight_scale")
	groups := int(sti.Shape[1])
	if sti.Shape[0] != int64(rows) {
		t.Fatalf("%s scale shape %v", module, sti.Shape)
	}
	if scheme == "fp8" {
		q, qi := readFloats(t, out[module+".weight"], module+".weight")
		if qi.DType != st.F8_E4M3 || groups != 1 || sti.DType != st.F32 {
			t.Fatalf("%s: fp8 dtypes %s %s groups %d", module, qi.DType, sti.DType, groups)
		}
		for i := range y {
			y[i] = q[i] * scales[i/cols]
		}
		return y
	}
	bits := 4
	if scheme == "int8" {
		bits = 8
	}
	pf := out[module+".weight_packed"]
	pti, _ := pf.Lookup(module + ".weight_packed")
	if pti.DType != st.I32 || pti.Shape[0] != int64(rows) || pti.Shape[1] != int64(cols*bits/32) {
		t.Fatalf("%s packed %s%v", module, pti.DType, pti.Shape)
	}
	raw, _ := pf.ReadTensor(context.Background(), module+".weight_packed")
	words := make([]uint32, len(raw)/4)
	for i := range words {
		words[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	shp, _ := out[module+".weight_shape"].ReadTensor(context.Background(), module+".weight_shape")
	if len(shp) != 16 || binary.LittleEndian.Uint64(shp) != uint64(rows) || binary.LittleEndian.Uint64(shp[8:]) != uint64(cols) {
		t.Fatalf("%s weight_shape % x", module, shp)
	}
	codes := make([]int8, rows*cols)
	UnpackInt(codes, words, bits)
	g := cols / groups
	for i := range y {
		r, c := i/cols, i%cols
		y[i] = float32(codes[i]) * scales[r*groups+c/g]
	}
	return y
}

func TestConvertSchemes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		scheme string
		shards int
		typ    string
		maxRel float64 // bound on the whole-model relative RMSE
	}{
		{"fp8", 1, "fp8_e4m3", 0.05},
		{"int8", 2, "int8", 0.03},
		{"int4", 3, "int4_g128", 0.2},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			cfg := smallCfg
			cfg.Shards = tc.shards
			in := gen(t, cfg)
			outDir := filepath.Join(t.TempDir(), "out")
			var last int64
			rep, err := Convert(ctx, in, outDir, Options{Scheme: tc.scheme, Progress: func(n int64) {
				if n < last {
					t.Errorf("progress went back from %d to %d", last, n)
				}
				last = n
			}})
			if err != nil {
				t.Fatal(err)
			}
			inT, outT := openAll(t, in), openAll(t, outDir)
			var total int64
			for _, f := range inT {
				_ = f
			}
			for name, f := range inT {
				ti, _ := f.Lookup(name)
				total += ti.Offsets[1] - ti.Offsets[0]
			}
			if last != total {
				t.Errorf("progress ended at %d, want %d", last, total)
			}
			quantized := map[string]bool{}
			for _, r := range rep.Tensors {
				quantized[r.Name] = true
				if r.Type != tc.typ {
					t.Errorf("%s type %s", r.Name, r.Type)
				}
			}
			for name, f := range inT {
				module := strings.TrimSuffix(name, ".weight")
				ti, _ := f.Lookup(name)
				linear := strings.Contains(name, "_proj.")
				if linear != quantized[name] {
					t.Errorf("%s: quantized=%v", name, quantized[name])
				}
				if !linear {
					a, _ := f.ReadTensor(ctx, name)
					o, ok := outT[name]
					if !ok {
						t.Fatalf("%s missing from output", name)
					}
					b, _ := o.ReadTensor(ctx, name)
					if !bytes.Equal(a, b) {
						t.Errorf("%s changed", name)
					}
					continue
				}
				x, _ := readFloats(t, f, name)
				y := dequant(t, outT, module, tc.scheme, int(ti.Shape[0]), int(ti.Shape[1]))
				var s quality.Stats
				s.Add(x, y)
				var row quality.Tensor
				for _, r := range rep.Tensors {
					if r.Name == name {
						row = r
					}
				}
				// The report must describe what the files hold.
				if math.Abs(s.RelRMSE()-row.RelRMSE) > 1e-9 || s.MaxAbs != row.MaxAbs || s.N != row.Params {
					t.Errorf("%s: report %+v, recomputed rel %g max %g n %d", name, row, s.RelRMSE(), s.MaxAbs, s.N)
				}
				if row.Cosine < 0.97 {
					t.Errorf("%s cosine %g", name, row.Cosine)
				}
			}
			if rep.Summary.RelRMSE > tc.maxRel || rep.Summary.RelRMSE <= 0 {
				t.Errorf("summary rel RMSE %g", rep.Summary.RelRMSE)
			}
			t.Logf("%s: %d tensors, summary rel RMSE %.4g, max abs %.4g, cosine %.6f", tc.scheme, len(rep.Tensors), rep.Summary.RelRMSE, rep.Summary.MaxAbs, rep.Summary.Cosine)

			// Other files copied unchanged; config and index rewritten.
			for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"} {
				a, _ := os.ReadFile(filepath.Join(in, name))
				b, err := os.ReadFile(filepath.Join(outDir, name))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s not copied unchanged (%v)", name, err)
				}
			}
			var config map[string]any
			raw, _ := os.ReadFile(filepath.Join(outDir, "config.json"))
			if err := json.Unmarshal(raw, &config); err != nil {
				t.Fatal(err)
			}
			qc, _ := json.MarshalIndent(config["quantization_config"], "", "  ")
			golden(t, "quantization_config_"+tc.scheme+".golden", append(qc, '\n'))
			if config["hidden_size"].(float64) != 256 {
				t.Errorf("config lost hidden_size")
			}
			if tc.shards > 1 {
				var idx struct {
					Metadata  map[string]any    `json:"metadata"`
					WeightMap map[string]string `json:"weight_map"`
				}
				raw, _ := os.ReadFile(filepath.Join(outDir, "model.safetensors.index.json"))
				if err := json.Unmarshal(raw, &idx); err != nil {
					t.Fatal(err)
				}
				var size int64
				for name, f := range outT {
					if idx.WeightMap[name] != filepath.Base(f.Name()) {
						t.Errorf("index: %s -> %s, is in %s", name, idx.WeightMap[name], f.Name())
					}
					ti, _ := f.Lookup(name)
					size += ti.Offsets[1] - ti.Offsets[0]
				}
				if len(idx.WeightMap) != len(outT) || int64(idx.Metadata["total_size"].(float64)) != size {
					t.Errorf("index: %d entries (want %d), total_size %v (want %d)", len(idx.WeightMap), len(outT), idx.Metadata["total_size"], size)
				}
			}
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden:\n%s\nwant:\n%s", name, got, want)
	}
}

func treeBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func TestOutputIndependentOfThreads(t *testing.T) {
	cfg := smallCfg
	cfg.Shards = 2
	in := gen(t, cfg)
	var outs []map[string][]byte
	var reps []quality.Report
	for _, threads := range []int{1, 3, 8} {
		out := filepath.Join(t.TempDir(), "out")
		rep, err := Convert(context.Background(), in, out, Options{Scheme: "int4", Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, treeBytes(t, out))
		reps = append(reps, rep)
	}
	for i := 1; i < len(outs); i++ {
		if !reflect.DeepEqual(outs[0], outs[i]) {
			t.Errorf("output with run %d differs from run 0", i)
		}
		if !reflect.DeepEqual(reps[0], reps[i]) {
			t.Errorf("report with run %d differs from run 0", i)
		}
	}
}

// poke overwrites element idx of tensor name in the safetensors file at path.
func poke(t *testing.T, path, name string, idx int64, v float32) int64 {
	t.Helper()
	f, err := st.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Lookup(name)
	off := f.DataStart() + ti.Offsets[0] + idx*ti.DType.Size()
	f.Close()
	b := make([]byte, ti.DType.Size())
	if err := st.EncodeFloat32(b, []float32{v}, ti.DType); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	return off
}

func TestNonFinite(t *testing.T) {
	in := gen(t, smallCfg)
	name := "model.layers.1.mlp.up_proj.weight"
	off := poke(t, filepath.Join(in, "model.safetensors"), name, 3*256+5, float32(math.NaN()))
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	_, err := Convert(context.Background(), in, out, Options{Scheme: "fp8"})
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{name, "model.safetensors", fmt.Sprintf("offset %d", off), "[3, 5]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("failed conversion left %v", ents)
	}
	poke(t, filepath.Join(in, "model.safetensors"), name, 7, float32(math.Inf(-1)))
	rep, err := Convert(context.Background(), in, out, Options{Scheme: "int4", AllowNonFinite: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Tensors {
		if math.IsNaN(r.RelRMSE) || math.IsNaN(r.Cosine) {
			t.Errorf("%s: NaN in report", r.Name)
		}
	}
}

func TestSkipAndOptions(t *testing.T) {
	in := gen(t, smallCfg)
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Convert(context.Background(), in, out, Options{Scheme: "int8", Skip: []string{"*.down_proj.weight",
		"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj"}, QuantizeLMHead: true})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rep.Tensors {
		names[r.Name] = true
	}
	if names["model.layers.0.mlp.down_proj.weight"] || names["model.layers.0.self_attn.q_proj.weight"] || !names["model.layers.1.self_attn.q_proj.weight"] || !names["lm_head.weight"] || names["model.embed_tokens.weight"] {
		t.Errorf("quantized set %v", names)
	}
	raw, _ := os.ReadFile(filepath.Join(out, "config.json"))
	var config struct {
		Q struct{ Ignore []string } `json:"quantization_config"`
	}
	json.Unmarshal(raw, &config)
	want := []string{"model.layers.0.mlp.down_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.q_proj",
		"model.layers.0.self_attn.v_proj", "model.layers.1.mlp.down_proj"}
	if !reflect.DeepEqual(config.Q.Ignore, want) {
		t.Errorf("ignore %v, want %v", config.Q.Ignore, want)
	}
	if _, err := Convert(context.Background(), in, out, Options{Scheme: "int8"}); err == nil {
		t.Error("converting into a non-empty directory: no error")
	}
	if _, err := Convert(context.Background(), out, filepath.Join(t.TempDir(), "o"), Options{Scheme: "int8"}); !errors.Is(err, ErrAlreadyQuantized) {
		t.Errorf("converting a quantized checkpoint: %v", err)
	}
	if _, err := Convert(context.Background(), in, filepath.Join(t.TempDir(), "o"), Options{Scheme: "nf4"}); err == nil {
		t.Error("unknown scheme: no error")
	}
	// A group size vLLM cannot serve is refused (it used to leave every
	// layer dense under an int4 config); see rules_test.go.
	if _, err := Convert(context.Background(), in, filepath.Join(t.TempDir(), "o"), Options{Scheme: "int4", GroupSize: 384}); err == nil {
		t.Error("group 384: no error")
	}
	rep, err = Convert(context.Background(), in, filepath.Join(t.TempDir(), "o"), Options{Scheme: "int4", GroupSize: -1})
	if err != nil || len(rep.Tensors) != 14 || rep.Tensors[0].Type != "int4" {
		t.Errorf("per-channel int4: %d tensors, %v", len(rep.Tensors), err)
	}
}

func TestCorruptInputNamed(t *testing.T) {
	in := gen(t, smallCfg)
	p := filepath.Join(in, "model.safetensors")
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	_, err := Convert(context.Background(), in, filepath.Join(t.TempDir(), "out"), Options{Scheme: "fp8"})
	var fe *st.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, st.ErrTruncated) || !strings.Contains(err.Error(), p) || fe.Tensor == "" {
		t.Fatalf("err = %v", err)
	}
}

func TestCancel(t *testing.T) {
	in := gen(t, smallCfg)
	parent := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := Convert(ctx, in, filepath.Join(parent, "out"), Options{Scheme: "int4", Threads: 2, Progress: func(int64) {
		if n++; n == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("cancelled conversion left %v", ents)
	}
}

// TestOutputCanonical checks that each output shard is in the safetensors
// package's canonical form: reading it and writing it back is identical.
func TestOutputCanonical(t *testing.T) {
	in := gen(t, smallCfg)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Convert(context.Background(), in, out, Options{Scheme: "int4"}); err != nil {
		t.Fatal(err)
	}
	f, err := st.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	w, err := st.NewWriter(&buf, f.Metadata(), f.Tensors())
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors() {
		b, err := f.ReadTensor(context.Background(), ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if !bytes.Equal(orig, buf.Bytes()) {
		t.Error("output shard is not canonical")
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata not carried over: %v", f.Metadata())
	}
}
