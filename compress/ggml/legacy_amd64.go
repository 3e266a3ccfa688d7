//go:build !purego

package ggml

import "github.com/gantry-dev/gantry/compress/internal/simd"

// quantizeQ8_0 is quantizeQ8_0Go, in AVX2 at that level and above: it
// hands blocks with a NaN or ±Inf (whose MAX order and conversions the
// vector code does not reproduce) or a subnormal scale to the Go code one
// at a time.
func quantizeQ8_0(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ8_0Go(dst, src)
		return
	}
	for nb := len(src) / QK; nb > 0; {
		k := quantizeQ8_0AVX2(&dst[0], &src[0], nb)
		dst, src, nb = dst[34*k:], src[QK*k:], nb-k
		if nb > 0 {
			quantizeQ8_0Go(dst[:34], src[:QK])
			dst, src, nb = dst[34:], src[QK:], nb-1
		}
	}
}

// quantizeQ4_0 is quantizeQ4_0Go, in AVX2 at that level and above, with
// the same hand-off to the Go code as quantizeQ8_0.
func quantizeQ4_0(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ4_0Go(dst, src)
		return
	}
	for nb := len(src) / QK; nb > 0; {
		k := quantizeQ4_0AVX2(&dst[0], &src[0], nb)
		dst, src, nb = dst[18*k:], src[QK*k:], nb-k
		if nb > 0 {
			quantizeQ4_0Go(dst[:18], src[:QK])
			dst, src, nb = dst[18:], src[QK:], nb-1
		}
	}
}

// dequantizeQ8_0 is dequantizeQ8_0Go, in AVX2 at that level and above.
func dequantizeQ8_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	if simd.Current() < simd.AVX2 || nb == 0 {
		dequantizeQ8_0Go(dst, src)
		return
	}
	_ = src[34*nb-1]
	dequantizeQ8_0AVX2(&dst[0], &src[0], nb)
}

// dequantizeQ4_0 is dequantizeQ4_0Go, in AVX2 at that level and above.
func dequantizeQ4_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	if simd.Current() < simd.AVX2 || nb == 0 {
		dequantizeQ4_0Go(dst, src)
		return
	}
	_ = src[18*nb-1]
	dequantizeQ4_0AVX2(&dst[0], &src[0], nb)
}

// decodeF16Wide converts the leading values of src to dst in groups of 16
// with F16C at the AVX2 level and above, and returns how many it did.
func decodeF16Wide(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2) &^ 15
	if n == 0 || simd.Current() < simd.AVX2 {
		return 0
	}
	decodeF16AVX2(&dst[0], &src[0], n)
	return n
}

//go:noescape
func quantizeQ8_0AVX2(dst *byte, src *float32, nb int) int

//go:noescape
func quantizeQ4_0AVX2(dst *byte, src *float32, nb int) int

//go:noescape
func dequantizeQ8_0AVX2(dst *float32, src *byte, nb int)

//go:noescape
func dequantizeQ4_0AVX2(dst *float32, src *byte, nb int)

//go:noescape
func decodeF16AVX2(dst *float32, src *byte, n int)
