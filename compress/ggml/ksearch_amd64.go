//go:build !purego

package ggml

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
