// Package compress quantizes model files. It is the front door to the
// format packages below it:
//
//   - gguf, ggml and ggufquant: GGUF v3 files, ggml's reference quantizers
//     (Q8_0 … Q6_K, bit for bit) and llama-quantize's file pipeline,
//     mixes and metadata;
//   - safetensors and ctensors: safetensors files and Hugging Face
//     checkpoints converted to vLLM's compressed-tensors (fp8, int8, int4);
//   - quality: the error statistics every quantized tensor is reported
//     with, which the release gate reads.
//
// What it promises: a model is never read whole into memory (memory is
// bounded by a small multiple of the work unit, not the model); output is
// written atomically; the output does not depend on the thread count; and
// Version changes whenever the output for the same input would.
package compress
