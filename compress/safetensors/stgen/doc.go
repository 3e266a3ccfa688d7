// Package stgen generates small, deterministic Hugging Face style llama
// checkpoints for tests, benchmarks and examples.
//
// [WriteLlamaCheckpoint] writes a directory with config.json,
// generation_config.json, tokenizer stand-ins, and the weights as
// model.safetensors or as model-0000i-of-0000N.safetensors shards with a
// model.safetensors.index.json. Tensor names follow the transformers llama
// layout (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight,
// …, lm_head.weight). Values come from a fixed-seed integer PRNG keyed by
// tensor name, so the same Config gives byte-identical files on every
// machine, whatever the shard count, and generation streams in chunks: a
// checkpoint of any size is written in bounded memory.
package stgen
