//go:build !amd64 || purego

package ggufquant

func errorSums(x, y *float32, n int, acc *statSums) { errorSumsGo(x, y, n, acc) }

func finitePrefix(x []float32) int { return 0 }

func errorSums2(x1, y1, x2, y2 *float32, n int, a1, a2 *statSums) {
	errorSumsGo(x1, y1, n, a1)
	errorSumsGo(x2, y2, n, a2)
}
