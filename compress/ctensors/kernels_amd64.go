//go:build !purego

package ctensors

import (
	"unsafe"

	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// The AVX2 kernels work on rows whose groups (a row, for one scale per
// channel) are a multiple of 8 elements long and hold no NaN or ±Inf; any
// other row goes to the Go code, which also finds and reports the first
// non-finite value. On finite rows they do the same float32 and float64
// operations as the Go code in the same order: VDIVPS for x/s, the 1.5·2^23
// round-to-even, the E4M3 rounding with integer operations, and the
// statistics in two float64 lanes (even and odd elements) with no
// reassociation and no FMA. Only max|x| and max|x−y| are taken in another
// order, which cannot change a maximum of finite values.

// Modes of decodeAVX2: the element type of src.
const (
	decBF16 = iota
	decF16
	decF32
	decScan // F32 without a store: dst is not used
)

// decMode is the decodeAVX2 mode for an input type, or -1.
func decMode(dt st.DType) int {
	switch dt {
	case st.BF16:
		return decBF16
	case st.F16:
		return decF16
	case st.F32:
		return decF32
	}
	return -1
}

// rowVec is row at the AVX2 level; done is false when the row is for the
// Go code (another level, dtype or layout, or a NaN or ±Inf in the row).
func (k *rowKernel) rowVec(out []byte, scales []float32, b *rowBuf, src []byte, stats *quality.Stats) (done bool, bad int, err error) {
	n := len(b.x)
	mode := decMode(k.dt)
	if simd.Current() < simd.AVX2 || mode < 0 || n == 0 || k.group <= 0 || k.group%8 != 0 || n%k.group != 0 ||
		int64(len(src)) < int64(n)*k.dt.Size() {
		return false, -1, nil
	}
	ng := n / k.group
	_, _ = scales[ng-1], b.y[n-1]
	if !decodeAVX2(&b.x[0], &src[0], n, k.group, &scales[0], mode) {
		return false, -1, nil
	}
	var acc statAcc
	if k.fp8 {
		_ = out[n-1]
		s := scales[0] / FP8Max
		if s == 0 {
			s = scaleEps(st.F32)
		}
		scales[0] = s
		quantFP8AVX2(&out[0], &b.y[0], 32, &b.x[0], n, s, &acc)
	} else {
		_ = out[n*k.bits/8-1]
		for g := range scales[:ng] {
			scales[g] = intScale(scales[g], k.bits, k.scaleType)
		}
		if k.bits == 8 {
			quantInt8AVX2(&out[0], &b.y[0], 32, &b.x[0], n, k.group, &scales[0], &acc)
		} else {
			quantInt4AVX2(&out[0], &b.y[0], 32, &b.x[0], n, k.group, &scales[0], &acc)
		}
	}
	if !acc.finite() {
		return false, -1, nil
	}
	acc.merge(stats, n)
	return true, -1, nil
}

// finite reports whether the sums and the maximum are finite. The inputs
// of the vector kernels are, so a non-finite one comes from a dequantized
// value that overflowed (a scale rounded up to Inf in F16, or 128·scale
// beyond MaxFloat32): yy is non-finite exactly when some y is. Those rows
// go to the Go code, whose max and NaN handling the vector code does not
// reproduce.
func (a *statAcc) finite() bool {
	return finite64(a.xx[0], a.xx[1], a.yy[0], a.yy[1], a.xy[0], a.xy[1], a.ee[0], a.ee[1], a.mx)
}

func finite64(v ...float64) bool {
	for _, x := range v {
		if !(x-x == 0) {
			return false
		}
	}
	return true
}

// yOut returns where the kernels write y: y itself, or a scratch vector
// rewritten in place when y is nil.
func yOut(y []float32, n int, scratch *[8]float32) (*float32, int) {
	if y == nil {
		return &scratch[0], 0
	}
	_ = y[n-1]
	return &y[0], 32
}

// quantizeFP8Row is quantizeFP8RowGo, in AVX2 at that level and above for
// the leading multiple of 8 elements of a row with no NaN or ±Inf.
func quantizeFP8Row(q []byte, y, x []float32) float32 {
	n := len(x) &^ 7
	if simd.Current() < simd.AVX2 || n == 0 {
		return quantizeFP8RowGo(q, y, x)
	}
	tail := x[n:]
	var m float32
	if !decodeAVX2(nil, (*byte)(unsafe.Pointer(&x[0])), n, n, &m, decScan) {
		return quantizeFP8RowGo(q, y, x)
	}
	m = max(m, absMax(tail)) // the tail is quantized in Go, NaN and ±Inf included
	s := m / FP8Max
	if s == 0 {
		s = scaleEps(st.F32)
	}
	_ = q[len(x)-1]
	var scratch [8]float32
	yp, yinc := yOut(y, len(x), &scratch)
	var acc statAcc
	quantFP8AVX2(&q[0], yp, yinc, &x[0], n, s, &acc)
	if !acc.finite() {
		return quantizeFP8RowGo(q, y, x)
	}
	var yt []float32
	if y != nil {
		yt = y[n:]
	}
	quantizeFP8Go(q[n:len(x)], yt, tail, s)
	return s
}

// quantizeIntRow is quantizeIntRowGo, in AVX2 at that level and above for
// groups of a multiple of 8 elements with no NaN or ±Inf.
func quantizeIntRow(packed []uint32, scales []float32, y, x []float32, bits, group int, scaleType st.DType) {
	n := len(x)
	if simd.Current() < simd.AVX2 || n == 0 || group <= 0 || group%8 != 0 || n%group != 0 {
		quantizeIntRowGo(packed, scales, y, x, bits, group, scaleType)
		return
	}
	ng := n / group
	_, _ = scales[ng-1], packed[n*bits/32-1]
	if !decodeAVX2(nil, (*byte)(unsafe.Pointer(&x[0])), n, group, &scales[0], decScan) {
		quantizeIntRowGo(packed, scales, y, x, bits, group, scaleType)
		return
	}
	for g := range scales[:ng] {
		scales[g] = intScale(scales[g], bits, scaleType)
	}
	var scratch [8]float32
	yp, yinc := yOut(y, n, &scratch)
	var acc statAcc
	out := (*byte)(unsafe.Pointer(&packed[0])) // little-endian words
	if bits == 8 {
		quantInt8AVX2(out, yp, yinc, &x[0], n, group, &scales[0], &acc)
	} else {
		quantInt4AVX2(out, yp, yinc, &x[0], n, group, &scales[0], &acc)
	}
	if !acc.finite() {
		quantizeIntRowGo(packed, scales, y, x, bits, group, scaleType)
	}
}

// decodeAVX2 converts n elements of src (BF16, F16 or F32 by mode) to
// float32 in dst, writes max|x| of each run of group elements to gmax, and
// reports whether all n are finite (when not, the maxima mean nothing).
// n is a multiple of group, group of 8.
//
//go:noescape
func decodeAVX2(dst *float32, src *byte, n, group int, gmax *float32, mode int) bool

// quantFP8AVX2 writes the FP8 codes of x[:n]/s to q and the dequantized
// values to y (advancing y by yinc bytes per 8 values), and continues the
// statistics in acc. n is a multiple of 8 and x is finite.
//
//go:noescape
func quantFP8AVX2(q *byte, y *float32, yinc int, x *float32, n int, s float32, acc *statAcc)

// quantInt8AVX2 and quantInt4AVX2 are quantFP8AVX2 for the integer
// schemes, with scales[g] for the g-th run of group elements; they write
// the packed words to out in little-endian order.
//
//go:noescape
func quantInt8AVX2(out *byte, y *float32, yinc int, x *float32, n, group int, scales *float32, acc *statAcc)

//go:noescape
func quantInt4AVX2(out *byte, y *float32, yinc int, x *float32, n, group int, scales *float32, acc *statAcc)
