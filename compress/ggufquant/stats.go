package ggufquant

import (
	"math"

	"github.com/gantry-dev/gantry/compress/quality"
)

// errorStats computes the same sums as quality.Stats.Add, in float64, with
// four independent accumulators per sum so that the loop is not bound by
// the latency of one addition chain (it runs on every quantized value).
// The result differs from Add only in float64 rounding and is deterministic
// for a given input, so reports stay independent of the thread count.
func errorStats(x, y []float32) quality.Stats {
	y = y[:len(x)]
	var xx, yy, xy, ee [4]float64
	var mx float64
	n := len(x) &^ 3
	for i := 0; i < n; i += 4 {
		x4 := (*[4]float32)(x[i : i+4])
		y4 := (*[4]float32)(y[i : i+4])
		for k := 0; k < 4; k++ {
			a, b := float64(x4[k]), float64(y4[k])
			e := a - b
			xx[k] += a * a
			yy[k] += b * b
			xy[k] += a * b
			ee[k] += e * e
			if ae := math.Abs(e); ae > mx {
				mx = ae
			}
		}
	}
	for i := n; i < len(x); i++ {
		a, b := float64(x[i]), float64(y[i])
		e := a - b
		xx[0] += a * a
		yy[0] += b * b
		xy[0] += a * b
		ee[0] += e * e
		if ae := math.Abs(e); ae > mx {
			mx = ae
		}
	}
	return quality.Stats{
		N:      int64(len(x)),
		SumXX:  (xx[0] + xx[1]) + (xx[2] + xx[3]),
		SumYY:  (yy[0] + yy[1]) + (yy[2] + yy[3]),
		SumXY:  (xy[0] + xy[1]) + (xy[2] + xy[3]),
		SumEE:  (ee[0] + ee[1]) + (ee[2] + ee[3]),
		MaxAbs: mx,
	}
}

// firstNonFinite returns the index of the first NaN or ±Inf in x, or −1.
// v−v is NaN exactly for NaN and ±Inf, and 0 otherwise.
func firstNonFinite(x []float32) int {
	for i, v := range x {
		if v-v != 0 {
			return i
		}
	}
	return -1
}
