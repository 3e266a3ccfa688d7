// Package lora merges LoRA adapters into a model's base weights, before
// the model is quantized.
//
// PEFT's merge_and_unload cannot merge into an already quantized (GPTQ,
// AWQ) base, and llama.cpp's llama-export-lora dequantizes to F32 and
// writes F16: Gantry merges into the unquantized model it is about to
// quantize, keeps every tensor's dtype, and rounds once.
//
// # Formats
//
// A safetensors base is a Hugging Face checkpoint directory
// (model.safetensors, or model-0000i-of-0000n.safetensors shards with
// model.safetensors.index.json). Its adapters are PEFT adapter directories:
// adapter_config.json and adapter_model.safetensors, whose keys are
// base_model.model.<module>.lora_A.weight and .lora_B.weight (an adapter
// name such as .default before .weight is accepted too), lora_embedding_A
// and lora_embedding_B for embeddings, and base_model.model.<module>.weight
// for a modules_to_save module (older files:
// <module>.modules_to_save.<adapter>.weight). The output is a directory
// with the same files: every shard with the same tensors in the same order
// and dtypes, every other file (config.json, the index, tokenizer files)
// copied unchanged.
//
// A GGUF base is a .gguf file. Its adapters are GGUF LoRA files as
// llama.cpp's convert_lora_to_gguf.py writes them: general.type =
// "adapter", adapter.type = "lora", adapter.lora.alpha, and tensors
// <base tensor>.lora_a and .lora_b (F32, F16, BF16 or Q8_0; they are
// dequantized), already in the base's layout. In ggml's ne order a base
// tensor of ne [n_in, n_out] takes lora_a of ne [n_in, r] and lora_b of
// ne [r, n_out]; token_embd (ne [n_embd, n_vocab]) takes lora_a of
// ne [r, n_vocab] and lora_b of ne [r, n_embd], as llama.cpp reads them.
// The output is a GGUF file with the base's metadata and tensors.
//
// # Math
//
// For every base tensor W that adapters target,
//
//	W' = W + Σ_adapters scale · s · B·A
//
// where scale is Adapter.Scale and s the adapter's own scaling: for PEFT
// lora_alpha / r, or lora_alpha / √r with use_rslora, with r and alpha
// taken per module from rank_pattern and alpha_pattern (the first key whose
// regular expression matches the end of the module name at a dot, as PEFT
// matches them); for GGUF alpha / r with r the rank of lora_b (ne0), or 1
// when alpha is 0, as llama.cpp does. With fan_in_fan_out (GPT-2's Conv1D
// stores W as (in, out)) and for PEFT embeddings the delta is (B·A)ᵀ. A
// modules_to_save tensor replaces the base tensor; adapters apply in order,
// so a later adapter's delta adds to an earlier one's replacement.
//
// The adapters' matrices are widened to float64 (their products are then
// exact), every adapter's delta for a tensor is summed in float64 with the
// base value, and the result is rounded once to the base tensor's dtype:
// F32 to nearest, F16 and BF16 through a round-to-odd float32, which gives
// the correctly rounded value of the float64 sum. Tensors no adapter
// targets are copied byte for byte.
//
// Memory is bounded as for quantization: one tensor's adapter matrices at
// a time and about a megabyte of base rows; the base is streamed.
//
// # Refused
//
// Merge refuses, with an error naming the field or tensor and leaving
// nothing at the output: PEFT types other than LORA (LoHa, LoKr, IA³,
// AdaLoRA, …); DoRA (use_dora); QALoRA (use_qalora); trained biases (bias
// "all" or "lora_only", lora_bias); layer_replication;
// trainable_token_indices; target_parameters; activated LoRA
// (alora_invocation_tokens); Arrow; PiSSA, OLoRA, CorDA and LoftQ
// initialisations that were not converted back to plain LoRA when saved
// (they assume a modified base); adapter tensors for base tensors that do
// not exist; a target_modules entry that matches no module of the base; a
// missing lora_A/lora_B half; matrices whose shapes or rank do not fit the
// base (or r); NaN or Inf in an adapter or in a merged base tensor, and
// merged values that overflow the base dtype; a GGUF adapter for another
// general.architecture; and quantized base tensors (merge into the F16
// model, then quantize). Errors print field names, never the values of
// configuration strings, which may hold anything.
package lora
