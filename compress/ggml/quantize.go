package ggml

import "fmt"

// CanQuantize reports whether Quantize supports t as a target.
func CanQuantize(t Type) bool {
	switch t {
	case Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K:
		return true
	}
	return false
}

// Quantize encodes src as blocks of type t into dst, exactly as ggml's
// quantize_row_<t>_ref, and returns the number of bytes written.
// len(src) must be a multiple of t's block size and dst must hold
// t.RowSize(len(src)) bytes. Rows are independent of each other in every
// supported type, so any run of whole blocks may be quantized on its own.
func Quantize(t Type, dst []byte, src []float32) (int, error) {
	if !CanQuantize(t) {
		return 0, fmt.Errorf("quantize to %v: not supported", t)
	}
	n, err := t.RowSize(int64(len(src)))
	if err != nil {
		return 0, fmt.Errorf("quantize to %v: %w", t, err)
	}
	if int64(len(dst)) < n {
		return 0, fmt.Errorf("quantize to %v: destination holds %d bytes, need %d", t, len(dst), n)
	}
	dst = dst[:n]
	switch t {
	case Q8_0:
		quantizeQ8_0(dst, src)
	case Q4_0:
		quantizeQ4_0(dst, src)
	case Q4_1:
		quantizeQ4_1(dst, src)
	case Q5_0:
		quantizeQ5_0(dst, src)
	case Q5_1:
		quantizeQ5_1(dst, src)
	case Q4_K:
		quantizeQ4K(dst, src)
	case Q5_K:
		quantizeQ5K(dst, src)
	case Q6_K:
		quantizeQ6K(dst, src)
	}
	return int(n), nil
}

// FusesDequantize reports whether QuantizeDequantize of t does both in one
// kernel at the current simd level (Q8_0 at AVX512), rather than as the
// two passes.
func FusesDequantize(t Type) bool { return t == Q8_0 && fusedQ8_0() }

// QuantizeDequantize is Quantize(t, dst, src) followed by Dequantize of
// its output into y[:len(src)], bit for bit, for the error report: where a
// kernel can (Q8_0 at the AVX512 level) the values are dequantized while
// the quants are still in registers, instead of in a second pass. It
// returns the number of bytes written to dst.
func QuantizeDequantize(t Type, dst []byte, y, src []float32) (int, error) {
	if len(y) < len(src) {
		return 0, fmt.Errorf("quantize to %v: %d values for the dequantized copy, need %d", t, len(y), len(src))
	}
	y = y[:len(src)]
	if t != Q8_0 {
		n, err := Quantize(t, dst, src)
		if err != nil {
			return 0, err
		}
		return n, Dequantize(t, y, dst[:n])
	}
	n, err := t.RowSize(int64(len(src)))
	if err != nil {
		return 0, fmt.Errorf("quantize to %v: %w", t, err)
	}
	if int64(len(dst)) < n {
		return 0, fmt.Errorf("quantize to %v: destination holds %d bytes, need %d", t, len(dst), n)
	}
	quantizeDequantizeQ8_0(dst[:n], y, src)
	return int(n), nil
}

// Dequantize decodes len(dst) values of type t from src, as ggml's
// dequantize_row_<t> (or the plain conversion for F32, F16 and BF16).
// len(dst) must be a multiple of the block size and src must hold
// t.RowSize(len(dst)) bytes.
func Dequantize(t Type, dst []float32, src []byte) error {
	n, err := t.RowSize(int64(len(dst)))
	if err != nil {
		return fmt.Errorf("dequantize %v: %w", t, err)
	}
	if int64(len(src)) < n {
		return fmt.Errorf("dequantize %v: source holds %d bytes, need %d", t, len(src), n)
	}
	src = src[:n]
	switch t {
	case F32:
		DecodeF32(dst, src)
	case F16:
		DecodeF16(dst, src)
	case BF16:
		DecodeBF16(dst, src)
	case Q8_0:
		dequantizeQ8_0(dst, src)
	case Q4_0:
		dequantizeQ4_0(dst, src)
	case Q4_1:
		dequantizeQ4_1(dst, src)
	case Q5_0:
		dequantizeQ5_0(dst, src)
	case Q5_1:
		dequantizeQ5_1(dst, src)
	case Q4_K:
		dequantizeQ4K(dst, src)
	case Q5_K:
		dequantizeQ5K(dst, src)
	case Q6_K:
		dequantizeQ6K(dst, src)
	default:
		return fmt.Errorf("dequantize %v: not supported", t)
	}
	return nil
}
