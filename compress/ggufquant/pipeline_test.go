package ggufquant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
)

// unitReference is the error report as the pipeline defined it before it
// ran in tiles: each unit (max(1, chunkValues/ne0) rows) decoded whole,
// quantized whole, dequantized whole, errorStats over the whole unit, and
// the units merged in file order, all with the scalar kernels.
func unitReference(t *testing.T, in []byte, opts Options) quality.Report {
	t.Helper()
	defer simd.Set(simd.Scalar)()
	f, err := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := MakePlan(f.KV, f.Tensors, opts)
	if err != nil {
		t.Fatal(err)
	}
	var rows []quality.Tensor
	for _, tp := range plan.Tensors {
		if tp.Action != ActionQuantize {
			continue
		}
		src := &f.Tensors[tp.Index]
		ne0, es := tp.Shape[0], src.Type.TypeSize()
		per := max(1, chunkValues/ne0)
		var st quality.Stats
		for r := int64(0); r < src.Rows(); r += per {
			n := min(per, src.Rows()-r) * ne0
			off := f.DataOffset + src.Offset + r*ne0*es
			x := make([]float32, n)
			ggml.Dequantize(src.Type, x, in[off:off+n*es])
			size, _ := tp.To.RowSize(n)
			q := make([]byte, size)
			if tp.To == ggml.F16 {
				ggml.EncodeF16(q, x)
			} else {
				ggml.Quantize(tp.To, q, x)
			}
			y := make([]float32, n)
			ggml.Dequantize(tp.To, y, q)
			st.Merge(errorStats(x, y))
		}
		rows = append(rows, quality.NewTensor(tp.Name, tp.To.String(), st))
	}
	return quality.NewReport(rows)
}

// TestReportUnchanged checks, for every type, every simd level and several
// thread counts, that the output bytes are the same and that the report is
// bit for bit the one of whole-unit processing: tiling, SIMD and the
// out-of-order workers change nothing a user sees.
func TestReportUnchanged(t *testing.T) {
	cfg := ggufgen.Tiny()
	cfg.Layers, cfg.Embd, cfg.FF, cfg.Vocab = 1, 512, 768, 600 // two units of several tiles in the FF matrices
	_, in := tinyModel(t, cfg)
	for _, typ := range Types() {
		opts := Options{Type: typ}
		want := fmt.Sprintf("%#v", unitReference(t, in, opts))
		var first []byte
		for _, l := range simd.Supported() {
			for _, threads := range []int{1, 3} {
				restore := simd.Set(l)
				opts.Threads = threads
				out := filepath.Join(t.TempDir(), "out.gguf")
				rep, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, opts)
				restore()
				if err != nil {
					t.Fatalf("%s %v: %v", typ, l, err)
				}
				b, _ := os.ReadFile(out)
				if first == nil {
					first = b
				} else if !bytes.Equal(b, first) {
					t.Errorf("%s at %v, %d threads: output differs", typ, l, threads)
				}
				if got := fmt.Sprintf("%#v", rep); got != want {
					t.Errorf("%s at %v, %d threads: report differs from whole-unit processing:\n got %s\nwant %s", typ, l, threads, got, want)
				}
			}
		}
	}
}

// TestFirstErrorInFileOrder plants NaNs in an early and a late tensor and
// in a late unit of the early one: whatever the thread count, the error is
// the first in file order, as with one thread.
func TestFirstErrorInFileOrder(t *testing.T) {
	cfg := ggufgen.Tiny()
	cfg.Embd, cfg.FF, cfg.Vocab = 512, 1024, 4096
	_, in := tinyModel(t, cfg)
	src, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	bad := append([]byte(nil), in...)
	plant := func(name string, elem int64) {
		ti, _ := src.Tensor(name)
		off := src.DataOffset + ti.Offset + 2*elem
		bad[off], bad[off+1] = 0x00, 0x7c // f16 +Inf
	}
	// The first quantized matrix in output order (the order of the work),
	// which must have several units, and two later ones.
	plan, err := MakePlan(src.KV, src.Tensors, Options{Type: "q4_0"})
	if err != nil {
		t.Fatal(err)
	}
	var mats []*gguf.TensorInfo
	for _, tp := range plan.Tensors {
		if tp.Action == ActionQuantize {
			mats = append(mats, &src.Tensors[tp.Index])
		}
	}
	early := mats[0]
	if early.Elements() <= 2*chunkValues {
		t.Fatalf("%s has one unit", early.Name)
	}
	plant(early.Name, early.Elements()-3) // in its last unit
	plant(mats[len(mats)/2].Name, 5)
	plant(mats[len(mats)-1].Name, 1)
	for _, threads := range []int{1, 2, 4, 8} {
		out := filepath.Join(t.TempDir(), "out.gguf")
		_, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), out, Options{Type: "q4_0", Threads: threads})
		var nf *NonFiniteError
		if !errors.As(err, &nf) || nf.Tensor != early.Name || nf.Index != early.Elements()-3 {
			t.Errorf("threads=%d: %v, want the Inf at the end of %s", threads, err, early.Name)
		}
		if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
			t.Errorf("threads=%d: failed run left %d files", threads, len(ents))
		}
	}
}

// TestPairErrors plants +Inf in the two units a worker holds in step
// (doPair): whichever of the two fails, and whatever the tile each one
// fails in, the error is the first in file order, and a failure of the
// second unit does not hide one later in the first.
func TestPairErrors(t *testing.T) {
	cfg := ggufgen.Tiny()
	cfg.Embd, cfg.FF, cfg.Vocab = 512, 1024, 4096
	_, in := tinyModel(t, cfg)
	f, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	plan, err := MakePlan(f.KV, f.Tensors, Options{Type: "q8_0"})
	if err != nil {
		t.Fatal(err)
	}
	units, err := cut(f, plan)
	if err != nil {
		t.Fatal(err)
	}
	// The first pair the workers take (even index) of two units to
	// quantize, each of several tiles.
	i := 0
	for ; i+1 < len(units); i += 2 {
		if quantizes(plan, &units[i]) && quantizes(plan, &units[i+1]) && units[i].n > 2*tileValues && units[i+1].n > 2*tileValues {
			break
		}
	}
	if i+1 >= len(units) {
		t.Fatal("no pair of units to quantize")
	}
	type spot struct {
		u    int
		elem int64 // in the unit
	}
	u1, u2 := &units[i], &units[i+1]
	for _, c := range []struct {
		plant []spot
		want  spot
	}{
		{[]spot{{i + 1, 3}}, spot{i + 1, 3}},                                      // the second unit alone
		{[]spot{{i, u1.n - 1}}, spot{i, u1.n - 1}},                                // the first, at its very end
		{[]spot{{i, u1.n - 2}, {i + 1, 0}}, spot{i, u1.n - 2}},                    // the second fails first in time
		{[]spot{{i, tileValues + 1}, {i + 1, u2.n - 1}}, spot{i, tileValues + 1}}, // the first fails first
	} {
		bad := append([]byte(nil), in...)
		for _, p := range c.plant {
			off := units[p.u].inOff + 2*p.elem
			bad[off], bad[off+1] = 0x00, 0x7c // f16 +Inf
		}
		for _, threads := range []int{1, 2} {
			out := filepath.Join(t.TempDir(), "out.gguf")
			_, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), out, Options{Type: "q8_0", Threads: threads})
			w := &units[c.want.u]
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Tensor != plan.Tensors[w.tensor].Name || nf.Index != w.first+c.want.elem {
				t.Errorf("planted %v, %d threads: %v, want element %d of %s", c.plant, threads, err, w.first+c.want.elem, plan.Tensors[w.tensor].Name)
			}
		}
	}
}

// TestProfile checks that a profiled run accounts for its stages and its
// bytes, and prints them.
func TestProfile(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	var p Profile
	out := filepath.Join(t.TempDir(), "out.gguf")
	if _, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{Type: "q4_k_m", Threads: 2, Profile: &p}); err != nil {
		t.Fatal(err)
	}
	src, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	dst, _ := os.ReadFile(out)
	f, _ := gguf.Read(context.Background(), bytes.NewReader(dst), int64(len(dst)), "out.gguf")
	var bin, bout int64
	for i := range src.Tensors {
		bin += src.Tensors[i].Bytes()
	}
	for i := range f.Tensors {
		bout += f.Tensors[i].Bytes()
	}
	if p.BytesIn != bin || p.BytesOut != bout || p.Threads != 2 || p.Wall <= 0 || p.SIMD != simd.Current().String() {
		t.Errorf("profile %+v; want %d bytes in, %d out, 2 threads", p, bin, bout)
	}
	var sum int64
	for _, s := range p.Stages() {
		if s.Time <= 0 && s.Name != "check" {
			t.Errorf("stage %s took %v", s.Name, s.Time)
		}
		sum += int64(s.Time)
	}
	if sum > int64(p.Wall)*int64(p.Threads)+int64(p.Wall)/10 {
		t.Errorf("stages add up to %v, more than %d threads × wall %v", sum, p.Threads, p.Wall)
	}
	var b strings.Builder
	p.WriteTo(&b)
	for _, s := range []string{"read", "decode", "quantize", "dequantize", "errors", "write", "wall", "simd"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("profile table lacks %q:\n%s", s, b.String())
		}
	}
}
