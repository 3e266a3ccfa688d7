//go:build !amd64 || purego

package ggml

func qkx2Sums(xt, wt, fq *[QK_K]float32, ln *qkLanes) { qkx2SumsGo(xt, wt, fq, ln) }

func qkx2Errors(xt, wt, fq *[QK_K]float32, ln *qkLanes) { qkx2ErrorsGo(xt, wt, fq, ln) }

func qx6Sums(xt, wt, wvt *[QK_K]float32, isc, sLX, sL2 *[16]float32) {
	qx6SumsGo(xt, wt, wvt, isc, sLX, sL2)
}

func qkx2Loop(t *qkScratch, nmax, rmin, rdelta float32, is, nstep int) int { return is }

func qx6Loop(t *q6Scratch) bool { return false }

func kQuants(l *[QK_K]uint8, x *[QK_K]float32, d, dm *[QK_K / 32]float32, nmax int32) {
	kQuantsGo(l, x, d, dm, nmax)
}

func qkx2Setup(x *[QK_K]float32, t *qkScratch, nmax int32) bool { return false }

func qx6Setup(x *[QK_K]float32, t *q6Scratch) bool { return false }

func q6Quants(l *[QK_K]int8, x *[QK_K]float32, d *[QK_K / 16]float32) { q6QuantsGo(l, x, d) }

func allFinite(x []float32) bool { return allFiniteGo(x) }
