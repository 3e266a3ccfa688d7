package ctensors

import (
	"encoding/binary"
	"math"

	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// rowKernel is the per-row path of Convert for one tensor: decode a row of
// the input, check it is finite, quantize it, dequantize it and add the
// error statistics. Its Go version, rowGo, is the reference; at the AVX2
// level row runs vector kernels that give the same bytes and sums.
type rowKernel struct {
	dt        st.DType // input element type
	fp8       bool
	bits      int // 4 or 8 for the integer schemes
	group     int // elements per scale; the row length for one per channel
	scaleType st.DType
	allow     bool // AllowNonFinite
}

// rowBuf holds a worker's buffers for rowKernel.row, all len(x) = cols long
// except packed (cols·bits/32 words, integer schemes only).
type rowBuf struct {
	x, y   []float32
	packed []uint32
}

// row decodes src (one row of len(b.x) elements of k.dt) into b.x. It
// returns the index of the first NaN or ±Inf in it, or -1; when there is
// one and non-finite values are not allowed it stops there. Otherwise it
// writes the row's output bytes to out (FP8 codes, or the packed 32-bit
// words in little-endian order), its scales to scales, the dequantized
// values to b.y, and adds the statistics of the finite elements to stats.
func (k *rowKernel) row(out []byte, scales []float32, b *rowBuf, src []byte, stats *quality.Stats) (bad int, err error) {
	if done, bad, err := k.rowVec(out, scales, b, src, stats); done {
		return bad, err
	}
	return k.rowGo(out, scales, b, src, stats)
}

// rowGo is row in portable Go.
func (k *rowKernel) rowGo(out []byte, scales []float32, b *rowBuf, src []byte, stats *quality.Stats) (int, error) {
	x, y := b.x, b.y
	if err := st.DecodeFloat32(x, src, k.dt); err != nil {
		return -1, err
	}
	bad := -1
	for i, v := range x {
		if !(math.Abs(float64(v)) <= math.MaxFloat32) {
			bad = i
			break
		}
	}
	if bad >= 0 && !k.allow {
		return bad, nil
	}
	if k.fp8 {
		scales[0] = quantizeFP8RowGo(out[:len(x)], y, x)
	} else {
		quantizeIntRowGo(b.packed, scales, y, x, k.bits, k.group, k.scaleType)
		for i, p := range b.packed {
			binary.LittleEndian.PutUint32(out[4*i:], p)
		}
	}
	if bad >= 0 {
		addFinite(stats, x, y)
	} else {
		addStats(stats, x, y)
	}
	return bad, nil
}
