package ggufquant

import (
	"math"
	"unsafe"

	"github.com/gantry-dev/gantry/compress/quality"
)

// errorStats computes the same sums as quality.Stats.Add, in float64, with
// four independent accumulators per sum so that the loop is not bound by
// the latency of one addition chain (it runs on every quantized value).
// The result differs from Add only in float64 rounding and is deterministic
// for a given input, so reports stay independent of the thread count.
func errorStats(x, y []float32) quality.Stats {
	var a statSums
	a.add(x, y)
	return a.stats(int64(len(x)))
}

// add adds the pairs of x and y to the sums: element i of each group of
// four to lane i, any last one to three elements to lane 0. Calling it on
// consecutive pieces of a run whose lengths are multiples of four (all but
// the last) gives the very sums of one call on the whole run.
func (a *statSums) add(x, y []float32) {
	y = y[:len(x)]
	n := len(x) &^ 3
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

// addPair is a.add(x, y) and b.add(u, v) with the common whole groups of
// four in one errorSums2 loop, the rest of each added alone: since the
// split falls on a multiple of four, the sums are those of the two adds.
func addPair(a *statSums, x, y []float32, b *statSums, u, v []float32) {
	y, v = y[:len(x)], v[:len(u)]
	m := min(len(x), len(u)) &^ 3
	if m > 0 {
		errorSums2(&x[0], &y[0], &u[0], &v[0], m, a, b)
	}
	a.add(x[m:], y[m:])
	b.add(u[m:], v[m:])
}

// stats folds the lanes of the sums of n values.
func (a *statSums) stats(n int64) quality.Stats {
	xx, yy, xy, ee := a.xx, a.yy, a.xy, a.ee
	return quality.Stats{
		N:      n,
		SumXX:  (xx[0] + xx[1]) + (xx[2] + xx[3]),
		SumYY:  (yy[0] + yy[1]) + (yy[2] + yy[3]),
		SumXY:  (xy[0] + xy[1]) + (xy[2] + xy[3]),
		SumEE:  (ee[0] + ee[1]) + (ee[2] + ee[3]),
		MaxAbs: a.mx,
	}
}

// statSums are errorStats' accumulators: element i goes to lane i%4 of each
// sum. The assembly depends on this layout.
type statSums struct {
	xx, yy, xy, ee [4]float64
	mx             float64
}

// errorSumsGo is the portable errorSums: it adds the first n (a multiple
// of 4) pairs of x and y to a, lane by lane. e·e is rounded before it is
// added, as in the assembly: float64(e*e) forbids the compiler to fuse the
// two (it may, for GOAMD64=v3); for xx, yy and xy a fused add would be the
// same bits anyway, a product of two float32 values being exact in float64.
func errorSumsGo(px, py *float32, n int, acc *statSums) {
	x := unsafe.Slice(px, n)
	y := unsafe.Slice(py, n)
	xx, yy, xy, ee, mx := acc.xx, acc.yy, acc.xy, acc.ee, acc.mx
	for i := 0; i < n; i += 4 {
		x4 := (*[4]float32)(x[i : i+4])
		y4 := (*[4]float32)(y[i : i+4])
		for k := 0; k < 4; k++ {
			a, b := float64(x4[k]), float64(y4[k])
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
