package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header length accepted, the reference
// implementation's limit (100 MB).
const MaxHeaderSize = 100_000_000

// TensorInfo describes one tensor. Offsets are [begin, end) byte offsets
// relative to the start of the data buffer, which follows the header.
type TensorInfo struct {
	Name    string
	DType   DType
	Shape   []int64
	Offsets [2]int64
}

// NumElements is the product of the shape (1 for a scalar). It returns -1
// when the product overflows int64.
func (t TensorInfo) NumElements() int64 {
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return -1
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return -1
		}
		n = lo
	}
	return int64(n)
}

// ByteSize is NumElements()*DType.Size(), or -1 on overflow.
func (t TensorInfo) ByteSize() int64 {
	n := t.NumElements()
	s := t.DType.Size()
	if n < 0 || s == 0 {
		return -1
	}
	hi, lo := bits.Mul64(uint64(n), uint64(s))
	if hi != 0 || lo > math.MaxInt64 {
		return -1
	}
	return int64(lo)
}

// parseHeader validates the JSON header hdr of a file of the given total
// size. It returns the metadata (nil when absent) and the tensors sorted by
// data offset.
func parseHeader(file string, hdr []byte, size int64) (map[string]string, []TensorInfo, error) {
	fail := func(tensor string, off int64, err error, format string, args ...any) error {
		return &FormatError{File: file, Tensor: tensor, Offset: off, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, n := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, nil, fail("", 8+int64(i), ErrSyntax, "header is not valid UTF-8")
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, nil, fail("", 8, ErrSyntax, "header does not start with '{'")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	// pos is the file offset of the next token: past the separators that
	// InputOffset (the end of the previous token) leaves before it.
	pos := func() int64 {
		i := dec.InputOffset()
		for i < int64(len(hdr)) {
			switch hdr[i] {
			case ' ', '\t', '\r', '\n', ':', ',':
				i++
				continue
			}
			break
		}
		return 8 + i
	}
	token := func(tensor string) (json.Token, error) {
		at := pos()
		t, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fail(tensor, at, ErrSyntax, "%v", err)
		}
		return t, nil
	}
	expectDelim := func(tensor string, want json.Delim) error {
		at := pos()
		t, err := token(tensor)
		if err != nil {
			return err
		}
		if d, ok := t.(json.Delim); !ok || d != want {
			return fail(tensor, at, ErrSyntax, "want %q, got %v", string(want), t)
		}
		return nil
	}
	parseInt := func(tensor string, at int64, t json.Token, what string) (int64, error) {
		n, ok := t.(json.Number)
		if !ok {
			return 0, fail(tensor, at, ErrSyntax, "%s: want a non-negative integer, got %v", what, t)
		}
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || v < 0 {
			return 0, fail(tensor, at, ErrSyntax, "%s: want a non-negative integer, got %s", what, n)
		}
		return v, nil
	}
	if err := expectDelim("", '{'); err != nil {
		return nil, nil, err
	}
	var meta map[string]string
	var tensors []TensorInfo
	keyAt := map[string]int64{}
	for dec.More() {
		at := pos()
		t, err := token("")
		if err != nil {
			return nil, nil, err
		}
		name := t.(string) // object keys are always strings
		if _, dup := keyAt[name]; dup {
			return nil, nil, fail(name, at, ErrDuplicate, "key also at offset %d", keyAt[name])
		}
		keyAt[name] = at
		if name == "__metadata__" {
			at := pos()
			t, err := token(name)
			if err != nil {
				return nil, nil, err
			}
			if t == nil {
				continue
			}
			if d, ok := t.(json.Delim); !ok || d != '{' {
				return nil, nil, fail(name, at, ErrSyntax, "__metadata__ must be an object of strings")
			}
			meta = map[string]string{}
			for dec.More() {
				at := pos()
				k, err := token(name)
				if err != nil {
					return nil, nil, err
				}
				key := k.(string)
				if _, dup := meta[key]; dup {
					return nil, nil, fail(name, at, ErrDuplicate, "__metadata__ key %q repeated", key)
				}
				at = pos()
				v, err := token(name)
				if err != nil {
					return nil, nil, err
				}
				s, ok := v.(string)
				if !ok {
					return nil, nil, fail(name, at, ErrSyntax, "__metadata__[%q] is not a string", key)
				}
				meta[key] = s
			}
			if err := expectDelim(name, '}'); err != nil {
				return nil, nil, err
			}
			continue
		}
		ti := TensorInfo{Name: name}
		if err := expectDelim(name, '{'); err != nil {
			return nil, nil, err
		}
		seen := map[string]bool{}
		for dec.More() {
			at := pos()
			k, err := token(name)
			if err != nil {
				return nil, nil, err
			}
			field := k.(string)
			if seen[field] {
				return nil, nil, fail(name, at, ErrDuplicate, "field %q repeated", field)
			}
			seen[field] = true
			switch field {
			case "dtype":
				at := pos()
				v, err := token(name)
				if err != nil {
					return nil, nil, err
				}
				s, ok := v.(string)
				if !ok {
					return nil, nil, fail(name, at, ErrSyntax, "dtype is not a string")
				}
				d, ok := ParseDType(s)
				if !ok {
					return nil, nil, fail(name, at, ErrUnknownDType, "%q", s)
				}
				ti.DType = d
			case "shape":
				if err := expectDelim(name, '['); err != nil {
					return nil, nil, err
				}
				ti.Shape = []int64{}
				for dec.More() {
					at := pos()
					v, err := token(name)
					if err != nil {
						return nil, nil, err
					}
					n, err := parseInt(name, at, v, "shape")
					if err != nil {
						return nil, nil, err
					}
					ti.Shape = append(ti.Shape, n)
				}
				if err := expectDelim(name, ']'); err != nil {
					return nil, nil, err
				}
			case "data_offsets":
				if err := expectDelim(name, '['); err != nil {
					return nil, nil, err
				}
				for i := 0; i < 2; i++ {
					at := pos()
					v, err := token(name)
					if err != nil {
						return nil, nil, err
					}
					n, err := parseInt(name, at, v, "data_offsets")
					if err != nil {
						return nil, nil, err
					}
					ti.Offsets[i] = n
				}
				if err := expectDelim(name, ']'); err != nil {
					return nil, nil, err
				}
			default:
				return nil, nil, fail(name, at, ErrSyntax, "unknown field %q", field)
			}
		}
		if err := expectDelim(name, '}'); err != nil {
			return nil, nil, err
		}
		for _, f := range []string{"dtype", "shape", "data_offsets"} {
			if !seen[f] {
				return nil, nil, fail(name, keyAt[name], ErrSyntax, "missing field %q", f)
			}
		}
		tensors = append(tensors, ti)
	}
	if err := expectDelim("", '}'); err != nil {
		return nil, nil, err
	}
	if rest := hdr[dec.InputOffset():]; len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, nil, fail("", pos(), ErrSyntax, "content after the header object")
	}

	// Validate the layout: sorted by offsets, the tensors must tile the data
	// buffer exactly, from 0 to its end, each of the size its dtype and shape
	// imply.
	dataStart := 8 + int64(len(hdr))
	slices.SortStableFunc(tensors, func(a, b TensorInfo) int {
		if c := cmpInt(a.Offsets[0], b.Offsets[0]); c != 0 {
			return c
		}
		return cmpInt(a.Offsets[1], b.Offsets[1])
	})
	var end int64
	dataSize := size - dataStart // >= 0: readPrefix checked the header fits
	for _, t := range tensors {
		b, e := t.Offsets[0], t.Offsets[1]
		abs := dataStart + b
		if e < b {
			at := abs
			if b > dataSize {
				at = keyAt[t.Name] // the tensor's entry in the header: abs is past the end
			}
			return nil, nil, fail(t.Name, at, ErrOffsets, "data_offsets [%d, %d] end before they begin", b, e)
		}
		// Past the end before overlaps and gaps, so that every offset
		// reported lies inside the file.
		if e > dataSize {
			return nil, nil, fail(t.Name, size, ErrTruncated, "data_offsets [%d, %d] run past the end of the %d-byte data buffer (file has %d bytes)", b, e, dataSize, size)
		}
		if b < end {
			return nil, nil, fail(t.Name, abs, ErrOffsets, "data_offsets [%d, %d] overlap the previous tensor, which ends at %d", b, e, end)
		}
		if b > end {
			return nil, nil, fail(t.Name, dataStart+end, ErrOffsets, "gap of %d bytes before data_offsets [%d, %d]", b-end, b, e)
		}
		n := t.ByteSize()
		if n < 0 {
			return nil, nil, fail(t.Name, abs, ErrShape, "shape %v of %s overflows", t.Shape, t.DType)
		}
		if n != e-b {
			return nil, nil, fail(t.Name, abs, ErrShape, "shape %v of %s is %d bytes, data_offsets [%d, %d] hold %d", t.Shape, t.DType, n, b, e, e-b)
		}
		end = e
	}
	if dataStart+end > size || dataStart+end < 0 {
		name := ""
		if len(tensors) > 0 {
			name = tensors[len(tensors)-1].Name
		}
		return nil, nil, fail(name, size, ErrTruncated, "data ends at %d, file has %d bytes", dataStart+end, size)
	}
	if dataStart+end < size {
		return nil, nil, fail("", dataStart+end, ErrTrailing, "%d bytes after the last tensor", size-dataStart-end)
	}
	return meta, tensors, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readPrefix reads and checks the 8-byte length prefix and returns the header bytes.
func readPrefix(file string, r io.ReaderAt, size int64) ([]byte, error) {
	var p [8]byte
	if size < 8 {
		return nil, &FormatError{File: file, Offset: size, Err: ErrTruncated, Detail: fmt.Sprintf("%d bytes, need an 8-byte header length", size)}
	}
	if _, err := r.ReadAt(p[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: %s: read header length: %w", file, err)
	}
	n := binary.LittleEndian.Uint64(p[:])
	if n > MaxHeaderSize {
		return nil, &FormatError{File: file, Offset: 0, Err: ErrHeaderTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", n, MaxHeaderSize)}
	}
	if int64(n) > size-8 {
		return nil, &FormatError{File: file, Offset: size, Err: ErrTruncated, Detail: fmt.Sprintf("header of %d bytes does not fit in %d-byte file", n, size)}
	}
	hdr := make([]byte, n)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		if err == io.EOF {
			return nil, &FormatError{File: file, Offset: 8, Err: ErrTruncated, Detail: "short read of header"}
		}
		return nil, fmt.Errorf("safetensors: %s: read header: %w", file, err)
	}
	return hdr, nil
}
