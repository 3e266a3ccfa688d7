package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Canonical form. The writer emits the header as compact JSON with no
// whitespace: "__metadata__" first (omitted when nil) with its keys in
// byte order, then the tensors in data-offset order, each as
// {"dtype":…,"shape":[…],"data_offsets":[b,e]}; strings escaped as
// serde_json does (only '"', '\\' and control characters; \b \f \n \r \t
// short forms, others \u00xx). The header is padded with spaces to a
// multiple of 8 bytes, as the reference writer does, so that every tensor's
// data is 8-byte aligned when offsets are. A file already in this form is
// reproduced byte for byte by reading it and writing its tensors back in
// offset order; files from the reference writer are in this form when
// their __metadata__ has at most one key (the reference writes the map in
// hash order).

// AssignOffsets lays the tensors out contiguously in the order given,
// setting each Offsets from its shape and dtype.
func AssignOffsets(tensors []TensorInfo) error {
	var off int64
	for i := range tensors {
		t := &tensors[i]
		if !t.DType.Valid() {
			return fmt.Errorf("safetensors: tensor %q: %w %d", t.Name, ErrUnknownDType, t.DType)
		}
		n := t.ByteSize()
		if n < 0 {
			return fmt.Errorf("safetensors: tensor %q: %w: shape %v overflows", t.Name, ErrShape, t.Shape)
		}
		t.Offsets = [2]int64{off, off + n}
		off += n
	}
	return nil
}

// SortCanonical orders tensors as the reference writer does: by dtype
// alignment, largest first, then by name.
func SortCanonical(tensors []TensorInfo) {
	slices.SortStableFunc(tensors, func(a, b TensorInfo) int {
		if a.DType != b.DType {
			return int(b.DType) - int(a.DType)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// EncodeHeader returns the canonical file prefix for the tensors, whose
// Offsets must already tile [0, total) in the order given: the 8-byte
// little-endian header length followed by the space-padded JSON header.
// The data buffer starts at len(prefix).
func EncodeHeader(meta map[string]string, tensors []TensorInfo) ([]byte, error) {
	var end int64
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if seen[t.Name] || t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, ErrDuplicate)
		}
		seen[t.Name] = true
		if !t.DType.Valid() {
			return nil, fmt.Errorf("safetensors: tensor %q: %w %d", t.Name, ErrUnknownDType, t.DType)
		}
		if t.Offsets[0] != end {
			return nil, fmt.Errorf("safetensors: tensor %q: %w: begins at %d, want %d", t.Name, ErrOffsets, t.Offsets[0], end)
		}
		if n := t.ByteSize(); n < 0 || n != t.Offsets[1]-t.Offsets[0] {
			return nil, fmt.Errorf("safetensors: tensor %q: %w: %s%v in [%d, %d)", t.Name, ErrShape, t.DType, t.Shape, t.Offsets[0], t.Offsets[1])
		}
		end = t.Offsets[1]
	}
	b := make([]byte, 8, 8+64+96*len(tensors))
	b = append(b, '{')
	first := true
	if meta != nil {
		b = appendString(b, "__metadata__")
		b = append(b, ':', '{')
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, meta[k])
		}
		b = append(b, '}')
		first = false
	}
	for _, t := range tensors {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, t.Name)
		b = append(b, `:{"dtype":"`...)
		b = append(b, t.DType.String()...)
		b = append(b, `","shape":[`...)
		for i, d := range t.Shape {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.Offsets[0], 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.Offsets[1], 10)
		b = append(b, ']', '}')
	}
	b = append(b, '}')
	for (len(b)-8)%8 != 0 {
		b = append(b, ' ')
	}
	if len(b)-8 > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: %w: %d bytes", ErrHeaderTooLarge, len(b)-8)
	}
	binary.LittleEndian.PutUint64(b, uint64(len(b)-8))
	return b, nil
}

// appendString appends s as a JSON string escaped the way serde_json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return append(b, '"')
}

// Writer streams a safetensors file: the header first, then the tensors'
// bytes in order, so that no tensor need be held in memory whole.
type Writer struct {
	w       io.Writer
	tensors []TensorInfo
	index   map[string]int
	pos     int64 // bytes of data written
	total   int64
	err     error
}

// NewWriter lays the tensors out contiguously in the order given (their
// Offsets are overwritten), writes the canonical header to w and returns a
// Writer for the data. Names must be unique; the slice is copied.
func NewWriter(w io.Writer, meta map[string]string, tensors []TensorInfo) (*Writer, error) {
	ts := slices.Clone(tensors)
	if err := AssignOffsets(ts); err != nil {
		return nil, err
	}
	hdr, err := EncodeHeader(meta, ts)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("safetensors: write header: %w", err)
	}
	wr := &Writer{w: w, tensors: ts, index: make(map[string]int, len(ts))}
	for i, t := range ts {
		wr.index[t.Name] = i
		wr.total = t.Offsets[1]
	}
	return wr, nil
}

// Tensors returns the layout, with offsets, in file order.
func (w *Writer) Tensors() []TensorInfo { return w.tensors }

// Write appends raw data bytes; tensors are filled in layout order. Writing
// past the end of the last tensor is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.total-w.pos {
		w.err = fmt.Errorf("safetensors: write of %d bytes past the end of the data (%d of %d written)", len(p), w.pos, w.total)
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.pos += int64(n)
	if err != nil {
		w.err = fmt.Errorf("safetensors: write data: %w", err)
	}
	return n, w.err
}

// WriteTensor writes the whole data of the named tensor, which must begin
// where the data written so far ends.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	i, ok := w.index[name]
	if !ok {
		return fmt.Errorf("safetensors: tensor %q is not in the layout", name)
	}
	t := w.tensors[i]
	if w.pos != t.Offsets[0] {
		return fmt.Errorf("safetensors: tensor %q: data position %d, tensor begins at %d", name, w.pos, t.Offsets[0])
	}
	if int64(len(data)) != t.Offsets[1]-t.Offsets[0] {
		return fmt.Errorf("safetensors: tensor %q: %d bytes, want %d", name, len(data), t.Offsets[1]-t.Offsets[0])
	}
	_, err := w.Write(data)
	return err
}

// Close checks that every tensor's data was written. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.pos != w.total {
		return fmt.Errorf("safetensors: closed after %d of %d data bytes", w.pos, w.total)
	}
	return nil
}
