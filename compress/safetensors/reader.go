package safetensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// File is an open, validated safetensors file. Tensor data is not loaded:
// it is read on demand through the underlying io.ReaderAt, so a File costs
// the size of its header in memory whatever the size of the file.
// A File is safe for concurrent use if its ReaderAt is (an *os.File is).
type File struct {
	name      string
	r         io.ReaderAt
	size      int64
	dataStart int64
	meta      map[string]string
	tensors   []TensorInfo
	index     map[string]int
	closer    io.Closer
}

// Open opens and validates the safetensors file at path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	sf, err := NewFile(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	sf.closer = f
	return sf, nil
}

// NewFile validates the safetensors file of the given size read through r.
// name is used in error messages. Every check of the format is done here:
// the header length against [MaxHeaderSize], the header's UTF-8 and JSON
// syntax, duplicate keys anywhere in the header, dtypes, shapes against
// data offsets, that the tensors tile the data buffer with no gap or
// overlap, and that the file ends exactly where the data does. Errors are
// *[FormatError] values naming the file, tensor and offset.
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	hdr, err := readPrefix(name, r, size)
	if err != nil {
		return nil, err
	}
	meta, tensors, err := parseHeader(name, hdr, size)
	if err != nil {
		return nil, err
	}
	f := &File{name: name, r: r, size: size, dataStart: 8 + int64(len(hdr)), meta: meta, tensors: tensors, index: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		f.index[t.Name] = i
	}
	return f, nil
}

// Close closes the file opened by Open; it does nothing for NewFile.
func (f *File) Close() error {
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}

// Name is the name given to Open or NewFile.
func (f *File) Name() string { return f.name }

// Size is the file size in bytes.
func (f *File) Size() int64 { return f.size }

// DataStart is the absolute offset of the data buffer (8 + header length).
func (f *File) DataStart() int64 { return f.dataStart }

// Metadata returns the __metadata__ map, nil if the header had none. The map
// is the File's own: do not modify it.
func (f *File) Metadata() map[string]string { return f.meta }

// Tensors returns the tensors in data-offset order. The slice is the File's
// own: do not modify it.
func (f *File) Tensors() []TensorInfo { return f.tensors }

// Lookup returns the named tensor.
func (f *File) Lookup(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i], true
}

// ReaderAt returns the underlying reader, for reading tensor data at
// DataStart()+Offsets[0].
func (f *File) ReaderAt() io.ReaderAt { return f.r }

// Section returns a reader over the named tensor's bytes.
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, ok := f.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.name, name)
	}
	return io.NewSectionReader(f.r, f.dataStart+t.Offsets[0], t.Offsets[1]-t.Offsets[0]), nil
}

// ReadAt reads len(p) bytes of the named tensor starting off bytes into it.
// A short read (the file shrank since it was validated) is a *FormatError
// with ErrTruncated.
func (f *File) ReadAt(name string, p []byte, off int64) error {
	t, ok := f.Lookup(name)
	if !ok {
		return fmt.Errorf("safetensors: %s: no tensor %q", f.name, name)
	}
	if off < 0 || off+int64(len(p)) > t.Offsets[1]-t.Offsets[0] {
		return fmt.Errorf("safetensors: %s: tensor %q: read [%d, %d) outside its %d bytes", f.name, name, off, off+int64(len(p)), t.Offsets[1]-t.Offsets[0])
	}
	abs := f.dataStart + t.Offsets[0] + off
	n, err := f.r.ReadAt(p, abs)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return &FormatError{File: f.name, Tensor: name, Offset: abs + int64(n), Err: ErrTruncated, Detail: "short read"}
	}
	return fmt.Errorf("safetensors: %s: tensor %q: offset %d: %w", f.name, name, abs+int64(n), err)
}

// ReadTensor reads the whole named tensor into memory. Use it for tensors
// known to be small; stream large ones with ReadAt or Section.
func (f *File) ReadTensor(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, ok := f.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.name, name)
	}
	p := make([]byte, t.Offsets[1]-t.Offsets[0])
	if err := f.ReadAt(name, p, 0); err != nil {
		return nil, err
	}
	return p, nil
}
