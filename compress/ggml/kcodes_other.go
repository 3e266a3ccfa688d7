//go:build !amd64 || purego

package ggml

func dequantizeQ4K(dst []float32, src []byte) { dequantizeQ4KGo(dst, src) }

func dequantizeQ5K(dst []float32, src []byte) { dequantizeQ5KGo(dst, src) }

func dequantizeQ6K(dst []float32, src []byte) { dequantizeQ6KGo(dst, src) }

func packQ4K(q *[128]byte, l *[QK_K]uint8) { packQ4KGo(q, l) }

func packQ5K(q *[160]byte, l *[QK_K]uint8) { packQ5KGo(q, l) }

func packQ6K(q *[192]byte, l *[QK_K]int8) { packQ6KGo(q, l) }
