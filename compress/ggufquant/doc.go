// Package ggufquant quantizes GGUF models the way llama.cpp's
// llama-quantize does, without an importance matrix.
//
// The entry point is
//
//	report, err := ggufquant.Quantize(ctx, in, inSize, "model-Q4_K_M.gguf",
//		ggufquant.Options{Type: "q4_k_m"})
//
// with in an io.ReaderAt over an F32/F16/BF16 GGUF file. ParseType names the
// targets: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m (alias q4_k),
// q5_k_s, q5_k_m (alias q5_k) and q6_k. MakePlan shows, without writing,
// what Quantize would do to every tensor.
//
// What it promises:
//
//   - Same output as llama-quantize (llama.cpp of early 2025, and
//     llama_model_quantize of llama.cpp v0.5.0, checked file for file; see
//     package ggml), byte for byte: the same tensors stay unquantized (1-D
//     tensors, norms, gating and position tensors, …), the default mixes
//     pick the same type per tensor (output.weight to Q6_K, attn_v and
//     ffn_down to Q6_K on the use_more_bits layers for Q4_K_M/Q5_K_M, the
//     Q4_K_S first-layers rule), Pure turns the mixes off, the fallbacks
//     when ne0 is not a whole number of blocks apply with or without Pure
//     (a K-quant to Q5_0/Q5_1/Q8_0, anything still misfitting to F16), tensors are written sorted by layer then name, metadata is
//     copied in order with general.quantization_version and
//     general.file_type moved to the end and split.* keys dropped, and the
//     data is 32-byte aligned with every tensor padded. Each kernel is
//     ggml's reference quantizer (package ggml).
//   - The output does not depend on Threads or GOMAXPROCS.
//   - Memory is bounded: tensors are cut into units of whole rows of about
//     256k values; one goroutine reads units in output order, Threads
//     goroutines quantize them, and the writer writes them in order; at most
//     2·Threads+2 units exist at once. Peak RSS does not grow with the
//     model (see BENCHMARKS.md for the measurement).
//   - The output file appears only when complete (temporary file + rename).
//   - A NaN or ±Inf value is an error (*NonFiniteError) naming the tensor,
//     the element and its byte offset, unless AllowNonFinite is set: in a
//     tensor being quantized and equally in an F32/F16/BF16 tensor copied
//     unchanged (a norm, a skipped weight).
//   - No input panics: gguf.Read refuses malformed shapes (a zero
//     dimension among them) with the tensor and offset, MakePlan refuses
//     them in hand-made tensor infos, and FuzzQuantize runs arbitrary bytes
//     through read, plan and quantize. A failed run leaves no file behind.
//   - The returned quality.Report has, per quantized tensor, the relative
//     RMSE, max absolute error and cosine similarity of the dequantized
//     result against the input, plus the whole-model summary; its numbers
//     are also independent of Threads (units are merged in order).
//
// Known gaps against llama-quantize: no importance matrix, no IQ/TQ/Q2_K/
// Q3_K targets, no --output-tensor-type/--token-embedding-type/kv
// overrides, no requantizing of already quantized inputs, and a
// general.alignment key in the input is honoured for the output layout
// (llama-quantize always pads to 32).
package ggufquant
