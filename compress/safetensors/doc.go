// Package safetensors reads, validates and writes files in the safetensors
// format of Hugging Face checkpoints.
//
// # Format
//
// A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
// and a data buffer. The JSON is an object mapping tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]}, offsets relative to the
// start of the data buffer, plus an optional "__metadata__" object of
// string values. The tensors must tile the buffer exactly: no gap, no
// overlap, nothing after the last one.
//
// # Promises
//
//   - Reading streams over an io.ReaderAt: [NewFile] reads the header only
//     and tensor data is read on demand ([File.ReadAt], [File.Section]), so
//     memory use is the header size however large the file is. The header is
//     capped at [MaxHeaderSize] (100 MB, as the reference implementation).
//   - Everything read is validated before it is returned. A malformed file
//     yields a *[FormatError] whose message names the file, the tensor when
//     one is involved, and the byte offset in the file; errors.Is matches the
//     Err* sentinels: header length over the limit, truncation, JSON syntax,
//     duplicate keys (found with a token walk, since decoding into a map
//     would silently keep the last), unknown dtypes, shape/dtype/offset size
//     mismatches, gaps, overlaps, and trailing bytes.
//   - Writing is streaming too ([NewWriter] writes the header, then data in
//     order) and canonical: see [EncodeHeader] for the exact form. A file in
//     canonical form read and written back unchanged is identical byte for
//     byte; files written by the reference implementation are canonical
//     when their metadata has at most one key.
//   - dtypes: BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64,
//     F8_E4M3, F8_E5M2, F8_E8M0. [DecodeFloat32] and [EncodeFloat32] convert
//     the float ones; F16ToF32, F32ToF16, BF16ToF32, F32ToBF16, F8E4M3ToF32 and
//     F32ToF8E4M3 convert single values, narrowing with round to nearest even
//     (FP8 saturating at ±448).
//
// The stgen subpackage generates deterministic llama-style checkpoints for
// tests and examples.
package safetensors
