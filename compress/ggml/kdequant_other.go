//go:build !amd64 || purego

package ggml

func dequantizeQ4K(dst []float32, src []byte) { dequantizeQ4KGo(dst, src) }

func dequantizeQ5K(dst []float32, src []byte) { dequantizeQ5KGo(dst, src) }

func dequantizeQ6K(dst []float32, src []byte) { dequantizeQ6KGo(dst, src) }
