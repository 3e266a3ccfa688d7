package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"

	"github.com/gantry-dev/gantry/compress/ggml"
)

// Magic is the first four bytes of a GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides the data alignment.
const KeyAlignment = "general.alignment"

// Limits bound what Read accepts, so a corrupt header cannot make it
// allocate without bound. Every count is also checked against the bytes
// left in the file.
type Limits struct {
	MaxKV         int64 // metadata entries
	MaxTensors    int64
	MaxString     int64 // bytes in one string (key, value or tensor name)
	MaxArray      int64 // elements in one array
	MaxTensorName int64 // bytes in a tensor name (ggml: GGML_MAX_NAME−1)
	MaxArrayDepth int
}

// DefaultLimits are generous for real models (a 256k-token vocabulary, long
// chat templates) and small enough that a fuzzer cannot exhaust memory.
var DefaultLimits = Limits{
	MaxKV:         1 << 16,
	MaxTensors:    1 << 20,
	MaxString:     1 << 24,
	MaxArray:      1 << 26,
	MaxTensorName: 63,
	MaxArrayDepth: 2,
}

// MaxDims is the largest number of dimensions ggml supports.
const MaxDims = 4

// TensorInfo describes one tensor: name, shape with ne0 (the contiguous
// dimension) first, type, and the data offset relative to the start of the
// data section.
type TensorInfo struct {
	Name   string
	Shape  []int64
	Type   ggml.Type
	Offset int64
	// InfoOffset is where this tensor's info record starts in the file
	// (set by Read; used in error messages).
	InfoOffset int64
}

// Elements is the product of the dimensions.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes is the size of the tensor's data.
func (t *TensorInfo) Bytes() int64 {
	n, _ := t.Type.RowSize(t.Elements())
	return n
}

// Rows is the number of rows of Shape[0] values (1 for a 0-dim tensor).
func (t *TensorInfo) Rows() int64 {
	if len(t.Shape) == 0 || t.Shape[0] == 0 {
		return 0
	}
	return t.Elements() / t.Shape[0]
}

// File is a parsed GGUF header plus access to the tensor data.
type File struct {
	Name       string // as given to Read, for messages
	Version    uint32
	KV         []KV
	Tensors    []TensorInfo
	Alignment  int64
	DataOffset int64 // absolute offset of the data section
	Size       int64 // file size
	r          io.ReaderAt
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensor returns the info of a tensor by name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i], true
		}
	}
	return nil, false
}

// TensorReader returns a reader over a tensor's data.
func (f *File) TensorReader(t *TensorInfo) *io.SectionReader {
	return io.NewSectionReader(f.r, f.DataOffset+t.Offset, t.Bytes())
}

// ReaderAt is the underlying reader.
func (f *File) ReaderAt() io.ReaderAt { return f.r }

// decoder reads the header sequentially, tracking the offset and refusing
// to read past the end of the file.
type decoder struct {
	br     *bufio.Reader
	off    int64
	size   int64
	name   string
	lim    Limits
	buf    [8]byte
	tensor string // current tensor, for messages
	key    string // current key, for messages
}

func (d *decoder) fail(off int64, cause error, format string, args ...any) error {
	e := errorf(d.name, off, cause, format, args...)
	e.Tensor, e.Key = d.tensor, d.key
	return e
}

func (d *decoder) remaining() int64 { return d.size - d.off }

func (d *decoder) read(p []byte, what string) error {
	if int64(len(p)) > d.remaining() {
		return d.fail(d.off, ErrTruncated, "reading %s (%d bytes, %d left)", what, len(p), d.remaining())
	}
	if _, err := io.ReadFull(d.br, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return d.fail(d.off, ErrTruncated, "reading %s", what)
		}
		return d.fail(d.off, err, "reading %s", what)
	}
	d.off += int64(len(p))
	return nil
}

func (d *decoder) u8(what string) (uint8, error) {
	err := d.read(d.buf[:1], what)
	return d.buf[0], err
}

func (d *decoder) u16(what string) (uint16, error) {
	err := d.read(d.buf[:2], what)
	return binary.LittleEndian.Uint16(d.buf[:2]), err
}

func (d *decoder) u32(what string) (uint32, error) {
	err := d.read(d.buf[:4], what)
	return binary.LittleEndian.Uint32(d.buf[:4]), err
}

func (d *decoder) u64(what string) (uint64, error) {
	err := d.read(d.buf[:8], what)
	return binary.LittleEndian.Uint64(d.buf[:8]), err
}

// count reads a u64 count and checks it against a limit and against the
// bytes left, given the smallest encoding of one element.
func (d *decoder) count(what string, limit, minSize int64) (int64, error) {
	at := d.off
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if n > uint64(limit) {
		return 0, d.fail(at, ErrLimit, "%s %d exceeds limit %d", what, n, limit)
	}
	if minSize > 0 && int64(n) > (d.remaining())/minSize {
		return 0, d.fail(at, ErrTruncated, "%s %d needs at least %d bytes, %d left", what, n, int64(n)*minSize, d.remaining())
	}
	return int64(n), nil
}

func (d *decoder) str(what string, limit int64) (string, error) {
	n, err := d.count(what+" length", limit, 1)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if err := d.read(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

// Read parses and validates the header of a GGUF file of the given size.
// name identifies the file in errors. Tensor data is not read.
func Read(ctx context.Context, r io.ReaderAt, size int64, name string) (*File, error) {
	return ReadWithLimits(ctx, r, size, name, DefaultLimits)
}

// ReadWithLimits is Read with explicit limits.
func ReadWithLimits(ctx context.Context, r io.ReaderAt, size int64, name string, lim Limits) (*File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := &decoder{
		br:   bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10),
		size: size,
		name: name,
		lim:  lim,
	}
	f := &File{Name: name, Size: size, r: r, Alignment: DefaultAlignment}
	var magic [4]byte
	if err := d.read(magic[:], "magic"); err != nil {
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, d.fail(0, ErrFormat, "bad magic %q", magic[:])
	}
	v, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	if v != 2 && v != 3 {
		return nil, d.fail(4, ErrFormat, "unsupported version %d (want 2 or 3, little-endian)", v)
	}
	f.Version = v
	nt, err := d.count("tensor count", lim.MaxTensors, 8+4+8+4+8)
	if err != nil {
		return nil, err
	}
	nkv, err := d.count("metadata count", lim.MaxKV, 8+4+1)
	if err != nil {
		return nil, err
	}

	f.KV = make([]KV, 0, nkv)
	seen := make(map[string]bool, nkv)
	for i := int64(0); i < nkv; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		at := d.off
		d.key = ""
		key, err := d.str("key", lim.MaxString)
		if err != nil {
			return nil, err
		}
		d.key = key
		if seen[key] {
			return nil, d.fail(at, ErrDuplicate, "metadata key appears twice")
		}
		seen[key] = true
		vt, err := d.u32("value type")
		if err != nil {
			return nil, err
		}
		val, err := d.value(ValueType(vt), 0)
		if err != nil {
			return nil, err
		}
		if key == KeyAlignment {
			a, ok := val.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, d.fail(at, ErrFormat, "alignment must be a power-of-two u32, got %v (%T)", val, val)
			}
			f.Alignment = int64(a)
		}
		f.KV = append(f.KV, KV{Key: key, Value: val})
	}
	d.key = ""

	f.Tensors = make([]TensorInfo, 0, nt)
	names := make(map[string]bool, nt)
	for i := int64(0); i < nt; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		t, err := d.tensorInfo()
		if err != nil {
			return nil, err
		}
		if names[t.Name] {
			d.tensor = t.Name
			return nil, d.fail(t.InfoOffset, ErrDuplicate, "tensor name appears twice")
		}
		names[t.Name] = true
		f.Tensors = append(f.Tensors, t)
	}
	d.tensor = ""
	f.DataOffset = alignUp(d.off, f.Alignment)
	if err := f.checkData(); err != nil {
		return nil, err
	}
	return f, nil
}

func (d *decoder) value(t ValueType, depth int) (any, error) {
	at := d.off
	switch t {
	case TypeUint8:
		return d.u8("u8 value")
	case TypeInt8:
		v, err := d.u8("i8 value")
		return int8(v), err
	case TypeUint16:
		return d.u16("u16 value")
	case TypeInt16:
		v, err := d.u16("i16 value")
		return int16(v), err
	case TypeUint32:
		return d.u32("u32 value")
	case TypeInt32:
		v, err := d.u32("i32 value")
		return int32(v), err
	case TypeFloat32:
		v, err := d.u32("f32 value")
		return math.Float32frombits(v), err
	case TypeBool:
		v, err := d.u8("bool value")
		if err == nil && v > 1 {
			return nil, d.fail(at, ErrFormat, "bool value %d", v)
		}
		return v == 1, err
	case TypeString:
		return d.str("string value", d.lim.MaxString)
	case TypeUint64:
		return d.u64("u64 value")
	case TypeInt64:
		v, err := d.u64("i64 value")
		return int64(v), err
	case TypeFloat64:
		v, err := d.u64("f64 value")
		return math.Float64frombits(v), err
	case TypeArray:
		if depth >= d.lim.MaxArrayDepth {
			return nil, d.fail(at, ErrLimit, "arrays nested deeper than %d", d.lim.MaxArrayDepth)
		}
		et, err := d.u32("array element type")
		if err != nil {
			return nil, err
		}
		elem := ValueType(et)
		if !elem.valid() {
			return nil, d.fail(at, ErrUnknownType, "array element type %d", et)
		}
		minSize := elem.size()
		switch elem {
		case TypeString:
			minSize = 8
		case TypeArray:
			minSize = 12
		}
		n, err := d.count("array length", d.lim.MaxArray, minSize)
		if err != nil {
			return nil, err
		}
		vals, err := d.array(elem, n, depth)
		if err != nil {
			return nil, err
		}
		return Array{Elem: elem, Values: vals}, nil
	}
	return nil, d.fail(at-4, ErrUnknownType, "value type %d", uint32(t))
}

func (d *decoder) array(elem ValueType, n int64, depth int) (any, error) {
	// Fixed-size elements are read in one go: the count was already checked
	// against the bytes left.
	if sz := elem.size(); sz > 0 {
		raw := make([]byte, n*sz)
		at := d.off
		if err := d.read(raw, "array data"); err != nil {
			return nil, err
		}
		le := binary.LittleEndian
		switch elem {
		case TypeUint8:
			return raw, nil
		case TypeInt8:
			out := make([]int8, n)
			for i := range out {
				out[i] = int8(raw[i])
			}
			return out, nil
		case TypeBool:
			out := make([]bool, n)
			for i := range out {
				if raw[i] > 1 {
					return nil, d.fail(at+int64(i), ErrFormat, "bool array element %d is %d", i, raw[i])
				}
				out[i] = raw[i] == 1
			}
			return out, nil
		case TypeUint16:
			out := make([]uint16, n)
			for i := range out {
				out[i] = le.Uint16(raw[2*i:])
			}
			return out, nil
		case TypeInt16:
			out := make([]int16, n)
			for i := range out {
				out[i] = int16(le.Uint16(raw[2*i:]))
			}
			return out, nil
		case TypeUint32:
			out := make([]uint32, n)
			for i := range out {
				out[i] = le.Uint32(raw[4*i:])
			}
			return out, nil
		case TypeInt32:
			out := make([]int32, n)
			for i := range out {
				out[i] = int32(le.Uint32(raw[4*i:]))
			}
			return out, nil
		case TypeFloat32:
			out := make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
			}
			return out, nil
		case TypeUint64:
			out := make([]uint64, n)
			for i := range out {
				out[i] = le.Uint64(raw[8*i:])
			}
			return out, nil
		case TypeInt64:
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(le.Uint64(raw[8*i:]))
			}
			return out, nil
		case TypeFloat64:
			out := make([]float64, n)
			for i := range out {
				out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
			}
			return out, nil
		}
	}
	switch elem {
	case TypeString:
		out := make([]string, n)
		for i := range out {
			s, err := d.str("string array element", d.lim.MaxString)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case TypeArray:
		out := make([]Array, n)
		for i := range out {
			v, err := d.value(TypeArray, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = v.(Array)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unreachable element type %v", elem)
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	t := TensorInfo{InfoOffset: d.off}
	d.tensor = ""
	name, err := d.str("tensor name", d.lim.MaxString)
	if err != nil {
		return t, err
	}
	t.Name = name
	d.tensor = name
	if int64(len(name)) > d.lim.MaxTensorName {
		return t, d.fail(t.InfoOffset, ErrLimit, "tensor name is %d bytes, limit %d", len(name), d.lim.MaxTensorName)
	}
	at := d.off
	nd, err := d.u32("dimension count")
	if err != nil {
		return t, err
	}
	if nd > MaxDims {
		return t, d.fail(at, ErrShape, "%d dimensions, ggml supports %d", nd, MaxDims)
	}
	t.Shape = make([]int64, nd)
	total := uint64(1)
	for i := range t.Shape {
		at := d.off
		v, err := d.u64("dimension")
		if err != nil {
			return t, err
		}
		if int64(v) < 0 {
			return t, d.fail(at, ErrShape, "dimension %d is negative (%d)", i, int64(v))
		}
		// ggml has no empty tensors: its reader divides by ne1…ne3 when it
		// checks the element count, and a row of ne0 = 0 values has no blocks.
		if v == 0 {
			return t, d.fail(at, ErrShape, "dimension %d is 0", i)
		}
		hi, lo := bits.Mul64(total, v)
		if hi != 0 || lo > math.MaxInt64 {
			return t, d.fail(at, ErrShape, "element count overflows int64")
		}
		total = lo
		t.Shape[i] = int64(v)
	}
	at = d.off
	typ, err := d.u32("tensor type")
	if err != nil {
		return t, err
	}
	t.Type = ggml.Type(typ)
	if !t.Type.Known() {
		return t, d.fail(at, ErrUnknownType, "ggml type %d", typ)
	}
	if bs := t.Type.BlockSize(); len(t.Shape) > 0 && t.Shape[0]%bs != 0 {
		return t, d.fail(at, ErrShape, "ne0 = %d is not a multiple of the %v block size %d", t.Shape[0], t.Type, bs)
	}
	if len(t.Shape) == 0 && t.Type.BlockSize() != 1 {
		return t, d.fail(at, ErrShape, "0-dim tensor of block type %v", t.Type)
	}
	// Byte size must fit in int64 too.
	nb := uint64(total) / uint64(t.Type.BlockSize())
	hi, lo := bits.Mul64(nb, uint64(t.Type.TypeSize()))
	if hi != 0 || lo > math.MaxInt64 {
		return t, d.fail(at, ErrShape, "byte size overflows int64")
	}
	at = d.off
	off, err := d.u64("data offset")
	if err != nil {
		return t, err
	}
	if off > math.MaxInt64 {
		return t, d.fail(at, ErrRange, "data offset %d", off)
	}
	t.Offset = int64(off)
	return t, nil
}

// checkData validates every tensor's data range: aligned, inside the file,
// and not overlapping another.
func (f *File) checkData() error {
	dataSize := f.Size - f.DataOffset
	fail := func(t *TensorInfo, cause error, format string, args ...any) error {
		e := errorf(f.Name, t.InfoOffset, cause, format, args...)
		e.Tensor = t.Name
		return e
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
		t := &f.Tensors[i]
		if t.Offset%f.Alignment != 0 {
			return fail(t, ErrRange, "data offset %d is not a multiple of the alignment %d", t.Offset, f.Alignment)
		}
		if n := t.Bytes(); n > 0 && (dataSize < 0 || t.Offset > dataSize || n > dataSize-t.Offset) {
			return fail(t, ErrTruncated, "data [%d, %d) (absolute %d) runs past the end of the file (%d bytes)",
				t.Offset, t.Offset+n, f.DataOffset+t.Offset, f.Size)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	var prev *TensorInfo
	for _, i := range order {
		t := &f.Tensors[i]
		if t.Bytes() == 0 {
			continue
		}
		if prev != nil && t.Offset < prev.Offset+prev.Bytes() {
			return fail(t, ErrOverlap, "data at offset %d overlaps tensor %q [%d, %d)",
				t.Offset, prev.Name, prev.Offset, prev.Offset+prev.Bytes())
		}
		prev = t
	}
	return nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }
