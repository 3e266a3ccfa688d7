//go:build !purego

package ggml

// decodeF16Normal converts leading groups of 8 binary16 values of src to
// dst in SSE2 for as long as every value of a group is normal (exponent
// neither 0 nor 31), with decodeF16Scalar's bit operations, and returns
// how many values it converted (a multiple of 8).
func decodeF16Normal(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2) &^ 7
	if n == 0 {
		return 0
	}
	return decodeF16NormalAsm(&dst[0], &src[0], n)
}

//go:noescape
func decodeF16NormalAsm(dst *float32, src *byte, n int) int
