//go:build !amd64 || purego

package ggml

func quantizeQ8_0(dst []byte, src []float32) { quantizeQ8_0Go(dst, src) }

func dequantizeQ8_0(dst []float32, src []byte) { dequantizeQ8_0Go(dst, src) }

func decodeF16Wide(dst []float32, src []byte) int { return 0 }

func quantizeQ4_0(dst []byte, src []float32) { quantizeQ4_0Go(dst, src) }

func dequantizeQ4_0(dst []float32, src []byte) { dequantizeQ4_0Go(dst, src) }
