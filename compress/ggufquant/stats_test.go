package ggufquant

import (
	"math"
	"testing"
)

// TestErrorSumsMatchGo checks that the assembly errorSums gives exactly the
// sums of the portable loop, including with NaN, ±Inf and ±0.
func TestErrorSumsMatchGo(t *testing.T) {
	s := uint64(88172645463325252)
	next := func() float32 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return float32(s>>40)/float32(1<<24) - 0.5
	}
	for _, n := range []int{4, 8, 64, 1000, 1 << 16} {
		x := make([]float32, n)
		y := make([]float32, n)
		for i := range x {
			x[i] = next() * float32(i%13+1)
			y[i] = x[i] + next()*1e-2
		}
		if n >= 64 {
			x[7] = float32(math.NaN())
			y[9] = float32(math.Inf(1))
			x[10], y[10] = float32(math.Copysign(0, -1)), 0
			y[33] = float32(math.NaN())
			x[40], y[40] = 3e38, -3e38
		}
		var a, b statSums
		a.mx, b.mx = 0.125, 0.125
		errorSums(&x[0], &y[0], n, &a)
		errorSumsGo(&x[0], &y[0], n, &b)
		same := math.Float64bits(a.mx) == math.Float64bits(b.mx)
		for k := 0; k < 4; k++ {
			for _, p := range [][2]float64{{a.xx[k], b.xx[k]}, {a.yy[k], b.yy[k]}, {a.xy[k], b.xy[k]}, {a.ee[k], b.ee[k]}} {
				if math.Float64bits(p[0]) != math.Float64bits(p[1]) && !(math.IsNaN(p[0]) && math.IsNaN(p[1])) {
					same = false
				}
			}
		}
		if !same {
			t.Errorf("n=%d: errorSums %+v, portable %+v", n, a, b)
		}
	}
}

func TestFirstNonFiniteEveryPosition(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		for n := 0; n < 70; n++ {
			for p := -1; p < n; p++ {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(i) - 3e38*float32(i%2)
				}
				if p >= 0 {
					x[p] = bad
					if p+5 < n {
						x[p+5] = bad
					}
				}
				if got := firstNonFinite(x); got != p {
					t.Fatalf("n=%d, %v at %d: firstNonFinite = %d", n, bad, p, got)
				}
			}
		}
	}
}
