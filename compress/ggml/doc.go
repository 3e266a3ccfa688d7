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
//
// # SIMD
//
// The portable Go code above is the reference and the fallback. On amd64
// the kernels pick their instruction set once, at start-up, from the CPU
// (compress/internal/simd; GANTRY_SIMD=scalar|sse2|avx2|avx512 caps it,
// and tests switch it with simd.Set):
//
//   - AVX512 (F, BW, DQ and VL): F16 and BF16 decode, Q8_0, Q4_0, Q4_1,
//     Q5_0 and Q5_1 dequantize, and the same types' quantize sixteen
//     blocks at a time
//     (avx512_amd64.s): the maxima (and minima) of the sixteen blocks are
//     folded into one register, the checks are opmasks, the nibbles are a
//     ternary-logic select and VPMOVDB. Such a kernel stops before a group
//     of sixteen it does not take, and the AVX2 kernel does that group.
//     QuantizeDequantize of Q8_0 also writes the dequantized values from
//     the same kernel, while the quants are in registers. The rest of the
//     level runs the AVX2 kernels;
//   - AVX2 (with F16C): F16 and BF16 decode, EncodeF16, Q8_0, Q4_0, Q4_1,
//     Q5_0 and Q5_1 quantize and dequantize (Q8_0, Q4_0 and Q5_0 eight
//     blocks at a time: their maxima folded into one vector, one division
//     for the eight scales and one for the inverses); the Q4_K/Q5_K and
//     Q6_K scale searches whole (set-up, every candidate, the solve, the
//     error and the best-so-far choice) with 8 sub-blocks a register, their
//     final quants, code packing and dequantization, and the super-block
//     finite check;
//   - SSE2: the same K-quant searches 4 lanes a register, and a normal-only
//     F16 decode;
//   - Scalar: the Go code only.
//
// No kernel reassociates a sum: the searches run the sub-blocks side
// by side (one lane each, the values transposed) so every lane does the
// reference's operations in its order; FMA is not used. nearest_int is its
// own bit trick in integer lanes (or VROUNDPS to nearest even where the
// values are clamped to a few bits first, which is the same integer),
// roundf is trunc(v) + trunc(2·(v − trunc(v))) (both steps exact, the
// second ±1 exactly at |frac| ≥ 0.5: half away from zero), and the
// truncating conversions are done as ggml does them, and a block whose handling the vector code
// does not reproduce (a NaN or ±Inf, a subnormal scale, a zero or
// subnormal min for Q4_1/Q5_1, a NaN for EncodeF16) is handed to the Go
// code. The tests compare every vector path with the Go code at every
// level the machine has, on random and adversarial input (halves and other
// ties, ±0, subnormals, huge values, NaN and ±Inf), and the ggmlref check
// below runs at the machine's level.
//
// # Checking against ggml
//
// The hand-derived known answers in the tests are backed by an opt-in
// comparison with a real, prebuilt ggml. ggmlref_test.go (build tag
// ggmlref, needs cgo and gcc) dlopens the libggml-base.so named by
// GANTRY_GGML_LIB and compares, bit for bit:
//
//   - Quantize with ggml_quantize_chunk(type, src, dst, 0, nrows,
//     n_per_row, NULL) for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
//     F16 and BF16, on fixed-seed inputs of several shapes (rows × a
//     multiple of 256): normal and F16-rounded weights, outliers, halves
//     and other rounding ties, zero and −0 blocks, all-equal blocks, signed
//     ties of the largest magnitude, tiny, subnormal, huge and near-FLT_MAX
//     values. A mismatch names the first differing block with the input
//     and both byte dumps;
//   - Dequantize with ggml's dequantize_row_* (on ggml's output and on
//     random blocks);
//   - FP16ToFP32 and DecodeF16 for all 2^16 patterns, and FP32ToFP16 and
//     FP32ToBF16 with ggml_fp32_to_fp16_row, ggml_fp32_to_bf16_row_ref and
//     ggml_fp32_to_bf16_row on a tie-targeted sweep of every sign and
//     exponent (all 2^32 float32 values with GANTRY_GGML_EXHAUSTIVE=1,
//     about 90 s).
//
// Run it with
//
//	GANTRY_GGML_LIB=/path/to/libggml-base.so go test -tags ggmlref ./compress/ggml -run Ref -v
//
// Without the tag nothing of it is built, and without GANTRY_GGML_LIB it
// skips. A libggml-base.so can be had without a C++ build from npm:
// `npm pack @node-llama-cpp/linux-x64` holds bins/linux-x64/libggml-base.so
// (and libllama, which exports llama_model_quantize for whole-file checks).
//
// Verified on 2026-11-28 against @node-llama-cpp/linux-x64 3.22.1, which
// embeds llama.cpp v0.5.0 (ggml 0.25.1, ggml_commit 0ad4a86), built for
// baseline x86-64 (no FMA in libggml-base): every quantized type, F16 and
// BF16 matched byte for byte, with the default GOAMD64=v1 and with v3;
// dequantization matched; all 2^32 float32 values narrow alike to F16 and
// BF16. The one difference found was that FP16ToFP32 kept a signalling
// NaN signalling where ggml returns it quiet; it now sets the quiet bit.
// Whole files matched too: llama_model_quantize from that release (default
// parameters, with and without pure) and gantry quantize wrote identical
// bytes for synthetic llama models from ggufgen (F16, BF16 and F32; 2 to 32
// layers; tied embeddings; rows of 200 and 640 values that need the
// fallback types) for q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m,
// q5_k_s, q5_k_m and q6_k.
package ggml
