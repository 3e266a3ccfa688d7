//go:build !purego

package ggml

import "github.com/gantry-dev/gantry/compress/internal/simd"

// qkx2Sums is qkx2SumsGo in SSE2 (8 lanes as two vectors).
//
//go:noescape
func qkx2Sums(xt, wt, fq *[QK_K]float32, ln *qkLanes)

// qkx2Errors is qkx2ErrorsGo in SSE2.
//
//go:noescape
func qkx2Errors(xt, wt, fq *[QK_K]float32, ln *qkLanes)

// qx6Sums is qx6SumsGo in SSE2 (16 lanes as four vectors).
//
//go:noescape
func qx6Sums(xt, wt, wvt *[QK_K]float32, isc, sLX, sL2 *[16]float32)

// qkx2Loop runs qkx2Step for candidates is… with AVX2 at that level and
// above, and returns the first candidate it did not do (nstep+1 when done).
func qkx2Loop(t *qkScratch, nmax, rmin, rdelta float32, is, nstep int) int {
	if simd.Current() < simd.AVX2 {
		return is
	}
	return qkx2LoopAVX2(&t.xt, &t.wt, &t.fq, &t.bq, &t.st, nmax, rmin, rdelta, is, nstep)
}

//go:noescape
func qkx2LoopAVX2(xt, wt, fq, bq *[QK_K]float32, s *qkState, nmax, rmin, rdelta float32, is, nstep int) int

// qx6Loop runs qx6Search's candidate loop with AVX2 at that level and
// above, and reports whether it did.
func qx6Loop(t *q6Scratch) bool {
	if simd.Current() < simd.AVX2 {
		return false
	}
	qx6LoopAVX2(&t.xt, &t.wt, &t.wvt, &t.st, &q6Nums)
	return true
}

//go:noescape
func qx6LoopAVX2(xt, wt, wvt *[QK_K]float32, s *q6State, nums *[18]float32)

// kQuants is kQuantsGo, in AVX2 at that level and above.
func kQuants(l *[QK_K]uint8, x *[QK_K]float32, d, dm *[QK_K / 32]float32, nmax int32) {
	if simd.Current() < simd.AVX2 {
		kQuantsGo(l, x, d, dm, nmax)
		return
	}
	kQuantsAVX2(l, x, d, dm, nmax)
}

//go:noescape
func kQuantsAVX2(l *[QK_K]uint8, x *[QK_K]float32, d, dm *[QK_K / 32]float32, nmax int32)

// qkx2Setup computes kScales' weights (transposed, in t.wt) and does the
// first part of qkx2Search with AVX2 at that level and above, and reports
// whether it did.
func qkx2Setup(x *[QK_K]float32, t *qkScratch, nmax int32) bool {
	if simd.Current() < simd.AVX2 {
		return false
	}
	qkx2SetupAVX2(x, &t.xt, &t.wt, &t.bq, &t.st, nmax)
	return true
}

//go:noescape
func qkx2SetupAVX2(x, xt, wt, bq *[QK_K]float32, s *qkState, nmax int32)

// qx6Setup does the first part of qx6Search with AVX2 at that level and
// above, and reports whether it did.
func qx6Setup(x *[QK_K]float32, t *q6Scratch) bool {
	if simd.Current() < simd.AVX2 {
		return false
	}
	qx6SetupAVX2(x, &t.xt, &t.wt, &t.wvt, &t.st, &t.isc)
	return true
}

// q6Quants is q6QuantsGo, in AVX2 at that level and above.
func q6Quants(l *[QK_K]int8, x *[QK_K]float32, d *[QK_K / 16]float32) {
	if simd.Current() < simd.AVX2 {
		q6QuantsGo(l, x, d)
		return
	}
	q6QuantsAVX2(l, x, d)
}

//go:noescape
func qx6SetupAVX2(x, xt, wt, wvt *[QK_K]float32, s *q6State, isc *[16]float32)

//go:noescape
func q6QuantsAVX2(l *[QK_K]int8, x *[QK_K]float32, d *[QK_K / 16]float32)

// allFinite is allFiniteGo, in AVX2 (a test of the exponent bits, 64
// values a step) at that level and above for lengths that are multiples
// of 64, such as a super-block.
func allFinite(x []float32) bool {
	if len(x) == 0 || len(x)%64 != 0 || simd.Current() < simd.AVX2 {
		return allFiniteGo(x)
	}
	return allFiniteAVX2(&x[0], len(x))
}

//go:noescape
func allFiniteAVX2(x *float32, n int) bool
