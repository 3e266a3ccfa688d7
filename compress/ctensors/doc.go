// Package ctensors converts a Hugging Face checkpoint directory into a
// compressed-tensors checkpoint that vLLM loads (quant_method
// "compressed-tensors"), quantizing the weights of linear layers and
// reporting, per tensor, how far the result is from the original.
//
// # Use
//
//	rep, err := ctensors.Convert(ctx, "llama-3-8b", "llama-3-8b-w4a16",
//		ctensors.Options{Scheme: "int4"})
//
// The input directory holds config.json and either model.safetensors or
// shards listed by model.safetensors.index.json, plus tokenizer and other
// files. The output has the same file names: shards keep their names and
// their set of layers, the index's weight_map and metadata.total_size are
// rewritten, config.json gains a quantization_config (its other keys are
// kept; it is written with sorted keys and a two-space indent, as
// transformers writes it), and every other file, in subdirectories too, is
// copied unchanged.
//
// # What is quantized
//
// Only 2-D "*.weight" tensors of float type (F16, BF16, F32, F64) taken to
// be linear layers: not token embeddings (a module name whose last part
// contains "embed", or wte/wpe) unless QuantizeEmbeddings, not the output
// head (lm_head, embed_out) unless QuantizeLMHead, and not those matching
// a Skip glob. Norms, biases and every other tensor are copied byte for
// byte. Linear layers left unquantized are listed in
// quantization_config.ignore, with "lm_head", so that vLLM loads them
// dense.
//
// # What is refused (before anything is written)
//
//   - An int4 group size vLLM cannot serve (ValidGroupSize: -1, 32, 64 or
//     128), or a group size for fp8/int8.
//   - A linear layer that does not fit the scheme: a zero dimension, an
//     input dimension that is not a multiple of 32/bits, or, for int4, not
//     a multiple of the group size. It is an error naming the tensor and
//     its offset, not a layer silently kept dense; skip it explicitly to
//     keep it dense.
//   - A Skip list that keeps part of a fused layer dense: vLLM loads
//     q_proj/k_proj/v_proj as qkv_proj and gate_proj/up_proj as
//     gate_up_proj and refuses mixed schemes within one. CheckSkip checks
//     the globs alone (for spec validation); Convert also checks the
//     model's actual layers.
//
// # Schemes and tensor layout
//
// Weight-only, symmetric, static, as vLLM's compressed-tensors loader
// expects (checked against the stored vLLM and compressed-tensors source):
//
//   - "fp8": format float-quantized. X.weight becomes F8_E4M3 [out, in];
//     X.weight_scale is F32 [out, 1] with scale = max|row|/448. vLLM serves
//     it with CompressedTensorsW8A16Fp8.
//   - "int8": format pack-quantized, num_bits 8, strategy channel (W8A16).
//     vLLM selects its weight-only integer kernel (CompressedTensorsWNA16)
//     only for pack-quantized, so the codes are packed, not stored as I8:
//     X.weight_packed is I32 [out, in/4], X.weight_scale [out, 1],
//     X.weight_shape I64 [2] = [out, in]. scale = max|row|/127.5.
//   - "int4": format pack-quantized, num_bits 4, strategy group with
//     GroupSize (default 128; -1 for channel). X.weight_packed is I32
//     [out, in/8], X.weight_scale [out, in/GroupSize],
//     X.weight_shape I64 [2]. scale = max|group|/7.5.
//
// Packing follows compressed-tensors pack_to_int32: codes are offset to
// unsigned (q+8, q+128: vLLM's uint4b8/uint8b128) and packed along the
// input dimension, the first value in the lowest bits. Rounding follows
// torch: half to even, after clamping to the code range. Integer scales
// are stored in the weight's own float type (vLLM casts them to the model
// dtype anyway), rounded before use so that the error report describes the
// stored checkpoint; FP8 scales are F32. See kernels.go for the details
// and the deviations.
//
// # Promises
//
//   - Atomic output: outDir must not exist or be empty; the checkpoint is
//     built in a temporary directory beside it and renamed into place, and
//     removed on any error or cancellation.
//   - Bounded memory: tensors are processed in row blocks of about 1 MiB of
//     input, read with ReadAt and written with WriteAt at offsets fixed in
//     advance, so peak memory is about Threads × a few MiB plus the
//     headers, whatever the size of the model or of its largest tensor.
//   - Parallel and deterministic: Threads workers (default GOMAXPROCS) take
//     blocks in file order, so reading, quantizing and writing of different
//     blocks overlap; the output bytes and the report do not depend on the
//     number of threads (per-block statistics are merged in block order).
//   - Validation: every input file is validated by package safetensors
//     before anything is written (errors name file, tensor and offset). A
//     NaN or Inf value is an error (wrapping ErrNonFinite) naming the file,
//     tensor, offset and element index ([row, col]), unless AllowNonFinite,
//     in quantized weights and in float tensors copied unchanged (norms,
//     lm_head, skipped layers) alike. A checkpoint
//     that already has a quantization_config is refused
//     (ErrAlreadyQuantized).
//   - Report: one row per quantized tensor (relative RMSE, max abs error,
//     cosine similarity, computed against the dequantized stored values)
//     and the whole-model summary, as a quality.Report.
package ctensors
