//go:build !purego

package ggufquant

// errorSums is errorSumsGo in SSE2: two float64 lanes per register, the
// same operations per lane in the same order, so the sums are identical.
//
//go:noescape
func errorSums(x, y *float32, n int, acc *statSums)

// finitePrefix returns the length of the longest prefix of x, in whole
// groups of 8, that holds no NaN or ±Inf (v−v = 0 in every lane).
func finitePrefix(x []float32) int {
	n := len(x) &^ 7
	if n == 0 {
		return 0
	}
	return finitePrefixAsm(&x[0], n)
}

//go:noescape
func finitePrefixAsm(x *float32, n int) int
