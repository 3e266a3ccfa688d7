//go:build !purego

package ggml

import "github.com/gantry-dev/gantry/compress/internal/simd"

// quantizeQ8_0 is quantizeQ8_0Go, in AVX2 at that level and above: it
// hands blocks with a NaN or ±Inf (whose MAX order and conversions the
// vector code does not reproduce) or a subnormal scale to the Go code one
// at a time. At AVX512, groups of sixteen blocks go to the AVX-512 kernel
// first; the AVX2 kernel takes the rest of a group it stops at.
func quantizeQ8_0(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ8_0Go(dst, src)
		return
	}
	var wide qxKernel
	if simd.Current() >= simd.AVX512 {
		wide = q8_0Wide
	}
	legacyAVX2(dst, src, &q8_0Params, wide, q8_0AVX2, quantizeQ8_0Go)
}

// q8_0Params, q8_0Wide and q8_0AVX2 fit the Q8_0 kernels, which need no
// constants beyond the block size, to legacyAVX2.
var q8_0Params = qx0Params{size: 34}

func q8_0Wide(dst *byte, src *float32, nb int, _ *qx0Params) int {
	return quantizeQ8_0AVX512(dst, src, nb, simd.Current() >= simd.AVX512VBMI)
}

func q8_0AVX2(dst *byte, src *float32, nb int, _ *qx0Params) int {
	return quantizeQ8_0AVX2(dst, src, nb)
}

func fusedQ8_0() bool { return simd.Current() >= simd.AVX512 }

// quantizeDequantizeQ8_0 is quantizeQ8_0(dst, src) and dequantizeQ8_0(y,
// dst): at the AVX512 level the sixteen-block kernel writes both (packing
// the quants with VBMI's VPERMI2B at AVX512VBMI); the groups it stops at
// take the two passes.
func quantizeDequantizeQ8_0(dst []byte, y, src []float32) {
	if simd.Current() < simd.AVX512 {
		quantizeQ8_0(dst, src)
		dequantizeQ8_0(y, dst)
		return
	}
	vbmi := simd.Current() >= simd.AVX512VBMI
	for nb := len(src) / QK; nb > 0; {
		_, _ = dst[34*nb-1], y[QK*nb-1]
		k := quantizeDequantizeQ8_0AVX512(&dst[0], &y[0], &src[0], nb, vbmi)
		dst, y, src, nb = dst[34*k:], y[QK*k:], src[QK*k:], nb-k
		if nb == 0 {
			return
		}
		m := min(nb, 16)
		quantizeQ8_0(dst[:34*m], src[:QK*m])
		dequantizeQ8_0(y[:QK*m], dst[:34*m])
		dst, y, src, nb = dst[34*m:], y[QK*m:], src[QK*m:], nb-m
	}
}

// qx0Params and qx1Params are the constants of one legacy type for
// quantizeQx0AVX2 (d = signed max/div) and quantizeQx1AVX2 (d =
// (max−min)/div, m = min). The assembly depends on this layout.
type qx0Params struct {
	div, add    float32
	clamp, five int32
	size        int64
}

type qx1Params = qx0Params

var (
	q4_0Params = qx0Params{div: -8, add: 8.5, clamp: 15, size: 18}
	q5_0Params = qx0Params{div: -16, add: 16.5, clamp: 31, five: 1, size: 22}
	q4_1Params = qx1Params{div: 15, add: 0.5, clamp: 15, size: 20}
	q5_1Params = qx1Params{div: 31, add: 0.5, clamp: 255, five: 1, size: 24}
)

// qxKernel is a legacy-type assembly kernel: it does what it can of nb
// blocks and returns the number done.
type qxKernel func(dst *byte, src *float32, nb int, p *qx0Params) int

// legacyAVX2 runs kernel over src and hands each block it stops at to
// goRef. With a wide kernel (sixteen blocks a group, AVX512), that one
// runs first and kernel takes the rest of a group it stops at.
func legacyAVX2(dst []byte, src []float32, p *qx0Params, wide, kernel qxKernel, goRef func([]byte, []float32)) {
	size := int(p.size)
	for nb := len(src) / QK; nb > 0; {
		_ = dst[size*nb-1]
		m := nb
		if wide != nil {
			k := wide(&dst[0], &src[0], nb, p)
			if dst, src, nb = dst[size*k:], src[QK*k:], nb-k; nb == 0 {
				return
			}
			m = min(nb, 16)
		}
		k := kernel(&dst[0], &src[0], m, p)
		dst, src, nb = dst[size*k:], src[QK*k:], nb-k
		if k < m {
			goRef(dst[:size], src[:QK])
			dst, src, nb = dst[size:], src[QK:], nb-1
		}
	}
}

// qx0Wide is Q4_0's and Q5_0's sixteen-block kernel at the AVX512 level,
// or nil.
func qx0Wide() qxKernel {
	if simd.Current() >= simd.AVX512 {
		return quantizeQx0AVX512
	}
	return nil
}

// qx1Wide is Q4_1's and Q5_1's sixteen-block kernel at the AVX512 level,
// or nil.
func qx1Wide() qxKernel {
	if simd.Current() >= simd.AVX512 {
		return quantizeQx1AVX512
	}
	return nil
}

// quantizeQ4_0 is quantizeQ4_0Go, in AVX2 at that level and above, with
// the same hand-off to the Go code as quantizeQ8_0.
func quantizeQ4_0(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ4_0Go(dst, src)
		return
	}
	legacyAVX2(dst, src, &q4_0Params, qx0Wide(), quantizeQx0AVX2, quantizeQ4_0Go)
}

// quantizeQ5_0 is quantizeQ5_0Go, in AVX2 at that level and above.
func quantizeQ5_0(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ5_0Go(dst, src)
		return
	}
	legacyAVX2(dst, src, &q5_0Params, qx0Wide(), quantizeQx0AVX2, quantizeQ5_0Go)
}

// quantizeQ4_1 is quantizeQ4_1Go, in AVX2 at that level and above; blocks
// whose min is 0 or subnormal also go to the Go code.
func quantizeQ4_1(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ4_1Go(dst, src)
		return
	}
	legacyAVX2(dst, src, &q4_1Params, qx1Wide(), quantizeQx1AVX2, quantizeQ4_1Go)
}

// quantizeQ5_1 is quantizeQ5_1Go, in AVX2 at that level and above, as
// quantizeQ4_1.
func quantizeQ5_1(dst []byte, src []float32) {
	if simd.Current() < simd.AVX2 {
		quantizeQ5_1Go(dst, src)
		return
	}
	legacyAVX2(dst, src, &q5_1Params, qx1Wide(), quantizeQx1AVX2, quantizeQ5_1Go)
}

// dequantizeQ8_0 is dequantizeQ8_0Go, in AVX2 at that level and above.
func dequantizeQ8_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	if simd.Current() < simd.AVX2 || nb == 0 {
		dequantizeQ8_0Go(dst, src)
		return
	}
	_ = src[34*nb-1]
	if simd.Current() >= simd.AVX512 {
		dequantizeQ8_0AVX512(&dst[0], &src[0], nb)
		return
	}
	dequantizeQ8_0AVX2(&dst[0], &src[0], nb)
}

// dqParams are the constants of one legacy type for dequantizeLegacyAVX2.
// The assembly depends on this layout.
type dqParams struct {
	off, five, hasMin, qs int32
	size                  int64
}

var (
	q4_0DQ = dqParams{off: 8, qs: 2, size: 18}
	q4_1DQ = dqParams{hasMin: 1, qs: 4, size: 20}
	q5_0DQ = dqParams{off: 16, five: 1, qs: 6, size: 22}
	q5_1DQ = dqParams{five: 1, hasMin: 1, qs: 8, size: 24}
)

// dequantizeLegacy is goRef, in AVX2 at that level and above (AVX-512 at
// that level).
func dequantizeLegacy(dst []float32, src []byte, p *dqParams, goRef func([]float32, []byte)) {
	nb := len(dst) / QK
	if simd.Current() < simd.AVX2 || nb == 0 {
		goRef(dst, src)
		return
	}
	_ = src[int(p.size)*nb-1]
	if simd.Current() >= simd.AVX512 {
		dequantizeLegacyAVX512(&dst[0], &src[0], nb, p)
		return
	}
	dequantizeLegacyAVX2(&dst[0], &src[0], nb, p)
}

func dequantizeQ4_0(dst []float32, src []byte) { dequantizeLegacy(dst, src, &q4_0DQ, dequantizeQ4_0Go) }
func dequantizeQ4_1(dst []float32, src []byte) { dequantizeLegacy(dst, src, &q4_1DQ, dequantizeQ4_1Go) }
func dequantizeQ5_0(dst []float32, src []byte) { dequantizeLegacy(dst, src, &q5_0DQ, dequantizeQ5_0Go) }
func dequantizeQ5_1(dst []float32, src []byte) { dequantizeLegacy(dst, src, &q5_1DQ, dequantizeQ5_1Go) }

// decodeF16Wide converts the leading values of src to dst in groups of 16
// with F16C at the AVX2 level and above, and returns how many it did and
// whether they were all finite.
func decodeF16Wide(dst []float32, src []byte) (int, bool) {
	n := min(len(dst), len(src)/2) &^ 15
	switch l := simd.Current(); {
	case n == 0 || l < simd.AVX2:
		return 0, true
	case l >= simd.AVX512:
		return n, decodeF16AVX512(&dst[0], &src[0], n)
	}
	return n, decodeF16AVX2(&dst[0], &src[0], n)
}

//go:noescape
func quantizeQ8_0AVX2(dst *byte, src *float32, nb int) int

//go:noescape
func quantizeQx0AVX2(dst *byte, src *float32, nb int, p *qx0Params) int

//go:noescape
func quantizeQx1AVX2(dst *byte, src *float32, nb int, p *qx1Params) int

//go:noescape
func dequantizeQ8_0AVX2(dst *float32, src *byte, nb int)

//go:noescape
func dequantizeLegacyAVX2(dst *float32, src *byte, nb int, p *dqParams)

//go:noescape
func decodeF16AVX2(dst *float32, src *byte, n int) bool

// decodeBF16Wide converts the leading values of src to dst in groups of 16
// at the AVX2 level and above, and returns how many it did.
func decodeBF16Wide(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2) &^ 15
	switch l := simd.Current(); {
	case n == 0 || l < simd.AVX2:
		return 0
	case l >= simd.AVX512:
		decodeBF16AVX512(&dst[0], &src[0], n)
	default:
		decodeBF16AVX2(&dst[0], &src[0], n)
	}
	return n
}

// encodeF16Wide converts the leading values of src to dst in groups of 8
// with F16C at the AVX2 level and above, up to the first group holding a
// NaN, and returns how many it did.
func encodeF16Wide(dst []byte, src []float32) int {
	n := min(len(dst)/2, len(src)) &^ 7
	if n == 0 || simd.Current() < simd.AVX2 {
		return 0
	}
	return encodeF16AVX2(&dst[0], &src[0], n)
}

//go:noescape
func decodeBF16AVX2(dst *float32, src *byte, n int)

//go:noescape
func encodeF16AVX2(dst *byte, src *float32, n int) int
