//go:build !amd64 || purego

package ggml

func quantizeQ8_0(dst []byte, src []float32) { quantizeQ8_0Go(dst, src) }

func dequantizeQ8_0(dst []float32, src []byte) { dequantizeQ8_0Go(dst, src) }

func fusedQ8_0() bool { return false }

func quantizeDequantizeQ8_0(dst []byte, y, src []float32) {
	quantizeQ8_0Go(dst, src)
	dequantizeQ8_0Go(y, dst)
}

func decodeF16Wide(dst []float32, src []byte) (int, bool) { return 0, true }

func decodeBF16Wide(dst []float32, src []byte) int { return 0 }

func encodeF16Wide(dst []byte, src []float32) int { return 0 }

func quantizeQ4_0(dst []byte, src []float32) { quantizeQ4_0Go(dst, src) }

func dequantizeQ4_0(dst []float32, src []byte) { dequantizeQ4_0Go(dst, src) }

func quantizeQ4_1(dst []byte, src []float32) { quantizeQ4_1Go(dst, src) }

func quantizeQ5_0(dst []byte, src []float32) { quantizeQ5_0Go(dst, src) }

func quantizeQ5_1(dst []byte, src []float32) { quantizeQ5_1Go(dst, src) }

func dequantizeQ4_1(dst []float32, src []byte) { dequantizeQ4_1Go(dst, src) }

func dequantizeQ5_0(dst []float32, src []byte) { dequantizeQ5_0Go(dst, src) }

func dequantizeQ5_1(dst []float32, src []byte) { dequantizeQ5_1Go(dst, src) }
