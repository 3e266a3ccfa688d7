package ggml

import (
	"encoding/binary"
	"math"
)

// Block sizes of the types quantized here.
const (
	QK   = 32  // values per block of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
	QK_K = 256 // values per super-block of the K-quants
)

// abs32 is fabsf.
func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// roundHalfAway is C's roundf followed by a conversion to int: halves go away
// from zero. Adding ±0.5 (with v's sign) in float64 is exact for any float32
// from 2^−28 up to 2^29, cannot reach the next integer for smaller v, and the
// conversion truncates; so this equals roundf without a branch or math.Round.
func roundHalfAway(v float32) int32 {
	f := float64(v)
	return int32(f + math.Copysign(0.5, f))
}

func putF16(b []byte, v float32) { binary.LittleEndian.PutUint16(b, FP32ToFP16(v)) }
func getF16(b []byte) float32    { return f16Table[binary.LittleEndian.Uint16(b)] }

// quantizeQ8_0Go is quantize_row_q8_0_ref: d = max|x|/127, q = roundf(x/d).
func quantizeQ8_0Go(dst []byte, src []float32) {
	for ; len(src) >= QK; src, dst = src[QK:], dst[34:] {
		x := (*[QK]float32)(src)
		y := (*[34]byte)(dst)
		var amax float32
		for _, v := range x {
			// MAX(amax, fabsf(v)) with C's operand order, so NaN behaves alike.
			if a := abs32(v); !(amax > a) {
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		for j, v := range x {
			y[2+j] = byte(int8(roundHalfAway(v * id)))
		}
	}
}

func dequantizeQ8_0Go(dst []float32, src []byte) {
	for ; len(dst) >= QK; src, dst = src[34:], dst[QK:] {
		y := (*[QK]float32)(dst)
		x := (*[34]byte)(src)
		d := getF16(x[0:])
		for j := range y {
			y[j] = float32(int8(x[2+j])) * d
		}
	}
}

// absMaxSigned returns the value with the largest magnitude, the first one on
// ties, starting from +0 (quantize_row_q4_0_ref's loop).
func absMaxSigned(x *[QK]float32) float32 {
	var amax, max float32
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax = a
			max = v
		}
	}
	return max
}

// quantizeQ4_0Go is quantize_row_q4_0_ref: d = max/−8, q = min(15, (int8)(x/d + 8.5)).
func quantizeQ4_0Go(dst []byte, src []float32) {
	for ; len(src) >= QK; src, dst = src[QK:], dst[18:] {
		x := (*[QK]float32)(src)
		y := (*[18]byte)(dst)
		d := absMaxSigned(x) / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		for j := 0; j < QK/2; j++ {
			x0 := float32(x[j]*id) + 8.5
			x1 := float32(x[j+QK/2]*id) + 8.5
			y[2+j] = clampTrunc(x0, 15) | clampTrunc(x1, 15)<<4
		}
	}
}

// clampTrunc is MIN(max, (int8_t)v) stored in a uint8, with the C
// conversion's truncation toward zero.
func clampTrunc(v float32, max int32) byte {
	q := int32(int8(int32(v)))
	if q > max {
		q = max
	}
	return byte(q)
}

func dequantizeQ4_0Go(dst []float32, src []byte) {
	for ; len(dst) >= QK; src, dst = src[18:], dst[QK:] {
		y := (*[QK]float32)(dst)
		x := (*[18]byte)(src)
		d := getF16(x[0:])
		for j := 0; j < QK/2; j++ {
			y[j] = float32(int32(x[2+j]&15)-8) * d
			y[j+QK/2] = float32(int32(x[2+j]>>4)-8) * d
		}
	}
}

// minMax is the strict-comparison min/max scan of quantize_row_q4_1_ref.
func minMax(x *[QK]float32) (min, max float32) {
	min, max = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < min {
			min = v
		}
		if v > max {
			max = v
		}
	}
	return min, max
}

// quantizeQ4_1Go is quantize_row_q4_1_ref: d = (max−min)/15, m = min,
// q = min(15, (int8)((x−min)/d + 0.5)).
func quantizeQ4_1Go(dst []byte, src []float32) {
	for ; len(src) >= QK; src, dst = src[QK:], dst[20:] {
		x := (*[QK]float32)(src)
		y := (*[20]byte)(dst)
		min, max := minMax(x)
		d := (max - min) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		putF16(y[2:], min)
		for j := 0; j < QK/2; j++ {
			x0 := float32((x[j]-min)*id) + 0.5
			x1 := float32((x[j+QK/2]-min)*id) + 0.5
			y[4+j] = clampTrunc(x0, 15) | clampTrunc(x1, 15)<<4
		}
	}
}

func dequantizeQ4_1Go(dst []float32, src []byte) {
	for ; len(dst) >= QK; src, dst = src[20:], dst[QK:] {
		y := (*[QK]float32)(dst)
		x := (*[20]byte)(src)
		d, m := getF16(x[0:]), getF16(x[2:])
		for j := 0; j < QK/2; j++ {
			y[j] = float32(float32(x[4+j]&15)*d) + m
			y[j+QK/2] = float32(float32(x[4+j]>>4)*d) + m
		}
	}
}

// quantizeQ5_0Go is quantize_row_q5_0_ref: d = max/−16,
// q = min(31, (int8)(x/d + 16.5)), bit 4 of q[k] in bit k of qh.
func quantizeQ5_0Go(dst []byte, src []float32) {
	for ; len(src) >= QK; src, dst = src[QK:], dst[22:] {
		x := (*[QK]float32)(src)
		y := (*[22]byte)(dst)
		d := absMaxSigned(x) / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		var qh uint32
		for j := 0; j < QK/2; j++ {
			x0 := float32(x[j]*id) + 16.5
			x1 := float32(x[j+QK/2]*id) + 16.5
			q0, q1 := clampTrunc(x0, 31), clampTrunc(x1, 31)
			y[6+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(y[2:], qh)
	}
}

func dequantizeQ5_0Go(dst []float32, src []byte) {
	for ; len(dst) >= QK; src, dst = src[22:], dst[QK:] {
		y := (*[QK]float32)(dst)
		x := (*[22]byte)(src)
		d := getF16(x[0:])
		qh := binary.LittleEndian.Uint32(x[2:])
		for j := 0; j < QK/2; j++ {
			h0 := int32(qh>>j&1) << 4
			h1 := int32(qh>>(j+QK/2)&1) << 4
			y[j] = float32((int32(x[6+j]&15)|h0)-16) * d
			y[j+QK/2] = float32((int32(x[6+j]>>4)|h1)-16) * d
		}
	}
}

// quantizeQ5_1Go is quantize_row_q5_1_ref: d = (max−min)/31, m = min,
// q = (uint8)((x−min)/d + 0.5) with no clamp.
func quantizeQ5_1Go(dst []byte, src []float32) {
	for ; len(src) >= QK; src, dst = src[QK:], dst[24:] {
		x := (*[QK]float32)(src)
		y := (*[24]byte)(dst)
		min, max := minMax(x)
		d := (max - min) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		putF16(y[2:], min)
		var qh uint32
		for j := 0; j < QK/2; j++ {
			x0 := float32((x[j]-min)*id) + 0.5
			x1 := float32((x[j+QK/2]-min)*id) + 0.5
			q0, q1 := uint8(int32(x0)), uint8(int32(x1))
			y[8+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(y[4:], qh)
	}
}

func dequantizeQ5_1Go(dst []float32, src []byte) {
	for ; len(dst) >= QK; src, dst = src[24:], dst[QK:] {
		y := (*[QK]float32)(dst)
		x := (*[24]byte)(src)
		d, m := getF16(x[0:]), getF16(x[2:])
		qh := binary.LittleEndian.Uint32(x[4:])
		for j := 0; j < QK/2; j++ {
			h0 := uint32(qh>>j&1) << 4
			h1 := uint32(qh>>(j+QK/2)&1) << 4
			y[j] = float32(float32(uint32(x[8+j]&15)|h0)*d) + m
			y[j+QK/2] = float32(float32(uint32(x[8+j]>>4)|h1)*d) + m
		}
	}
}
