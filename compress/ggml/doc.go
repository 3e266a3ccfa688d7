// Package ggml holds ggml's tensor element types and the reference
// quantization kernels for them, written in Go.
//
// It is for producing files that llama.cpp loads and that are byte-for-byte
// what llama-quantize writes without an importance matrix. It promises:
//
//   - Type describes every ggml type id a GGUF file may name (block size,
//     bytes per block, name), so a reader can size any tensor.
//   - Quantize turns float32 rows into Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
//     Q5_K or Q6_K blocks exactly as ggml's quantize_row_*_ref functions do:
//     float32 arithmetic in C source order with no fused multiply-add,
//     fp16 scales rounded to nearest even, roundf (half away from zero)
//     where ggml uses roundf and nearest_int (half to even, with its
//     magic-number trick) where ggml uses nearest_int. Products that feed an
//     addition are converted explicitly, so Go cannot fuse them into FMAs
//     (checked: ggufquant's golden digests hold with GOAMD64=v3 too).
//   - Dequantize is the inverse that ggml's dequantize_row_* computes.
//   - FP16/BF16 conversions are exact (widening) or round to nearest even
//     (narrowing), handle subnormals, infinities and NaN, and need no cgo.
//
// The kernels work on whole blocks, allocate nothing, and make no interface
// or indirect calls per element; callers own all buffers.
package ggml
