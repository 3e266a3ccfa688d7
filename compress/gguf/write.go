package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gantry-dev/gantry/compress/internal/writeback"
)

// AlignmentOf returns the data alignment that kvs ask for: the value of
// general.alignment if present, else DefaultAlignment.
func AlignmentOf(kvs []KV) (int64, error) {
	for _, kv := range kvs {
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return 0, fmt.Errorf("%s must be a power-of-two u32, got %v (%T)", KeyAlignment, kv.Value, kv.Value)
			}
			return int64(a), nil
		}
	}
	return DefaultAlignment, nil
}

// Layout assigns canonical data offsets to tensors (each at the next
// multiple of alignment after the previous one's data) and returns the
// size of the data section including the padding after the last tensor.
func Layout(tensors []TensorInfo, alignment int64) (int64, error) {
	var off int64
	for i := range tensors {
		t := &tensors[i]
		n, err := t.Type.RowSize(t.Elements())
		if err != nil {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		t.Offset = off
		off = alignUp(off+n, alignment)
	}
	return off, nil
}

// encoder writes little-endian values and counts bytes.
type encoder struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) write(p []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(v uint8) { e.buf[0] = v; e.write(e.buf[:1]) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:2], v)
	e.write(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.write(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	e.write(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
		e.n += int64(len(s))
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (e *encoder) value(v any) {
	switch v := v.(type) {
	case uint8:
		e.u8(v)
	case int8:
		e.u8(uint8(v))
	case uint16:
		e.u16(v)
	case int16:
		e.u16(uint16(v))
	case uint32:
		e.u32(v)
	case int32:
		e.u32(uint32(v))
	case float32:
		e.u32(math.Float32bits(v))
	case bool:
		e.u8(b2u(v))
	case string:
		e.str(v)
	case uint64:
		e.u64(v)
	case int64:
		e.u64(uint64(v))
	case float64:
		e.u64(math.Float64bits(v))
	case Array:
		e.u32(uint32(v.Elem))
		e.u64(uint64(v.Len()))
		switch s := v.Values.(type) {
		case []uint8:
			e.write(s)
		case []int8:
			for _, x := range s {
				e.u8(uint8(x))
			}
		case []uint16:
			for _, x := range s {
				e.u16(x)
			}
		case []int16:
			for _, x := range s {
				e.u16(uint16(x))
			}
		case []uint32:
			for _, x := range s {
				e.u32(x)
			}
		case []int32:
			for _, x := range s {
				e.u32(uint32(x))
			}
		case []float32:
			for _, x := range s {
				e.u32(math.Float32bits(x))
			}
		case []bool:
			for _, x := range s {
				e.u8(b2u(x))
			}
		case []string:
			for _, x := range s {
				e.str(x)
			}
		case []uint64:
			for _, x := range s {
				e.u64(x)
			}
		case []int64:
			for _, x := range s {
				e.u64(uint64(x))
			}
		case []float64:
			for _, x := range s {
				e.u64(math.Float64bits(x))
			}
		case []Array:
			for _, x := range s {
				e.value(x)
			}
		}
	}
}

// WriteHeader writes the GGUF v3 header for kvs and tensors (whose Offset
// fields must already be laid out, see Layout) followed by the zero padding
// up to the data section, and returns the bytes written.
func WriteHeader(w io.Writer, kvs []KV, tensors []TensorInfo) (int64, error) {
	alignment, err := AlignmentOf(kvs)
	if err != nil {
		return 0, err
	}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if seen[kv.Key] {
			return 0, fmt.Errorf("metadata key %q: %w", kv.Key, ErrDuplicate)
		}
		seen[kv.Key] = true
		if _, err := TypeOf(kv.Value); err != nil {
			return 0, fmt.Errorf("metadata key %q: %w", kv.Key, err)
		}
	}
	names := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if names[t.Name] {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, ErrDuplicate)
		}
		names[t.Name] = true
		if !t.Type.Known() || len(t.Shape) > MaxDims {
			return 0, fmt.Errorf("tensor %q: type %v with %d dims: %w", t.Name, t.Type, len(t.Shape), ErrShape)
		}
	}
	e := &encoder{w: w}
	e.write([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		typ, _ := TypeOf(kv.Value)
		e.u32(uint32(typ))
		e.value(kv.Value)
	}
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(t.Offset))
	}
	e.write(make([]byte, alignUp(e.n, alignment)-e.n))
	return e.n, e.err
}

// Writer streams a canonical GGUF file: NewWriter writes the header, Write
// takes the tensors' data concatenated in tensor order (the Writer inserts
// the alignment padding), and Finish checks that every tensor was written
// in full and pads the last one.
type Writer struct {
	w         io.Writer
	tensors   []TensorInfo
	alignment int64
	cur       int   // tensor being written
	left      int64 // bytes left of tensors[cur]
	n         int64 // data bytes written (without padding)
	zeros     []byte
	err       error
	dataStart int64 // header bytes, padding included
	dataSize  int64 // data section bytes, padding included
}

// NewWriter lays out tensors (overwriting their Offset fields) and writes
// the header to w.
func NewWriter(w io.Writer, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	alignment, err := AlignmentOf(kvs)
	if err != nil {
		return nil, err
	}
	size, err := Layout(tensors, alignment)
	if err != nil {
		return nil, err
	}
	hdr, err := WriteHeader(w, kvs, tensors)
	if err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	gw := &Writer{w: w, tensors: tensors, alignment: alignment, cur: -1, zeros: make([]byte, alignment), dataStart: hdr, dataSize: size}
	gw.advance()
	return gw, nil
}

// advance pads the tensor just finished and moves to the next one with
// data.
func (w *Writer) advance() {
	for w.left == 0 && w.cur < len(w.tensors) {
		if w.cur >= 0 {
			n := w.tensors[w.cur].Bytes()
			if pad := alignUp(n, w.alignment) - n; pad > 0 && w.err == nil {
				_, w.err = w.w.Write(w.zeros[:pad])
			}
		}
		w.cur++
		if w.cur < len(w.tensors) {
			w.left = w.tensors[w.cur].Bytes()
		}
	}
}

// Write writes tensor data. It fails if p runs past the last tensor.
func (w *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 && w.err == nil {
		if w.cur >= len(w.tensors) {
			w.err = errors.New("gguf: write past the last tensor")
			break
		}
		k := int64(len(p))
		if k > w.left {
			k = w.left
		}
		var n int
		n, w.err = w.w.Write(p[:k])
		written += n
		w.n += int64(n)
		w.left -= int64(n)
		p = p[n:]
		if w.left == 0 {
			w.advance()
		}
	}
	return written, w.err
}

// Current is the index of the tensor the next Write goes to.
func (w *Writer) Current() int { return w.cur }

// Finish reports an error if any tensor data is missing.
func (w *Writer) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.tensors) {
		return fmt.Errorf("gguf: tensor %q: %d bytes of data missing", w.tensors[w.cur].Name, w.left)
	}
	return nil
}

// FileWriter is a Writer into a temporary file that becomes path on
// Commit.
//
// Instead of Write, the data may be written with WriteTensorAt, in any
// order and from several goroutines; the two must not be mixed.
type FileWriter struct {
	*Writer
	path string
	tmp  string // the temporary file's name
	f    *os.File
	bw   *bufio.Writer
	done bool

	random    sync.Once
	randomErr error
	sizes     []int64 // tensor data bytes, for WriteTensorAt's bounds
	written   atomic.Int64

	// The background writeback of random-access mode (see package
	// writeback): the disk writes while the workers compute, and Commit's
	// sync has only the tail left.
	wb    *writeback.Syncer
	every int64 // bytes between background syncs; 0 for the default
}

// Create starts writing a GGUF file that will appear at path only when
// Commit succeeds. The temporary file lives in path's directory so that the
// final rename is atomic.
func Create(ctx context.Context, path string, kvs []KV, tensors []TensorInfo) (*FileWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The file is created under another name and locked before it takes
	// its temporary name, so that every file with that name is either
	// locked by a live writer or left by a dead one (kill -9), which the
	// next Create of the same path removes.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	lockTemp(f)
	tmp := filepath.Join(filepath.Dir(path), tempPrefix(path)+strings.TrimPrefix(filepath.Base(f.Name()), "."+filepath.Base(path)+".new-"))
	if err := os.Rename(f.Name(), tmp); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	sweepTemps(path, tmp)
	// CreateTemp makes the file 0600; the model is an ordinary output.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	fw := &FileWriter{path: path, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, 1<<20)}
	w, err := NewWriter(fw.bw, kvs, tensors)
	if err != nil {
		fw.Abort()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	fw.Writer = w
	return fw, nil
}

// Commit checks that all data was written, flushes, syncs and renames the
// temporary file to the target path. On error the temporary file is
// removed.
func (fw *FileWriter) Commit(ctx context.Context) error {
	if fw.done {
		return errors.New("gguf: commit after commit or abort")
	}
	err := ctx.Err()
	if fw.sizes != nil {
		// Random-access mode: the header was flushed and the file sized
		// by the first WriteTensorAt; every data byte must have come since.
		if err == nil {
			err = fw.randomErr
		}
		if err == nil {
			var want int64
			for _, n := range fw.sizes {
				want += n
			}
			if got := fw.written.Load(); got != want {
				err = fmt.Errorf("gguf: %d of %d bytes of tensor data written", got, want)
			}
		}
	} else {
		if err == nil {
			err = fw.Finish()
		}
		if err == nil {
			err = fw.bw.Flush()
		}
	}
	if ferr := fw.stopFlush(); err == nil {
		err = ferr
	}
	if err == nil {
		err = fw.f.Sync()
	}
	if cerr := fw.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(fw.tmp, fw.path)
	}
	fw.done = true
	if err != nil {
		os.Remove(fw.tmp)
		return fmt.Errorf("write %s: %w", fw.path, err)
	}
	return nil
}

// WriteTensorAt writes p at byte off of tensor i's data with one pwrite
// (os.File.WriteAt), so that workers can write their parts of the output
// in any order, concurrently, without a copy through a buffer. p must lie
// within the tensor's data. The first call flushes the header and sizes
// the file, so the padding between tensors reads as zeros. Commit checks
// that the calls covered as many bytes as the tensors hold (the caller
// must not write a byte twice).
func (fw *FileWriter) WriteTensorAt(i int, off int64, p []byte) error {
	fw.random.Do(func() {
		if fw.Writer.n != 0 || fw.cur != firstWithData(fw.tensors) {
			fw.randomErr = errors.New("gguf: WriteTensorAt after Write")
			return
		}
		sizes := make([]int64, len(fw.tensors))
		for k := range fw.tensors {
			sizes[k] = fw.tensors[k].Bytes()
		}
		if err := fw.bw.Flush(); err != nil {
			fw.randomErr = fmt.Errorf("write %s: %w", fw.path, err)
			return
		}
		if err := writeback.Size(fw.f, fw.dataStart+fw.dataSize); err != nil {
			fw.randomErr = fmt.Errorf("write %s: %w", fw.path, err)
			return
		}
		fw.sizes = sizes
		fw.wb = writeback.Start(fw.f, fw.every)
	})
	if fw.randomErr != nil {
		return fw.randomErr
	}
	if i < 0 || i >= len(fw.sizes) || off < 0 || off+int64(len(p)) > fw.sizes[i] {
		return fmt.Errorf("gguf: write of %d bytes at %d outside tensor %d", len(p), off, i)
	}
	if _, err := fw.f.WriteAt(p, fw.dataStart+fw.tensors[i].Offset+off); err != nil {
		return fmt.Errorf("write %s: %w", fw.path, err)
	}
	fw.written.Add(int64(len(p)))
	fw.wb.Wrote(int64(len(p)))
	return nil
}

// stopFlush ends the background sync, if it runs, and returns its error.
func (fw *FileWriter) stopFlush() error {
	if fw.wb == nil {
		return nil
	}
	return fw.wb.Stop()
}

func firstWithData(ts []TensorInfo) int {
	for i := range ts {
		if ts[i].Bytes() > 0 {
			return i
		}
	}
	return len(ts)
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// sweepTemps removes the temporary files of path that no live writer
// holds: left by a writer killed before Commit or Abort.
func sweepTemps(path, own string) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempPrefix(path)
	for _, e := range ents {
		name := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), prefix) || name == own || !e.Type().IsRegular() {
			continue
		}
		if stale(name) {
			os.Remove(name)
		}
	}
}

// Abort discards the temporary file. It is safe to call after Commit.
func (fw *FileWriter) Abort() {
	if fw.done {
		return
	}
	fw.done = true
	fw.stopFlush()
	fw.f.Close()
	os.Remove(fw.tmp)
}
