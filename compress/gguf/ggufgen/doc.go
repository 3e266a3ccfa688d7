// Package ggufgen writes synthetic llama-architecture GGUF models for tests,
// benchmarks and examples.
//
// WriteLlama produces a model with the tensor names, shapes, types and
// metadata that convert_hf_to_gguf.py writes for a llama model (F16 or BF16
// or F32 matrices, F32 norm vectors, a SentencePiece-style vocabulary), filled
// from a fixed-seed integer PRNG. It promises that the same Config always
// gives the same bytes, on any machine and with any GOMAXPROCS, and that it
// streams: memory use is bounded by one chunk of rows, whatever the model's
// size, so it can make multi-gigabyte inputs for memory measurements.
package ggufgen
