// Package vllm states what vLLM can load from a compressed-tensors
// checkpoint: the int4 group sizes its WNA16 kernels serve, and which
// projections it fuses into one layer (so they must share one scheme).
//
// It is a leaf of facts with no imports of the project, stated once so
// that spec validation (before any model is read, with the attribute's
// position) and compress/ctensors (on the model itself) refuse the same
// things. It does no I/O.
package vllm
