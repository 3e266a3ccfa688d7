package gguf_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/google/go-cmp/cmp"
)

// allKinds has one metadata entry of every value type, arrays of every
// element type, and an array of arrays.
func allKinds() []gguf.KV {
	return []gguf.KV{
		{Key: "u8", Value: uint8(200)},
		{Key: "i8", Value: int8(-100)},
		{Key: "u16", Value: uint16(60000)},
		{Key: "i16", Value: int16(-30000)},
		{Key: "u32", Value: uint32(4000000000)},
		{Key: "i32", Value: int32(-2000000000)},
		{Key: "f32", Value: float32(1.5)},
		{Key: "bool", Value: true},
		{Key: "string", Value: "héllo"},
		{Key: "u64", Value: uint64(1 << 63)},
		{Key: "i64", Value: int64(-1 << 62)},
		{Key: "f64", Value: math.Pi},
		{Key: "a.u8", Value: gguf.Array{Elem: gguf.TypeUint8, Values: []uint8{1, 2}}},
		{Key: "a.i8", Value: gguf.Array{Elem: gguf.TypeInt8, Values: []int8{-1, 2}}},
		{Key: "a.u16", Value: gguf.Array{Elem: gguf.TypeUint16, Values: []uint16{1, 65535}}},
		{Key: "a.i16", Value: gguf.Array{Elem: gguf.TypeInt16, Values: []int16{-1}}},
		{Key: "a.u32", Value: gguf.Array{Elem: gguf.TypeUint32, Values: []uint32{7}}},
		{Key: "a.i32", Value: gguf.Array{Elem: gguf.TypeInt32, Values: []int32{-7, 8}}},
		{Key: "a.f32", Value: gguf.Array{Elem: gguf.TypeFloat32, Values: []float32{0.25}}},
		{Key: "a.bool", Value: gguf.Array{Elem: gguf.TypeBool, Values: []bool{true, false}}},
		{Key: "a.string", Value: gguf.Array{Elem: gguf.TypeString, Values: []string{"a", "", "ccc"}}},
		{Key: "a.u64", Value: gguf.Array{Elem: gguf.TypeUint64, Values: []uint64{1 << 40}}},
		{Key: "a.i64", Value: gguf.Array{Elem: gguf.TypeInt64, Values: []int64{-5}}},
		{Key: "a.f64", Value: gguf.Array{Elem: gguf.TypeFloat64, Values: []float64{-0.5}}},
		{Key: "a.empty", Value: gguf.Array{Elem: gguf.TypeUint32, Values: []uint32{}}},
		{Key: "a.nested", Value: gguf.Array{Elem: gguf.TypeArray, Values: []gguf.Array{
			{Elem: gguf.TypeString, Values: []string{"x"}},
			{Elem: gguf.TypeInt16, Values: []int16{3, 4}},
		}}},
	}
}

// small builds a two-tensor file in memory: an F32 vector of 3 values and
// a Q8_0 matrix of 32x2.
func small(t *testing.T, kvs []gguf.KV) []byte {
	t.Helper()
	tensors := []gguf.TensorInfo{
		{Name: "v", Shape: []int64{3}, Type: ggml.F32},
		{Name: "m", Shape: []int64{32, 2}, Type: ggml.Q8_0},
	}
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kvs, tensors)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 12+68)
	for i := range data {
		data[i] = byte(i)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func read(t *testing.T, b []byte) (*gguf.File, error) {
	t.Helper()
	return gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), "test.gguf")
}

// rewrite writes f's header and data back out canonically.
func rewrite(t *testing.T, f *gguf.File) []byte {
	t.Helper()
	tensors := append([]gguf.TensorInfo(nil), f.Tensors...)
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, f.KV, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Tensors {
		if _, err := io.Copy(w, f.TensorReader(&f.Tensors[i])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAllValueTypesRoundTrip(t *testing.T) {
	b := small(t, allKinds())
	f, err := read(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(allKinds(), f.KV); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if got := rewrite(t, f); !bytes.Equal(got, b) {
		t.Errorf("rewrite differs: %d vs %d bytes", len(got), len(b))
	}
	// Layout: header padded to 32, "v" (12 bytes) padded to 32, "m" at 32,
	// its 68 bytes padded to 96: the file ends at DataOffset + 128.
	if f.DataOffset%32 != 0 || f.Tensors[1].Offset != 32 || f.Size != f.DataOffset+32+96 {
		t.Errorf("layout: data at %d, m at %d, size %d", f.DataOffset, f.Tensors[1].Offset, f.Size)
	}
	data, _ := io.ReadAll(f.TensorReader(&f.Tensors[1]))
	if len(data) != 68 || data[0] != 12 {
		t.Errorf("tensor m data: %d bytes starting %d", len(data), data[0])
	}
}

func TestAlignmentKey(t *testing.T) {
	b := small(t, []gguf.KV{{Key: "general.alignment", Value: uint32(64)}})
	f, err := read(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 || f.Tensors[1].Offset != 64 || f.Size != f.DataOffset+64+128 {
		t.Errorf("alignment 64: data at %d, m at %d, size %d", f.DataOffset, f.Tensors[1].Offset, f.Size)
	}
	if got := rewrite(t, f); !bytes.Equal(got, b) {
		t.Errorf("rewrite differs")
	}
}

func TestGeneratedModelRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.gguf")
	if err := ggufgen.WriteLlama(ctx, path, ggufgen.Tiny()); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := read(t, orig)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 1+4*9+2 {
		t.Errorf("%d tensors", len(f.Tensors))
	}
	if got := rewrite(t, f); !bytes.Equal(got, orig) {
		t.Errorf("read+write of generated model differs")
	}
	// Same config, same bytes.
	path2 := filepath.Join(dir, "again.gguf")
	if err := ggufgen.WriteLlama(ctx, path2, ggufgen.Tiny()); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path2)
	if !bytes.Equal(again, orig) {
		t.Errorf("generator is not deterministic")
	}
	// Only the two final files remain: no temporaries left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries", len(ents))
	}
}

func TestCreateAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gguf")
	fw, err := gguf.Create(context.Background(), path, nil, []gguf.TensorInfo{{Name: "a", Shape: []int64{4}, Type: ggml.F32}})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(make([]byte, 8)) // half the data
	if err := fw.Commit(context.Background()); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("commit with missing data: %v", err)
	}
	fw.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d files", len(ents))
	}
}

// header builds a file by hand: header fields and tensor infos as given,
// then padding and data.
type hb struct{ bytes.Buffer }

func (h *hb) u32(v uint32) *hb { binary.Write(h, binary.LittleEndian, v); return h }
func (h *hb) u64(v uint64) *hb { binary.Write(h, binary.LittleEndian, v); return h }
func (h *hb) str(s string) *hb { h.u64(uint64(len(s))); h.WriteString(s); return h }
func (h *hb) tensor(name string, typ uint32, off uint64, dims ...uint64) *hb {
	h.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		h.u64(d)
	}
	return h.u32(typ).u64(off)
}
func (h *hb) pad(n int) *hb {
	for h.Len()%32 != 0 {
		h.WriteByte(0)
	}
	h.Write(make([]byte, n))
	return h
}

func start(nt, nkv uint64) *hb {
	h := &hb{}
	h.WriteString("GGUF")
	return h.u32(3).u64(nt).u64(nkv)
}

func TestCorruptFiles(t *testing.T) {
	good := small(t, []gguf.KV{{Key: "k", Value: "v"}})
	for _, tc := range []struct {
		name       string
		file       []byte
		cause      error
		wantTensor string
		wantOffset int64 // -1: don't check
	}{
		{"empty", nil, gguf.ErrTruncated, "", 0},
		{"bad magic", []byte("GGUX\x03\x00\x00\x00"), gguf.ErrFormat, "", 0},
		{"version 1", []byte("GGUF\x01\x00\x00\x00"), gguf.ErrFormat, "", 4},
		{"truncated header", good[:30], gguf.ErrTruncated, "", -1},
		{"truncated data", good[:len(good)-40], gguf.ErrTruncated, "m", -1},
		{"huge tensor count", start(1<<40, 0).Bytes(), gguf.ErrLimit, "", 8},
		{"tensor count past EOF", start(1000, 0).Bytes(), gguf.ErrTruncated, "", 8},
		{"huge kv count", start(0, 1<<40).Bytes(), gguf.ErrLimit, "", 16},
		{"huge key length", start(0, 1).u64(1 << 60).pad(32).Bytes(), gguf.ErrLimit, "", 24},
		{"key length past EOF", start(0, 1).u64(1000).pad(32).Bytes(), gguf.ErrTruncated, "", 24},
		{"huge array", start(0, 1).str("a").u32(9).u32(4).u64(1 << 50).Bytes(), gguf.ErrLimit, "", 41},
		{"array past EOF", start(0, 1).str("a").u32(9).u32(4).u64(1000).Bytes(), gguf.ErrTruncated, "", 41},
		{"unknown value type", start(0, 1).str("a").u32(13).u32(0).Bytes(), gguf.ErrUnknownType, "", 33},
		{"duplicate key", start(0, 2).str("a").u32(4).u32(1).str("a").u32(4).u32(2).Bytes(), gguf.ErrDuplicate, "", 41},
		{"bad alignment", start(0, 1).str("general.alignment").u32(4).u32(48).Bytes(), gguf.ErrFormat, "", 24},
		{"unknown tensor type", start(1, 0).tensor("t", 4, 0, 32).pad(64).Bytes(), gguf.ErrUnknownType, "t", 45},
		{"shape not whole blocks", start(1, 0).tensor("t", 8, 0, 33).pad(64).Bytes(), gguf.ErrShape, "t", 45},
		{"too many dims", start(1, 0).tensor("t", 0, 0, 1, 1, 1, 1, 1).pad(64).Bytes(), gguf.ErrShape, "t", 33},
		{"zero ne0", start(1, 0).tensor("t", 0, 0, 0, 4).pad(64).Bytes(), gguf.ErrShape, "t", 37},
		{"zero ne1", start(1, 0).tensor("t", 1, 0, 32, 0).pad(64).Bytes(), gguf.ErrShape, "t", 45},
		{"negative dim", start(1, 0).tensor("t", 0, 0, 1<<63).pad(64).Bytes(), gguf.ErrShape, "t", 37},
		{"size overflow", start(1, 0).tensor("t", 0, 0, 1<<31, 1<<31, 1<<31).pad(64).Bytes(), gguf.ErrShape, "t", -1},
		{"long name", start(1, 0).tensor(strings.Repeat("n", 64), 0, 0, 1).pad(64).Bytes(), gguf.ErrLimit, strings.Repeat("n", 64), 24},
		{"offset out of range", start(1, 0).tensor("t", 0, 64, 8).pad(64).Bytes(), gguf.ErrTruncated, "t", 24},
		{"misaligned offset", start(1, 0).tensor("t", 0, 4, 8).pad(64).Bytes(), gguf.ErrRange, "t", 24},
		{"overlap", start(2, 0).tensor("a", 0, 0, 16).tensor("b", 0, 32, 16).pad(128).Bytes(), gguf.ErrOverlap, "b", -1},
		{"duplicate tensor", start(2, 0).tensor("a", 0, 0, 8).tensor("a", 0, 32, 8).pad(64).Bytes(), gguf.ErrDuplicate, "a", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.file)
			if err == nil {
				t.Fatal("accepted")
			}
			var ge *gguf.Error
			if !errors.As(err, &ge) {
				t.Fatalf("error %v is not a *gguf.Error", err)
			}
			if !errors.Is(err, tc.cause) {
				t.Errorf("cause: got %v, want %v", err, tc.cause)
			}
			if ge.File != "test.gguf" || !strings.Contains(err.Error(), "test.gguf") {
				t.Errorf("error does not name the file: %v", err)
			}
			if ge.Tensor != tc.wantTensor {
				t.Errorf("tensor %q, want %q (%v)", ge.Tensor, tc.wantTensor, err)
			}
			if tc.wantTensor != "" && !strings.Contains(err.Error(), `tensor "`+tc.wantTensor+`"`) {
				t.Errorf("message does not name the tensor: %v", err)
			}
			if tc.wantOffset >= 0 && ge.Offset != tc.wantOffset {
				t.Errorf("offset %d, want %d (%v)", ge.Offset, tc.wantOffset, err)
			}
			if !strings.Contains(err.Error(), "offset ") {
				t.Errorf("message has no offset: %v", err)
			}
		})
	}
}

func TestOverlapNamesBothTensors(t *testing.T) {
	b := start(2, 0).tensor("a", 0, 0, 16).tensor("b", 0, 32, 16).pad(128).Bytes()
	_, err := read(t, b)
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("overlap error: %v", err)
	}
}

func TestWriterRejects(t *testing.T) {
	var buf bytes.Buffer
	if _, err := gguf.NewWriter(&buf, []gguf.KV{{Key: "a", Value: 1}}, nil); err == nil {
		t.Error("int (no GGUF type): want error")
	}
	if _, err := gguf.NewWriter(&buf, []gguf.KV{{Key: "a", Value: uint8(1)}, {Key: "a", Value: uint8(2)}}, nil); err == nil {
		t.Error("duplicate key: want error")
	}
	if _, err := gguf.NewWriter(&buf, nil, []gguf.TensorInfo{{Name: "q", Shape: []int64{33}, Type: ggml.Q8_0}}); err == nil {
		t.Error("33 values of q8_0: want error")
	}
	w, err := gguf.NewWriter(&buf, nil, []gguf.TensorInfo{{Name: "a", Shape: []int64{1}, Type: ggml.F32}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 5)); err == nil {
		t.Error("write past the end: want error")
	}
}
