package ggufquant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

// dimOffset is the absolute file offset of dimension d of tensor ti: its
// info record is a u64 name length, the name, a u32 dimension count and
// then the dimensions as u64.
func dimOffset(ti *gguf.TensorInfo, d int) int64 {
	return ti.InfoOffset + 8 + int64(len(ti.Name)) + 4 + 8*int64(d)
}

// emptyDir fails the test if dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("failed run left %v in %s", names, dir)
	}
}

// TestZeroDimension is issue 10 item 6: a zero dimension used to reach
// chunkValues/ne0 and panic with an integer divide by zero, leaving the
// temporary output behind. It must be refused when reading, naming the
// tensor and the offset of the bad dimension.
func TestZeroDimension(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	src, err := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	if err != nil {
		t.Fatal(err)
	}
	const name = "blk.0.attn_q.weight"
	ti, _ := src.Tensor(name)
	for _, typ := range []string{"q8_0", "q4_k_m"} {
		for dim := 0; dim < 2; dim++ {
			t.Run(fmt.Sprintf("%s/ne%d", typ, dim), func(t *testing.T) {
				bad := append([]byte(nil), in...)
				off := dimOffset(ti, dim)
				binary.LittleEndian.PutUint64(bad[off:], 0)
				dir := t.TempDir()
				_, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), filepath.Join(dir, "out.gguf"),
					Options{Type: typ, InputName: "zero.gguf"})
				var ge *gguf.Error
				if !errors.As(err, &ge) || !errors.Is(err, gguf.ErrShape) {
					t.Fatalf("want a *gguf.Error with ErrShape, got %v", err)
				}
				if ge.Tensor != name || ge.Offset != off || ge.File != "zero.gguf" {
					t.Errorf("error names tensor %q at offset %d in %q, want %q at %d: %v", ge.Tensor, ge.Offset, ge.File, name, off, err)
				}
				for _, s := range []string{name, fmt.Sprintf("offset %d", off), "is 0"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message %q lacks %q", err, s)
					}
				}
				emptyDir(t, dir)
			})
		}
	}
}

// TestMakePlanRefusesBadShapes: hand-made tensor infos (not from Read) with
// an empty dimension are an error, not a division by zero later.
func TestMakePlanRefusesBadShapes(t *testing.T) {
	kvs, ts := llama32(false)
	for _, shape := range [][]int64{{0, 8}, {32, 0}, {-32, 2}} {
		bad := append([]gguf.TensorInfo(nil), ts...)
		bad[3].Shape = shape
		_, err := MakePlan(kvs, bad, Options{Type: "q4_k_m"})
		if err == nil || !errors.Is(err, gguf.ErrShape) || !strings.Contains(err.Error(), bad[3].Name) {
			t.Errorf("shape %v: %v", shape, err)
		}
	}
}

// TestFailedCommitLeavesNothing: when the final rename fails (the output
// path is a directory), the temporary file is removed too.
func TestFailedCommitLeavesNothing(t *testing.T) {
	_, in := tinyModel(t, ggufgen.Tiny())
	parent := t.TempDir()
	out := filepath.Join(parent, "out.gguf")
	if err := os.MkdirAll(filepath.Join(out, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Quantize(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{Type: "q8_0"}); err == nil {
		t.Fatal("quantizing onto a directory: no error")
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 || ents[0].Name() != "out.gguf" {
		t.Errorf("parent holds %d entries, want only the directory", len(ents))
	}
}

// TestNonFiniteCopied is issue 10 item 17: NaN and ±Inf in tensors copied
// unchanged (a norm kept F32, a weight kept F16 by a skip pattern) are
// refused as they are in quantized tensors, with the element and its
// offset, unless AllowNonFinite.
func TestNonFiniteCopied(t *testing.T) {
	cfg := ggufgen.Tiny()
	_, in := tinyModel(t, cfg)
	src, _ := gguf.Read(context.Background(), bytes.NewReader(in), int64(len(in)), "in.gguf")
	f32nan := binary.LittleEndian.AppendUint32(nil, 0x7fc00000)
	f32inf := binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(math.Inf(-1))))
	f16inf := []byte{0x00, 0x7c}
	for _, tc := range []struct {
		name   string
		tensor string
		elem   int64
		bits   []byte
		opts   Options
	}{
		{"f32 norm NaN", "blk.0.attn_norm.weight", 5, f32nan, Options{Type: "q8_0"}},
		{"f32 output norm -Inf", "output_norm.weight", 255, f32inf, Options{Type: "q4_k_m"}},
		{"f16 skipped +Inf", "blk.2.ffn_down.weight", 70000, f16inf, Options{Type: "q4_k_m", Skip: []string{"blk.2.ffn_down.*"}}},
		{"f16 leave output +Inf", "output.weight", 3, f16inf, Options{Type: "q8_0", LeaveOutput: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti, _ := src.Tensor(tc.tensor)
			bad := append([]byte(nil), in...)
			off := src.DataOffset + ti.Offset + tc.elem*ti.Type.TypeSize()
			copy(bad[off:], tc.bits)
			dir := t.TempDir()
			opts := tc.opts
			opts.InputName = "bad.gguf"
			_, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), filepath.Join(dir, "out.gguf"), opts)
			var nf *NonFiniteError
			if !errors.As(err, &nf) {
				t.Fatalf("want NonFiniteError, got %v", err)
			}
			if nf.Tensor != tc.tensor || nf.Index != tc.elem || nf.Offset != off || nf.File != "bad.gguf" || !math.IsNaN(float64(nf.Value-nf.Value)) {
				t.Errorf("error %+v; want %s element %d at offset %d", nf, tc.tensor, tc.elem, off)
			}
			for _, s := range []string{tc.tensor, fmt.Sprintf("offset %d", off)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			emptyDir(t, dir)

			// With AllowNonFinite the tensor is copied, value and all.
			opts.AllowNonFinite = true
			out := filepath.Join(dir, "out.gguf")
			if _, err := Quantize(context.Background(), bytes.NewReader(bad), int64(len(bad)), out, opts); err != nil {
				t.Fatalf("AllowNonFinite: %v", err)
			}
			b, _ := os.ReadFile(out)
			of, err := gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), "out.gguf")
			if err != nil {
				t.Fatal(err)
			}
			oti, _ := of.Tensor(tc.tensor)
			got := make([]byte, len(tc.bits))
			of.TensorReader(oti).ReadAt(got, tc.elem*oti.Type.TypeSize())
			if oti.Type != ti.Type || !bytes.Equal(got, tc.bits) {
				t.Errorf("copied tensor is %v with bytes %x at element %d, want %v %x", oti.Type, got, tc.elem, ti.Type, tc.bits)
			}
		})
	}
}

func TestFirstNonFiniteRaw(t *testing.T) {
	for _, tc := range []struct {
		typ  ggml.Type
		v    []float32
		want int
	}{
		{ggml.F32, []float32{1, -2, float32(math.MaxFloat32), 0}, -1},
		{ggml.F32, []float32{1, float32(math.Inf(1)), float32(math.NaN())}, 1},
		{ggml.F16, []float32{65504, -65504, 0}, -1},
		{ggml.F16, []float32{1, 2, float32(math.NaN())}, 2},
		{ggml.BF16, []float32{3e38, 1}, -1},
		{ggml.BF16, []float32{float32(math.Inf(-1))}, 0},
	} {
		b := make([]byte, int64(len(tc.v))*tc.typ.TypeSize())
		switch tc.typ {
		case ggml.F32:
			ggml.EncodeF32(b, tc.v)
		case ggml.F16:
			ggml.EncodeF16(b, tc.v)
		case ggml.BF16:
			ggml.EncodeBF16(b, tc.v)
		}
		if got := firstNonFiniteRaw(tc.typ, b); got != tc.want {
			t.Errorf("%v %v: %d, want %d", tc.typ, tc.v, got, tc.want)
		}
	}
}

// fuzzSeed is a small model that exercises the quantizer: a 256-wide
// matrix (whole Q4_K blocks), a 32-wide one (Q4_K falls back), an F32
// norm, a 1-D weight and an output tensor.
func fuzzSeed(t testing.TB, typ ggml.Type) []byte {
	tensors := []gguf.TensorInfo{
		{Name: "token_embd.weight", Shape: []int64{32, 3}, Type: typ},
		{Name: "blk.0.attn_norm.weight", Shape: []int64{32}, Type: ggml.F32},
		{Name: "blk.0.attn_q.weight", Shape: []int64{256, 2}, Type: typ},
		{Name: "blk.0.attn_v.weight", Shape: []int64{32, 2}, Type: typ},
		{Name: "blk.0.ffn_down.weight", Shape: []int64{64, 1, 1}, Type: typ},
		{Name: "output.weight", Shape: []int64{32, 3}, Type: typ},
	}
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "llama.block_count", Value: uint32(1)},
		{Key: "general.file_type", Value: uint32(1)},
	}
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kvs, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range tensors {
		x := make([]float32, ti.Elements())
		for k := range x {
			x[k] = float32(math.Sin(float64(7*k+i))) * 0.1
		}
		b := make([]byte, ti.Bytes())
		switch ti.Type {
		case ggml.F32:
			ggml.EncodeF32(b, x)
		case ggml.F16:
			ggml.EncodeF16(b, x)
		case ggml.BF16:
			ggml.EncodeBF16(b, x)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzQuantize drives arbitrary bytes through the whole path a model file
// takes in `gantry quantize`: gguf.Read, MakePlan, the quantizing pipeline
// and the atomic output file. It checks that nothing panics, that every
// error names the input, that a failed run leaves nothing in the output
// directory, and that a successful one writes a file that reads back with
// the planned tensors.
func FuzzQuantize(f *testing.F) {
	for _, typ := range []ggml.Type{ggml.F16, ggml.F32, ggml.BF16} {
		f.Add(fuzzSeed(f, typ), uint8(0))
	}
	f.Add(fuzzSeed(f, ggml.F16), uint8(0xff))
	cfg := ggufgen.Config{Layers: 1, Embd: 32, FF: 64, Vocab: 4, Heads: 2, Type: ggml.F16, Seed: 1}
	path := filepath.Join(f.TempDir(), "gen.gguf")
	if err := ggufgen.WriteLlama(context.Background(), path, cfg); err != nil {
		f.Fatal(err)
	}
	gen, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(gen, uint8(1))
	types := []string{"q8_0", "q4_k"}
	f.Fuzz(func(t *testing.T, b []byte, flags uint8) {
		opts := Options{
			Type:           types[flags&1],
			Pure:           flags&2 != 0,
			AllowNonFinite: flags&4 != 0,
			LeaveOutput:    flags&8 != 0,
			Threads:        1 + int(flags>>4&1),
			InputName:      "fuzz.gguf",
		}
		if flags&32 != 0 {
			opts.Skip = []string{"blk.*.attn_q.weight"}
		}
		dir := t.TempDir()
		out := filepath.Join(dir, "out.gguf")
		_, err := Quantize(context.Background(), bytes.NewReader(b), int64(len(b)), out, opts)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.gguf") {
				t.Errorf("error does not name the input: %v", err)
			}
			emptyDir(t, dir)
			return
		}
		res, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		of, err := gguf.Read(context.Background(), bytes.NewReader(res), int64(len(res)), "out.gguf")
		if err != nil {
			t.Fatalf("output does not read back: %v", err)
		}
		src, err := gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), "fuzz.gguf")
		if err != nil {
			t.Fatalf("input accepted by Quantize, refused by Read: %v", err)
		}
		plan, err := MakePlan(src.KV, src.Tensors, opts)
		if err != nil {
			t.Fatalf("input accepted by Quantize, refused by MakePlan: %v", err)
		}
		if len(of.Tensors) != len(plan.Tensors) {
			t.Fatalf("output has %d tensors, plan %d", len(of.Tensors), len(plan.Tensors))
		}
		for i, tp := range plan.Tensors {
			if got := of.Tensors[i]; got.Name != tp.Name || got.Type != tp.To {
				t.Fatalf("output tensor %d is %s %v, plan says %s %v", i, got.Name, got.Type, tp.Name, tp.To)
			}
		}
	})
}
