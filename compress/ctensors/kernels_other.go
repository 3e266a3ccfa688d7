//go:build !amd64 || purego

package ctensors

import (
	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

func (k *rowKernel) rowVec(out []byte, scales []float32, b *rowBuf, src []byte, stats *quality.Stats) (done bool, bad int, err error) {
	return false, -1, nil
}

func quantizeFP8Row(q []byte, y, x []float32) float32 { return quantizeFP8RowGo(q, y, x) }

func quantizeIntRow(packed []uint32, scales []float32, y, x []float32, bits, group int, scaleType st.DType) {
	quantizeIntRowGo(packed, scales, y, x, bits, group, scaleType)
}
