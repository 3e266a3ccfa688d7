//go:build !amd64 || purego

package ggufquant

func errorSums(x, y *float32, n int, acc *statSums) { errorSumsGo(x, y, n, acc) }

func finitePrefix(x []float32) int { return 0 }
