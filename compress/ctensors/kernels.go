package ctensors

import (
	"math"

	"github.com/gantry-dev/gantry/compress/quality"

	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// The kernels follow compressed-tensors (src/compressed_tensors/quantization/
// utils/helpers.py calculate_qparams and quant_args.py
// round_to_quantized_type_args, checked against the stored source):
//
//   - symmetric scale = max|x| / ((qmax − qmin) / 2): for FP8 E4M3 that is
//     max|x|/448; for int8 (range [−128, 127]) max|x|/127.5 and for int4
//     ([−8, 7]) max|x|/7.5 — not /127 or /7: the range is split evenly so
//     that −max|x| maps to the most negative code;
//   - a zero scale is replaced by the scale dtype's epsilon;
//   - q = clamp(x/scale, qmin, qmax), then rounded: for integers with
//     torch.round, which is round-half-to-even; for FP8 by the cast to
//     float8_e4m3fn, round to nearest even (the clamp makes it saturating).
//
// Deviations: the division is done in float32 (compressed-tensors divides
// in the weight's dtype), and only the finite values set the scale (with
// AllowNonFinite; otherwise non-finite input is an error before any kernel
// runs).

// FP8Max is the largest FP8 E4M3 magnitude, the FP8 scale divisor.
const FP8Max = st.F8E4M3Max

// scaleEps is torch.finfo(dtype).eps for the scale dtype.
func scaleEps(dt st.DType) float32 {
	switch dt {
	case st.BF16:
		return 1.0 / 128
	case st.F16:
		return 1.0 / 1024
	}
	return 1.1920929e-07
}

// roundScale rounds a scale to the dtype it is stored in, so that the
// quantization and the error report use the scale a loader will see.
func roundScale(s float32, dt st.DType) float32 {
	switch dt {
	case st.BF16:
		s = st.BF16ToF32(st.F32ToBF16(s))
	case st.F16:
		s = st.F16ToF32(st.F32ToF16(s))
	}
	if s == 0 {
		s = scaleEps(dt)
	}
	return s
}

// absMax returns max|x| over the finite elements of x.
func absMax(x []float32) float32 {
	var m float32
	for _, v := range x {
		a := float32(math.Abs(float64(v)))
		if a > m && a <= math.MaxFloat32 {
			m = a
		}
	}
	return m
}

// QuantizeFP8Row quantizes one row (one output channel) to FP8 E4M3 with a
// single float32 scale = max|x|/448. It writes len(x) codes to q, the
// dequantized values q·scale to y when y is not nil, and returns the scale.
// At the AVX2 level it runs vector code (see quantizeFP8Row), bit for bit
// the same as quantizeFP8RowGo.
func QuantizeFP8Row(q []byte, y, x []float32) float32 {
	return quantizeFP8Row(q, y, x)
}

// quantizeFP8RowGo is QuantizeFP8Row in portable Go: the reference the
// vector code is tested against, and its fallback.
func quantizeFP8RowGo(q []byte, y, x []float32) float32 {
	s := absMax(x) / FP8Max
	if s == 0 {
		s = scaleEps(st.F32)
	}
	quantizeFP8Go(q, y, x, s)
	return s
}

// quantizeFP8Go writes the codes of x/s to q and, when y is not nil, the
// dequantized values to y.
func quantizeFP8Go(q []byte, y, x []float32, s float32) {
	q = q[:len(x)]
	for i, v := range x {
		v /= s
		// F32ToF8E4M3 saturates, which is clamp(v, ±448) followed by the cast.
		q[i] = st.F32ToF8E4M3(v)
	}
	if y != nil {
		y = y[:len(x)]
		for i, c := range q {
			y[i] = st.F8E4M3ToF32(c) * s
		}
	}
}

// roundEven rounds v, |v| ≤ 2^22, to the nearest integer, ties to even: adding
// and subtracting 1.5·2^23 leaves no fraction bits, and float32 addition
// rounds to nearest even.
func roundEven(v float32) float32 {
	const magic = 12582912 // 1.5·2^23
	return (v + magic) - magic
}

// QuantizeIntRow quantizes one row symmetrically to bits (4 or 8) in groups
// of group elements (group = len(x) for one scale per channel), and packs
// the codes as compressed-tensors pack_to_int32 does (quantized/
// pack_quantized.py, checked against the stored source): each value is
// offset by 2^(bits−1) to make it unsigned (int4: q+8 in 0..15, int8: q+128
// in 0..255), and 32/bits consecutive values along the row share one
// 32-bit word, the first in the lowest bits. len(x) must be a multiple of
// group and of 32/bits.
//
// Scales are rounded to scaleType (the dtype they will be stored in) before
// use and written to scales (len(x)/group of them). packed receives
// len(x)·bits/32 words; y, when not nil, the dequantized values q·scale.
// NaN inputs quantize to 0 and ±Inf saturate. At the AVX2 level it runs
// vector code (see quantizeIntRow), bit for bit the same as
// quantizeIntRowGo.
func QuantizeIntRow(packed []uint32, scales []float32, y, x []float32, bits, group int, scaleType st.DType) {
	quantizeIntRow(packed, scales, y, x, bits, group, scaleType)
}

// intScale is the scale of a group whose largest finite magnitude is m.
func intScale(m float32, bits int, scaleType st.DType) float32 {
	qmax := float32(int(1)<<(bits-1) - 1)
	half := (qmax - (-qmax - 1)) / 2
	return roundScale(m/half, scaleType)
}

// quantizeIntRowGo is QuantizeIntRow in portable Go: the reference the
// vector code is tested against, and its fallback.
func quantizeIntRowGo(packed []uint32, scales []float32, y, x []float32, bits, group int, scaleType st.DType) {
	qmax := float32(int(1)<<(bits-1) - 1) // 7 or 127
	qmin := -qmax - 1                     // -8 or -128
	half := (qmax - qmin) / 2             // 7.5 or 127.5
	offset := uint32(1) << (bits - 1)
	perWord := 32 / bits
	mask := uint32(1)<<bits - 1
	// Shifts instead of division by perWord: bits is 4 or 8.
	wordShift, bitShift := uint(2), uint(3)
	if bits == 4 {
		wordShift, bitShift = 3, 2
	}
	ng := len(x) / group
	packed = packed[:len(x)/perWord]
	for i := range packed {
		packed[i] = 0
	}
	for g := 0; g < ng; g++ {
		xs := x[g*group : (g+1)*group]
		s := roundScale(absMax(xs)/half, scaleType)
		scales[g] = s
		base := g * group
		for i, v := range xs {
			v /= s
			if v > qmax {
				v = qmax
			} else if v < qmin {
				v = qmin
			} else if v != v {
				v = 0
			}
			qi := int32(roundEven(v))
			e := base + i
			packed[e>>wordShift] |= (uint32(qi) + offset) & mask << (uint(e&(perWord-1)) << bitShift)
			if y != nil {
				y[e] = float32(qi) * s
			}
		}
	}
}

// UnpackInt reverses the packing of QuantizeIntRow: it writes the signed
// codes of len(dst) values from packed.
func UnpackInt(dst []int8, packed []uint32, bits int) {
	perWord := 32 / bits
	mask := uint32(1)<<bits - 1
	offset := int32(1) << (bits - 1)
	for e := range dst {
		u := packed[e/perWord] >> (uint(e%perWord) * uint(bits)) & mask
		dst[e] = int8(int32(u) - offset)
	}
}

// addStats accumulates x against its reconstruction y into s exactly as
// quality.Stats.Add defines the sums, with two independent float64
// accumulators and no data-dependent branches so that it keeps up with the
// kernels. The summation order is fixed, so results are deterministic.
func addStats(s *quality.Stats, x, y []float32) {
	var a statAcc
	a.add(x, y)
	a.merge(s, len(x))
}

// statAcc holds the accumulators of addStats: for each sum the even (index
// 0) and odd (index 1) elements' partial sums, then the largest |x−y|. The
// assembly kernels read and write it at these offsets: xx at 0, yy at 16,
// xy at 32, ee at 48, mx at 64.
type statAcc struct {
	xx, yy, xy, ee [2]float64
	mx             float64
}

// add continues the sums over x and y. Elements pair up from x[0], so
// splitting a row for add calls keeps the order of one call only at even
// lengths. The explicit float64 conversions keep the compiler from fusing a
// product and a sum into one FMA, whose single rounding the vector code
// does not reproduce.
func (a *statAcc) add(x, y []float32) {
	y = y[:len(x)]
	xx0, yy0, xy0, ee0 := a.xx[0], a.yy[0], a.xy[0], a.ee[0]
	xx1, yy1, xy1, ee1 := a.xx[1], a.yy[1], a.xy[1], a.ee[1]
	mx0, mx1 := a.mx, 0.0
	i := 0
	for ; i+1 < len(x); i += 2 {
		a0, b0 := float64(x[i]), float64(y[i])
		a1, b1 := float64(x[i+1]), float64(y[i+1])
		e0, e1 := a0-b0, a1-b1
		xx0 += float64(a0 * a0)
		xx1 += float64(a1 * a1)
		yy0 += float64(b0 * b0)
		yy1 += float64(b1 * b1)
		xy0 += float64(a0 * b0)
		xy1 += float64(a1 * b1)
		ee0 += float64(e0 * e0)
		ee1 += float64(e1 * e1)
		mx0 = max(mx0, math.Abs(e0))
		mx1 = max(mx1, math.Abs(e1))
	}
	if i < len(x) {
		a0, b0 := float64(x[i]), float64(y[i])
		e0 := a0 - b0
		xx0 += float64(a0 * a0)
		yy0 += float64(b0 * b0)
		xy0 += float64(a0 * b0)
		ee0 += float64(e0 * e0)
		mx0 = max(mx0, math.Abs(e0))
	}
	*a = statAcc{xx: [2]float64{xx0, xx1}, yy: [2]float64{yy0, yy1}, xy: [2]float64{xy0, xy1}, ee: [2]float64{ee0, ee1}, mx: max(mx0, mx1)}
}

// merge adds the sums of n elements to s.
func (a *statAcc) merge(s *quality.Stats, n int) {
	s.Merge(quality.Stats{N: int64(n), SumXX: a.xx[0] + a.xx[1], SumYY: a.yy[0] + a.yy[1], SumXY: a.xy[0] + a.xy[1], SumEE: a.ee[0] + a.ee[1], MaxAbs: a.mx})
}
