package ggufquant

import (
	"encoding/binary"
	"fmt"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
)

// firstNonFiniteRaw returns the index of the first NaN or ±Inf among the
// little-endian F32, F16 or BF16 values in b (all exponent bits set), or
// −1; other types are not checked. It reads the bits, so copying a tensor
// stays a copy.
func firstNonFiniteRaw(t ggml.Type, b []byte) int {
	le := binary.LittleEndian
	switch t {
	case ggml.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			if le.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
				return i / 4
			}
		}
	case ggml.F16:
		for i := 0; i+2 <= len(b); i += 2 {
			if le.Uint16(b[i:])&0x7c00 == 0x7c00 {
				return i / 2
			}
		}
	case ggml.BF16:
		for i := 0; i+2 <= len(b); i += 2 {
			if le.Uint16(b[i:])&0x7f80 == 0x7f80 {
				return i / 2
			}
		}
	}
	return -1
}

// checkCopy refuses a NaN or ±Inf in a float tensor copied unchanged (a
// norm kept F32, a skipped or already-typed weight), as quantized tensors
// are refused: the model would be as broken either way.
func checkCopy(f *gguf.File, tp *TensorPlan, u *unit, in []byte) error {
	i := firstNonFiniteRaw(tp.From, in)
	if i < 0 {
		return nil
	}
	es := int(tp.From.TypeSize())
	var v [1]float32
	if err := ggml.Dequantize(tp.From, v[:], in[i*es:(i+1)*es]); err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	// For a copy, u.first is a byte offset into the tensor.
	return &NonFiniteError{File: f.Name, Tensor: tp.Name, Index: u.first/int64(es) + int64(i),
		Offset: u.inOff + int64(i*es), Value: v[0]}
}
