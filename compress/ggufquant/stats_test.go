package ggufquant

import (
	"fmt"
	"math"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// eachLevel runs f once per simd level this CPU supports.
func eachLevel(t *testing.T, f func(t *testing.T)) {
	for _, l := range simd.Supported() {
		t.Run(l.String(), func(t *testing.T) {
			defer simd.Set(l)()
			f(t)
		})
	}
}

// TestErrorSumsMatchGo checks that errorSums at every simd level gives
// exactly the sums of the portable loop, including with NaN, ±Inf and ±0.
func TestErrorSumsMatchGo(t *testing.T) { eachLevel(t, testErrorSumsMatchGo) }

func testErrorSumsMatchGo(t *testing.T) {
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
	// The largest error in each lane in turn, and a NaN in each lane of
	// the last group (a NaN keeps the maximum so far, wherever it falls).
	for lane := 0; lane < 8; lane++ {
		x := make([]float32, 64)
		y := make([]float32, len(x))
		for i := range x {
			x[i] = next()
			y[i] = x[i] + next()*1e-3
		}
		x[16+lane] = 1e30
		y[len(y)-4+lane%4] = float32(math.NaN())
		var a, b statSums
		errorSums(&x[0], &y[0], len(x), &a)
		errorSumsGo(&x[0], &y[0], len(x), &b)
		if want := float64(x[16+lane]) - float64(y[16+lane]); a.mx != b.mx || b.mx != want {
			t.Errorf("largest error in lane %d: mx %v, portable %v", lane, a.mx, b.mx)
		}
	}
}

func TestFirstNonFiniteEveryPosition(t *testing.T) { eachLevel(t, testFirstNonFiniteEveryPosition) }

func testFirstNonFiniteEveryPosition(t *testing.T) {
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

// TestErrorSumsInTiles checks that adding a run tile by tile, with tiles of
// multiples of four and any length last, gives the bits of one add over
// the whole run, at every level: the pipeline's report must not depend on
// its tiling.
func TestErrorSumsInTiles(t *testing.T) {
	x := make([]float32, 3*tileValues+13)
	y := make([]float32, len(x))
	for i := range x {
		x[i] = float32(math.Sin(float64(i))) * float32(1+i%5)
		y[i] = x[i] + float32(i%7-3)*1e-3
	}
	var want statSums
	defer simd.Set(simd.Scalar)()
	want.add(x, y)
	ws := want.stats(int64(len(x)))
	for _, l := range simd.Supported() {
		simd.Set(l)
		for _, tile := range []int{4, 8, 100, tileValues} {
			var a statSums
			for i := 0; i < len(x); i += tile {
				a.add(x[i:min(i+tile, len(x))], y[i:min(i+tile, len(x))])
			}
			if got := a.stats(int64(len(x))); fmt.Sprint(got) != fmt.Sprint(ws) || got != ws {
				t.Errorf("%v, tiles of %d: %+v, want %+v", l, tile, got, ws)
			}
		}
	}
}

// TestAddPairMatchesAdds checks that addPair gives, at every level, the
// bits of two adds: runs of equal and unequal lengths (so that one run's
// rest is added alone), with NaN, ±Inf and the largest error in either.
func TestAddPairMatchesAdds(t *testing.T) { eachLevel(t, testAddPairMatchesAdds) }

func testAddPairMatchesAdds(t *testing.T) {
	s := uint64(0x9e3779b97f4a7c15)
	next := func() float32 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return float32(s>>40)/float32(1<<24) - 0.5
	}
	run := func(n int) ([]float32, []float32) {
		x := make([]float32, n)
		y := make([]float32, n)
		for i := range x {
			x[i] = next() * float32(i%11+1)
			y[i] = x[i] + next()*1e-2
		}
		return x, y
	}
	lengths := [][2]int{{0, 0}, {4, 4}, {3, 9}, {64, 64}, {4096, 4096}, {4096, 1000}, {1001, 4096}, {13, 0}, {0, 12}}
	for c, ln := range lengths {
		x, y := run(ln[0])
		u, v := run(ln[1])
		if len(x) >= 64 && len(u) >= 64 {
			x[5+c%4] = 1e30 // the largest error of the first run
			v[40+c%4] = float32(math.NaN())
			u[9] = float32(math.Inf(-1))
			y[33] = float32(math.NaN())
		}
		var a, b, wa, wb statSums
		a.mx, wa.mx = 0.25, 0.25
		addPair(&a, x, y, &b, u, v)
		wa.add(x, y)
		wb.add(u, v)
		for _, p := range [][2]statSums{{a, wa}, {b, wb}} {
			if !sameSums(p[0], p[1]) {
				t.Errorf("lengths %v: addPair %+v, add %+v", ln, p[0], p[1])
			}
		}
	}
}

// sameSums reports whether a and b hold the same bits (any NaN matching
// any NaN).
func sameSums(a, b statSums) bool {
	eq := func(p, q float64) bool {
		return math.Float64bits(p) == math.Float64bits(q) || math.IsNaN(p) && math.IsNaN(q)
	}
	if !eq(a.mx, b.mx) {
		return false
	}
	for k := 0; k < 4; k++ {
		if !eq(a.xx[k], b.xx[k]) || !eq(a.yy[k], b.yy[k]) || !eq(a.xy[k], b.xy[k]) || !eq(a.ee[k], b.ee[k]) {
			return false
		}
	}
	return true
}

// BenchmarkErrorSums adds one tile of 4096 pairs to the sums, as the
// pipeline does after each tile, at every level; Mparams/s is pairs.
func BenchmarkErrorSums(b *testing.B) {
	x := make([]float32, tileValues)
	y := make([]float32, tileValues)
	for i := range x {
		x[i] = float32(i%97) * 0.01
		y[i] = x[i] + float32(i%13)*1e-4
	}
	for _, l := range simd.Supported() {
		b.Run(l.String(), func(b *testing.B) {
			defer simd.Set(l)()
			var a statSums
			b.SetBytes(8 * tileValues)
			for i := 0; i < b.N; i++ {
				a.add(x, y)
			}
			b.ReportMetric(float64(tileValues)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
		})
		b.Run(l.String()+"/pair", func(b *testing.B) {
			defer simd.Set(l)()
			var a1, a2 statSums
			b.SetBytes(16 * tileValues)
			for i := 0; i < b.N; i++ {
				addPair(&a1, x, y, &a2, y, x)
			}
			b.ReportMetric(2*float64(tileValues)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
		})
	}
}
