//go:build !purego

package ggufquant

import "github.com/gantry-dev/gantry/compress/internal/simd"

// errorSums adds the first n (a multiple of 4) pairs of x and y to acc,
// lane by lane, at the best simd level: the same operations per lane in
// the same order at every level, so the sums are identical.
func errorSums(x, y *float32, n int, acc *statSums) {
	switch l := simd.Current(); {
	case l >= simd.AVX2:
		errorSumsAVX2(x, y, n, acc)
	case l >= simd.SSE2:
		errorSumsSSE2(x, y, n, acc)
	default:
		errorSumsGo(x, y, n, acc)
	}
}

// errorSums2 is errorSums(x1, y1, n, a1) and errorSums(x2, y2, n, a2) in
// one loop where the level has one (AVX2): the two runs' chains are
// independent, so each fills the other's wait on the FMA latency.
func errorSums2(x1, y1, x2, y2 *float32, n int, a1, a2 *statSums) {
	if simd.Current() >= simd.AVX2 {
		errorSums2AVX2(x1, y1, x2, y2, n, a1, a2)
		return
	}
	errorSums(x1, y1, n, a1)
	errorSums(x2, y2, n, a2)
}

//go:noescape
func errorSums2AVX2(x1, y1, x2, y2 *float32, n int, a1, a2 *statSums)

// errorSumsSSE2 is errorSumsGo in SSE2: two float64 lanes per register.
//
//go:noescape
func errorSumsSSE2(x, y *float32, n int, acc *statSums)

// errorSumsAVX2 is errorSumsGo in AVX and FMA: the four lanes in one
// register (FMA where it is exact, as the assembly explains).
//
//go:noescape
func errorSumsAVX2(x, y *float32, n int, acc *statSums)

// finitePrefix returns the length of a prefix of x, in whole groups of 8
// or 16, that holds no NaN or ±Inf (v−v = 0 in every lane); firstNonFinite
// scans the rest. At the Scalar level it is 0.
func finitePrefix(x []float32) int {
	n := len(x) &^ 7
	if n == 0 {
		return 0
	}
	switch l := simd.Current(); {
	case l >= simd.AVX2:
		return finitePrefixAVX2(&x[0], n)
	case l >= simd.SSE2:
		return finitePrefixAsm(&x[0], n)
	}
	return 0
}

//go:noescape
func finitePrefixAsm(x *float32, n int) int

//go:noescape
func finitePrefixAVX2(x *float32, n int) int
