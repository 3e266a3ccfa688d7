package ggufquant

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/quality"
)

var update = flag.Bool("update", false, "rewrite testdata/*.sha256 golden digests")

func tinyModel(t testing.TB, cfg ggufgen.Config) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.gguf")
	if err := ggufgen.WriteLlama(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func quantizeBytes(t *testing.T, in []byte, opts Options) ([]byte, *gguf.File) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.gguf")
	if _, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, opts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), "out.gguf")
	if err != nil {
		t.Fatalf("output does not read back: %v", err)
	}
	return b, f
}

func tensorData(t *testing.T, f *gguf.File, ti *gguf.TensorInfo) []byte {
	t.Helper()
	b := make([]byte, ti.Bytes())
	if _, err := f.TensorReader(ti).ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQuantizeEndToEnd checks, for every target with and without --pure,
// that each output tensor is exactly the reference kernel applied to the
// input rows (or the input bytes when copied), that dequantizing stays
// within the type's error bound, and that the report covers the quantized
// tensors.
func TestQuantizeEndToEnd(t *testing.T) {
	cfg := ggufgen.Tiny()
	cfg.Layers, cfg.Vocab = 2, 300 // 20 runs below: keep each small
	_, in := tinyModel(t, cfg)
	src, err := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	if err != nil {
		t.Fatal(err)
	}
	bound := map[ggml.Type]float64{ggml.Q8_0: 0.01, ggml.Q4_0: 0.15, ggml.Q4_1: 0.13, ggml.Q5_0: 0.07,
		ggml.Q5_1: 0.06, ggml.Q4_K: 0.11, ggml.Q5_K: 0.06, ggml.Q6_K: 0.03}
	for _, typ := range Types() {
		for _, pure := range []bool{false, true} {
			out := filepath.Join(t.TempDir(), "out.gguf")
			rep, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{Type: typ, Pure: pure, Threads: 2})
			if err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			b, _ := os.ReadFile(out)
			f, err := gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), "out.gguf")
			if err != nil {
				t.Fatal(err)
			}
			nq := 0
			for i := range f.Tensors {
				ot := &f.Tensors[i]
				it, _ := src.Tensor(ot.Name)
				raw := tensorData(t, src, it)
				got := tensorData(t, f, ot)
				if ot.Type == it.Type {
					if !bytes.Equal(raw, got) {
						t.Errorf("%s: copied tensor %s differs", typ, ot.Name)
					}
					continue
				}
				nq++
				x := make([]float32, it.Elements())
				ggml.Dequantize(it.Type, x, raw)
				want := make([]byte, ot.Bytes())
				if _, err := ggml.Quantize(ot.Type, want, x); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want, got) {
					t.Errorf("%s pure=%v: %s (%v) differs from the kernel's bytes", typ, pure, ot.Name, ot.Type)
				}
				y := make([]float32, len(x))
				ggml.Dequantize(ot.Type, y, got)
				var ee, xx float64
				for k := range x {
					ee += float64(x[k]-y[k]) * float64(x[k]-y[k])
					xx += float64(x[k]) * float64(x[k])
				}
				if r := math.Sqrt(ee / xx); r > bound[ot.Type] {
					t.Errorf("%s: %s (%v) rel RMSE %.4f > %.4f", typ, ot.Name, ot.Type, r, bound[ot.Type])
				}
			}
			if len(rep.Tensors) != nq || nq == 0 {
				t.Errorf("%s: report has %d rows, %d tensors quantized", typ, len(rep.Tensors), nq)
			}
			if s := rep.Summary; s.Cosine < 0.99 || s.RelRMSE <= 0 || s.RelRMSE > 0.15 || s.MaxAbs <= 0 {
				t.Errorf("%s: summary %+v", typ, s)
			}
			if ft, _ := f.Get("general.file_type"); ft != fileTypes[mustParse(typ).Name].FType {
				t.Errorf("%s: file_type %v", typ, ft)
			}
		}
	}
}

func mustParse(s string) FileType { ft, _ := ParseType(s); return ft }

// Output bytes must not depend on the thread count; the report neither.
func TestThreadIndependence(t *testing.T) {
	cfg := ggufgen.Tiny()
	cfg.Embd, cfg.FF = 512, 1024 // rows of 512 and 1024 values: several units per tensor
	_, in := tinyModel(t, cfg)
	var first []byte
	for _, threads := range []int{1, 2, 5} {
		out, _ := quantizeBytes(t, in, Options{Type: "q4_k_m", Threads: threads})
		if first == nil {
			first = out
		} else if !bytes.Equal(first, out) {
			t.Errorf("threads=%d: output differs from threads=1", threads)
		}
	}
}

// Golden digests of the tiny model's quantized files guard against any
// change of output; refresh with go test -update after a deliberate one.
func TestGolden(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	for _, typ := range []string{"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"} {
		out, _ := quantizeBytes(t, in, Options{Type: typ})
		sum := sha256.Sum256(out)
		got := hex.EncodeToString(sum[:]) + "\n"
		path := filepath.Join("testdata", "tiny-"+typ+".sha256")
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if string(want) != got {
			t.Errorf("%s: digest %s, golden %s", typ, strings.TrimSpace(got), strings.TrimSpace(string(want)))
		}
	}
}

func TestNonFinite(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	src, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	ti, _ := src.Tensor("blk.1.ffn_up.weight")
	bad := append([]byte(nil), in...)
	elem := int64(777)
	off := src.DataOffset + ti.Offset + 2*elem
	bad[off], bad[off+1] = 0x00, 0x7e // f16 NaN
	out := filepath.Join(t.TempDir(), "out.gguf")
	_, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), out, Options{Type: "q8_0", InputName: "bad.gguf"})
	var nf *NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("want NonFiniteError, got %v", err)
	}
	if nf.Tensor != "blk.1.ffn_up.weight" || nf.Index != elem || nf.Offset != off || nf.File != "bad.gguf" {
		t.Errorf("error %+v; want element %d at offset %d", nf, elem, off)
	}
	for _, s := range []string{"bad.gguf", "blk.1.ffn_up.weight", "offset"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed run left %s", out)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("failed run left %d files", len(ents))
	}
	if _, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), out, Options{Type: "q8_0", AllowNonFinite: true}); err != nil {
		t.Errorf("AllowNonFinite: %v", err)
	}
}

func TestInputTypes(t *testing.T) {
	// BF16 and F32 inputs quantize too (F16 is covered above).
	for _, typ := range []ggml.Type{ggml.BF16, ggml.F32} {
		cfg := ggufgen.Tiny()
		cfg.Type = typ
		_, in := tinyModel(t, cfg)
		out, f := quantizeBytes(t, in, Options{Type: "q5_k_m"})
		if len(out) == 0 || len(f.Tensors) != 39 {
			t.Errorf("%v input: %d tensors", typ, len(f.Tensors))
		}
	}
}

func TestCorruptInput(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	out := filepath.Join(t.TempDir(), "out.gguf")
	_, err := Quantize(context.Background(), bytes.NewReader(in[:len(in)/2]), int64(len(in)/2), out, Options{Type: "q8_0", InputName: "half.gguf"})
	var ge *gguf.Error
	if !errors.As(err, &ge) || ge.File != "half.gguf" || ge.Tensor == "" {
		t.Errorf("truncated input: %v", err)
	}
	if _, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{Type: "q9"}); err == nil {
		t.Error("bad type: want error")
	}
}

func TestCancel(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	out := filepath.Join(t.TempDir(), "out.gguf")
	_, err := Quantize(ctx, bytes.NewReader(in), int64(len(in)), out, Options{Type: "q4_k_m", Progress: func(int64) {
		calls++
		if calls == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("cancelled run left %d files", len(ents))
	}
}

func TestProgressMonotonic(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	var last int64
	src, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in")
	var total int64
	for i := range src.Tensors {
		total += src.Tensors[i].Bytes()
	}
	out := filepath.Join(t.TempDir(), "out.gguf")
	_, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{Type: "q4_0", Progress: func(n int64) {
		if n < last {
			t.Errorf("progress went back: %d after %d", n, last)
		}
		last = n
	}})
	if err != nil {
		t.Fatal(err)
	}
	if last != total {
		t.Errorf("progress ended at %d, want %d", last, total)
	}
}

func TestErrorStatsMatchesQuality(t *testing.T) {
	x := make([]float32, 1003)
	y := make([]float32, len(x))
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
		y[i] = x[i] + float32(i%7-3)*1e-3
	}
	var want quality.Stats
	want.Add(x, y)
	got := errorStats(x, y)
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(a)) }
	if got.N != want.N || got.MaxAbs != want.MaxAbs || !close(got.SumXX, want.SumXX) || !close(got.SumYY, want.SumYY) ||
		!close(got.SumXY, want.SumXY) || !close(got.SumEE, want.SumEE) {
		t.Errorf("errorStats = %+v, quality = %+v", got, want)
	}
	if firstNonFinite(x) != -1 {
		t.Error("finite input flagged")
	}
	x[500] = float32(math.Inf(-1))
	if firstNonFinite(x) != 500 {
		t.Error("-Inf not found")
	}
}
