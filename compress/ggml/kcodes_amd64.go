//go:build !purego

package ggml

import "github.com/gantry-dev/gantry/compress/internal/simd"

// The K-quant dequantizers at the AVX2 level and above: the Go code
// computes a super-block's sixteen scale products (each the float32
// product the Go reference computes), and the assembly expands the codes
// and does the reference's multiply (and subtract), value for value, so
// every result is bit-identical, NaN payloads included.

// dequantizeQ4K is dequantizeQ4KGo, in AVX2 at that level and above.
func dequantizeQ4K(dst []float32, src []byte) {
	if simd.Current() < simd.AVX2 {
		dequantizeQ4KGo(dst, src)
		return
	}
	var dm [16]float32
	for ; len(dst) >= QK_K && len(src) >= 144; src, dst = src[144:], dst[QK_K:] {
		kScaleMins(&dm, src)
		dequantizeQ4KAVX2(&dst[0], &src[16], &dm)
	}
}

// dequantizeQ5K is dequantizeQ5KGo, in AVX2 at that level and above.
func dequantizeQ5K(dst []float32, src []byte) {
	if simd.Current() < simd.AVX2 {
		dequantizeQ5KGo(dst, src)
		return
	}
	var dm [16]float32
	for ; len(dst) >= QK_K && len(src) >= 176; src, dst = src[176:], dst[QK_K:] {
		kScaleMins(&dm, src)
		dequantizeQ5KAVX2(&dst[0], &src[16], &dm)
	}
}

// dequantizeQ6K is dequantizeQ6KGo, in AVX2 at that level and above.
func dequantizeQ6K(dst []float32, src []byte) {
	if simd.Current() < simd.AVX2 {
		dequantizeQ6KGo(dst, src)
		return
	}
	var ds [16]float32
	for ; len(dst) >= QK_K && len(src) >= 210; src, dst = src[210:], dst[QK_K:] {
		q6Scales(&ds, (*[210]byte)(src))
		dequantizeQ6KAVX2(&dst[0], &src[0], &ds)
	}
}

// dequantizeQ4KAVX2 writes the 256 values of the codes q (128 bytes) with
// the scales dm[0:8] and mins dm[8:16].
//
//go:noescape
func dequantizeQ4KAVX2(dst *float32, q *byte, dm *[16]float32)

// dequantizeQ5KAVX2 is dequantizeQ4KAVX2 for qh (32 bytes) followed by
// the low nibbles (128 bytes).
//
//go:noescape
func dequantizeQ5KAVX2(dst *float32, qh *byte, dm *[16]float32)

// dequantizeQ6KAVX2 writes the 256 values of the Q6_K block x with the
// scale products ds.
//
//go:noescape
func dequantizeQ6KAVX2(dst *float32, x *byte, ds *[16]float32)

// packQ4K is packQ4KGo, in AVX2 at that level and above.
func packQ4K(q *[128]byte, l *[QK_K]uint8) {
	if simd.Current() < simd.AVX2 {
		packQ4KGo(q, l)
		return
	}
	packQ4KAVX2(q, l)
}

// packQ5K is packQ5KGo, in AVX2 at that level and above.
func packQ5K(q *[160]byte, l *[QK_K]uint8) {
	if simd.Current() < simd.AVX2 {
		packQ5KGo(q, l)
		return
	}
	packQ5KAVX2(q, l)
}

// packQ6K is packQ6KGo, in AVX2 at that level and above.
func packQ6K(q *[192]byte, l *[QK_K]int8) {
	if simd.Current() < simd.AVX2 {
		packQ6KGo(q, l)
		return
	}
	packQ6KAVX2(q, l)
}

//go:noescape
func packQ4KAVX2(q *[128]byte, l *[QK_K]uint8)

//go:noescape
func packQ5KAVX2(q *[160]byte, l *[QK_K]uint8)

//go:noescape
func packQ6KAVX2(q *[192]byte, l *[QK_K]int8)
