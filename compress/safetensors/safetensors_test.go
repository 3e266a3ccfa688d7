package safetensors

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
)

// build writes tensors (data given per tensor, in order) with the Writer.
func build(t testing.TB, meta map[string]string, ts []TensorInfo, data [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, meta, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range w.Tensors() {
		if err := w.WriteTensor(tt.Name, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// raw assembles a file from a literal header (padded to 8) and data.
func raw(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestKnownAnswerEncoding(t *testing.T) {
	// An empty file: "{}" padded with 6 spaces, header length 8.
	got := build(t, nil, nil, nil)
	want := append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, "{}      "...)
	if !bytes.Equal(got, want) {
		t.Errorf("empty: got %q, want %q", got, want)
	}
	// Metadata only: 35 bytes of JSON padded to 40.
	got = build(t, map[string]string{"framework": "pt"}, nil, nil)
	want = append([]byte{40, 0, 0, 0, 0, 0, 0, 0}, `{"__metadata__":{"framework":"pt"}}     `...)
	if !bytes.Equal(got, want) {
		t.Errorf("metadata: got %q, want %q", got, want)
	}
	// One F32 tensor: the header is exactly 64 bytes, so no padding.
	got = build(t, nil, []TensorInfo{{Name: "attn.0", DType: F32, Shape: []int64{1, 2, 3}}}, [][]byte{f32bytes(0, 1, 2, 3, 4, 5)})
	hdr := `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`
	want = append(append([]byte{64, 0, 0, 0, 0, 0, 0, 0}, hdr...), f32bytes(0, 1, 2, 3, 4, 5)...)
	if len(hdr) != 64 || !bytes.Equal(got, want) {
		t.Errorf("attn.0: got %q, want %q", got, want)
	}
}

// sample is a file with every dtype, metadata, a scalar and an empty tensor.
func sample(t testing.TB) []byte {
	var ts []TensorInfo
	var data [][]byte
	for d := BOOL; d <= U64; d++ {
		ti := TensorInfo{Name: "t." + d.String(), DType: d, Shape: []int64{2, 3}}
		n := ti.ByteSize()
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(int(d)*31 + i)
		}
		ts = append(ts, ti)
		data = append(data, b)
	}
	ts = append(ts, TensorInfo{Name: "scalar", DType: F32, Shape: []int64{}}, TensorInfo{Name: "empty", DType: BF16, Shape: []int64{0, 4}},
		TensorInfo{Name: "quote\"and\\back\nslash\x01é", DType: U8, Shape: []int64{1}})
	data = append(data, f32bytes(3.5), nil, []byte{7})
	SortCanonical(ts[:0]) // no-op, exercised below
	return build(t, map[string]string{"format": "pt", "b": "x<y>&z", "a": "\t"}, ts, data)
}

func TestRoundTrip(t *testing.T) {
	orig := sample(t)
	f, err := NewFile(bytes.NewReader(orig), int64(len(orig)), "sample.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Metadata()["b"]; got != "x<y>&z" {
		t.Errorf("metadata b = %q", got)
	}
	var data [][]byte
	for _, ti := range f.Tensors() {
		b, err := f.ReadTensor(context.Background(), ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b)
	}
	again := build(t, f.Metadata(), f.Tensors(), data)
	if !bytes.Equal(orig, again) {
		t.Fatalf("round trip changed the bytes:\n%q\n%q", orig[:200], again[:200])
	}
	if ti, ok := f.Lookup("scalar"); !ok || ti.NumElements() != 1 || ti.DType != F32 {
		t.Errorf("scalar: %+v %v", ti, ok)
	}
	if (f.DataStart()-8)%8 != 0 {
		t.Errorf("header length %d not a multiple of 8", f.DataStart()-8)
	}
}

func TestOpenFileAndSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, sample(t), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sr, err := f.Section("scalar")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := sr.ReadAt(b, 0); err != nil || math.Float32frombits(binary.LittleEndian.Uint32(b)) != 3.5 {
		t.Errorf("scalar = %v %v", b, err)
	}
	if err := f.ReadAt("scalar", make([]byte, 5), 0); err == nil {
		t.Error("read past the tensor: no error")
	}
}

func TestSortCanonical(t *testing.T) {
	ts := []TensorInfo{{Name: "b", DType: U8}, {Name: "a", DType: U8}, {Name: "z", DType: F32}, {Name: "c", DType: BF16}, {Name: "i", DType: I64}}
	SortCanonical(ts)
	var names []string
	for _, t := range ts {
		names = append(names, t.Name)
	}
	if got := strings.Join(names, ","); got != "i,z,c,a,b" {
		t.Errorf("order %s", got)
	}
}

func TestWriterMisuse(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, nil, []TensorInfo{{Name: "a", DType: F32, Shape: []int64{1}}, {Name: "b", DType: F32, Shape: []int64{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("b", make([]byte, 4)); err == nil {
		t.Error("out of order: no error")
	}
	if err := w.WriteTensor("a", make([]byte, 3)); err == nil {
		t.Error("short data: no error")
	}
	if err := w.Close(); err == nil {
		t.Error("close before all data: no error")
	}
	if _, err := NewWriter(&buf, nil, []TensorInfo{{Name: "a", DType: F32}, {Name: "a", DType: F32}}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	good := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}`
	d12 := make([]byte, 12)
	hdrLen := func(h string) int64 { return int64((len(h) + 7) / 8 * 8) }
	pastEnd := `{"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},"b":{"dtype":"U8","shape":[10],"data_offsets":[50,60]}}`
	cases := []struct {
		name   string
		file   []byte
		err    error
		tensor string
		offset int64 // -1: do not check
	}{
		{"too short", []byte{1, 2, 3}, ErrTruncated, "", 3},
		{"header too large", binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1), ErrHeaderTooLarge, "", 0},
		{"header past end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), ErrTruncated, "", 10},
		{"truncated data", raw(good, d12[:10]), ErrTruncated, "b", 8 + hdrLen(good) + 10},
		{"trailing data", raw(good, append(d12, 0)), ErrTrailing, "", 8 + hdrLen(good) + 12},
		{"unknown dtype", raw(`{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}`, d12[:1]), ErrUnknownDType, "a", 8 + 14},
		{"shape size", raw(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, d12[:8]), ErrShape, "a", -1},
		{"overlap", raw(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, d12[:6]), ErrOffsets, "b", -1},
		{"gap", raw(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}`, d12[:10]), ErrOffsets, "b", -1},
		{"not at zero", raw(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, d12[:6]), ErrOffsets, "a", -1},
		{"reversed", raw(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, nil), ErrOffsets, "a", -1},
		{"duplicate tensor", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, d12[:2]), ErrDuplicate, "a", 8 + 53},
		{"duplicate field", raw(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, d12[:1]), ErrDuplicate, "a", -1},
		{"duplicate metadata key", raw(`{"__metadata__":{"k":"1","k":"2"}}`, nil), ErrDuplicate, "__metadata__", -1},
		{"metadata not string", raw(`{"__metadata__":{"k":1}}`, nil), ErrSyntax, "__metadata__", -1},
		{"negative shape", raw(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, d12[:1]), ErrSyntax, "a", -1},
		{"float offset", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}}`, d12[:1]), ErrSyntax, "a", -1},
		{"missing field", raw(`{"a":{"dtype":"U8","shape":[1]}}`, nil), ErrSyntax, "a", -1},
		{"unknown field", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, d12[:1]), ErrSyntax, "a", -1},
		{"bad json", raw(`{"a":{"dtype":"U8",}}`, nil), ErrSyntax, "a", -1},
		{"not an object", raw(`[1]`, nil), ErrSyntax, "", 8},
		{"garbage after", raw(`{}x`, nil), ErrSyntax, "", -1},
		{"bad utf8", raw("{\"\xff\":1}", nil), ErrSyntax, "", 10},
		// Found by FuzzConvert: the overlap was reported at an offset past
		// the end of the file; running past the end is reported first.
		{"past end before overlap", raw(pastEnd, d12[:10]), ErrTruncated, "a", 8 + hdrLen(pastEnd) + 10},
		{"reversed past end", raw(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[40,0]}}`, d12[:2]), ErrOffsets, "a", 9},
		{"overflowing shape", raw(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), ErrShape, "a", -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewFile(bytes.NewReader(c.file), int64(len(c.file)), "m.safetensors")
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FormatError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "m.safetensors") || !strings.Contains(msg, fmt.Sprintf("offset %d", fe.Offset)) {
				t.Errorf("message %q lacks file or offset", msg)
			}
			if fe.Tensor != c.tensor || (c.tensor != "" && !strings.Contains(msg, `"`+c.tensor+`"`)) {
				t.Errorf("tensor %q, want %q (%s)", fe.Tensor, c.tensor, msg)
			}
			if c.offset >= 0 && fe.Offset != c.offset {
				t.Errorf("offset %d, want %d (%s)", fe.Offset, c.offset, msg)
			}
		})
	}
}

// A plain map unmarshal would keep the second "a"; the token walk must not.
func TestDuplicateDetectedNotDropped(t *testing.T) {
	file := raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1})
	_, err := NewFile(bytes.NewReader(file), int64(len(file)), "dup.safetensors")
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("err = %v", err)
	}
}

func TestNullMetadataAndLeadingOrder(t *testing.T) {
	// Non-canonical input (tensors listed out of offset order, null metadata) reads fine.
	file := raw(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1, 2})
	f, err := NewFile(bytes.NewReader(file), int64(len(file)), "x")
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata() != nil || f.Tensors()[0].Name != "a" || f.Tensors()[1].Name != "b" {
		t.Errorf("got %v %v", f.Metadata(), f.Tensors())
	}
}

func FuzzRead(f *testing.F) {
	f.Add(sample(f))
	f.Add(raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}`, make([]byte, 8)))
	f.Add(raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}))
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := NewFile(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(data)) {
				t.Fatalf("offset %d outside the %d-byte input: %v", fe.Offset, len(data), err)
			}
			return
		}
		// Whatever was accepted is rewritten canonically, and the rewrite is
		// accepted with the same content and reproduces itself exactly.
		var parts [][]byte
		for _, ti := range sf.Tensors() {
			b, err := sf.ReadTensor(context.Background(), ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, b)
		}
		once := build(t, sf.Metadata(), sf.Tensors(), parts)
		sf2, err := NewFile(bytes.NewReader(once), int64(len(once)), "again")
		if err != nil {
			t.Fatalf("rewrite rejected: %v", err)
		}
		if len(sf2.Tensors()) != len(sf.Tensors()) || len(sf2.Metadata()) != len(sf.Metadata()) {
			t.Fatal("rewrite changed the header")
		}
		for i, ti := range sf2.Tensors() {
			b, _ := sf2.ReadTensor(context.Background(), ti.Name)
			if !bytes.Equal(b, parts[i]) || ti.Name != sf.Tensors()[i].Name {
				t.Fatalf("tensor %q changed", ti.Name)
			}
		}
		twice := build(t, sf2.Metadata(), sf2.Tensors(), parts)
		if !bytes.Equal(once, twice) {
			t.Fatal("canonical form is not a fixed point")
		}
	})
}
