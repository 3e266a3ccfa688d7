// Package gguf reads and writes GGUF v3 files, the container of llama.cpp
// and ggml models.
//
// Reading streams over an io.ReaderAt: Read parses and validates only the
// header (metadata and tensor infos); tensor data is reached through
// File.TensorReader, so a model is never held in memory. Every length,
// count, type, shape and offset is checked before it is used, against fixed
// limits and against the file size, so a hostile or truncated file costs at
// most a bounded allocation and yields an *Error that names the file, the
// tensor or key concerned and the byte offset. Read accepts versions 2 and 3
// (little-endian) and rejects duplicate keys and tensor names, unknown value
// and tensor types, shapes with a zero or negative dimension, more than
// four dimensions, an element or byte count that overflows int64 or rows
// that are not whole blocks of their type, tensor
// data that is misaligned, out of range or overlapping, and a
// general.alignment that is not a power of two.
//
// Writing is canonical: metadata in the order given, tensor infos in the
// order given, each tensor's data at the next multiple of the alignment
// after the previous one, zero padding after every tensor including the
// last — the layout llama-quantize writes and ggml's reader requires. So
// reading a canonical file and writing it back unchanged gives identical
// bytes. Create writes through a temporary file in the target's directory
// and renames it into place on Commit, so a reader never sees a partial
// file.
package gguf
