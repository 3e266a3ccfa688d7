package ggufquant

import (
	"math"
	"unsafe"

	"github.com/gantry-dev/gantry/compress/quality"
)

// errorStats computes the same sums as quality.Stats.Add, in float64, with
// eight independent accumulators per sum so that the loop is not bound by
// the latency of an addition chain (it runs on every quantized value).
// The result differs from Add only in float64 rounding and is deterministic
// for a given input, so reports stay independent of the thread count.
func errorStats(x, y []float32) quality.Stats {
	var a statSums
	a.add(x, y)
	return a.stats(int64(len(x)))
}

// add adds the pairs of x and y to the sums: element i of each group of
// eight to lane i, any last one to seven elements to lane 0. Calling it on
// consecutive pieces of a run whose lengths are multiples of eight (all but
// the last) gives the very sums of one call on the whole run.
func (a *statSums) add(x, y []float32) {
	y = y[:len(x)]
	n := len(x) &^ (statLanes - 1)
	if n > 0 {
		errorSums(&x[0], &y[0], n, a)
	}
	for i := n; i < len(x); i++ {
		p, q := float64(x[i]), float64(y[i])
		e := p - q
		a.xx[0] += p * p
		a.yy[0] += q * q
		a.xy[0] += p * q
		a.ee[0] += float64(e * e) // the conversion forbids fusing
		if ae := math.Abs(e); ae > a.mx {
			a.mx = ae
		}
	}
}

// stats folds the lanes of the sums of n values.
func (a *statSums) stats(n int64) quality.Stats {
	return quality.Stats{
		N:      n,
		SumXX:  fold(&a.xx),
		SumYY:  fold(&a.yy),
		SumXY:  fold(&a.xy),
		SumEE:  fold(&a.ee),
		MaxAbs: a.mx,
	}
}

// fold adds the lanes of one sum pairwise.
func fold(l *[statLanes]float64) float64 {
	return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

// statLanes is the number of lanes of each sum: eight, two YMM registers of
// float64, so that each lane's addition chain advances once per eight
// elements and the loop is bound by the FP pipes, not by the 4-cycle
// latency of one chain (about 1.4× the pairs/s of four lanes).
const statLanes = 8

// statSums are errorStats' accumulators: element i goes to lane i%8 of each
// sum. The assembly depends on this layout.
type statSums struct {
	xx, yy, xy, ee [statLanes]float64
	mx             float64
}

// errorSumsGo is the portable errorSums: it adds the first n (a multiple
// of 8) pairs of x and y to a, lane by lane. The products are rounded
// before they are added (float64(e*e): a compiler may not fuse them), as
// in the assembly; for xx, yy and xy a fused add is the same bits anyway,
// a product of two float32 values being exact in float64.
func errorSumsGo(px, py *float32, n int, acc *statSums) {
	x := unsafe.Slice(px, n)
	y := unsafe.Slice(py, n)
	xx, yy, xy, ee, mx := acc.xx, acc.yy, acc.xy, acc.ee, acc.mx
	for i := 0; i < n; i += statLanes {
		x8 := (*[statLanes]float32)(x[i : i+statLanes])
		y8 := (*[statLanes]float32)(y[i : i+statLanes])
		for k := 0; k < statLanes; k++ {
			a, b := float64(x8[k]), float64(y8[k])
			e := a - b
			xx[k] += a * a
			yy[k] += b * b
			xy[k] += a * b
			ee[k] += float64(e * e)
			if ae := math.Abs(e); ae > mx {
				mx = ae
			}
		}
	}
	acc.xx, acc.yy, acc.xy, acc.ee, acc.mx = xx, yy, xy, ee, mx
}

// firstNonFinite returns the index of the first NaN or ±Inf in x, or −1.
// v−v is NaN exactly for NaN and ±Inf, and 0 otherwise.
func firstNonFinite(x []float32) int {
	i := finitePrefix(x) // whole groups known finite
	for ; i < len(x); i++ {
		if v := x[i]; v-v != 0 {
			return i
		}
	}
	return -1
}
