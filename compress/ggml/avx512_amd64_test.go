//go:build !purego

package ggml

import (
	"math"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// TestWideKernelsStop checks where the sixteen-block AVX-512 kernels stop:
// they take every clean group (an all-zero block among them), stop before
// the group holding a NaN, ±Inf or a subnormal scale, and leave a last
// group of fewer than sixteen blocks. Their output is checked against the
// Go code by TestQ8_0EveryLevel and TestLegacyEveryLevel; this pins the
// hand-off, which the output alone does not show.
func TestWideKernelsStop(t *testing.T) {
	if simd.Detected() < simd.AVX512 {
		t.Skip("no AVX-512 here")
	}
	kernels := []struct {
		name   string
		size   int
		minned bool // a zero min stops the kernel: no all-zero block in the clean groups
		run    func(dst []byte, src []float32, nb int) int
	}{
		{"q8_0", 34, false, func(dst []byte, src []float32, nb int) int { return quantizeQ8_0AVX512(&dst[0], &src[0], nb, false) }},
		{"q8_0 vbmi", 34, false, func(dst []byte, src []float32, nb int) int {
			if simd.Detected() < simd.AVX512VBMI {
				return quantizeQ8_0AVX512(&dst[0], &src[0], nb, false)
			}
			return quantizeQ8_0AVX512(&dst[0], &src[0], nb, true)
		}},
		{"q4_0", 18, false, func(dst []byte, src []float32, nb int) int {
			return quantizeQx0AVX512(&dst[0], &src[0], nb, &q4_0Params)
		}},
		{"q5_0", 22, false, func(dst []byte, src []float32, nb int) int {
			return quantizeQx0AVX512(&dst[0], &src[0], nb, &q5_0Params)
		}},
		{"q4_1", 20, true, func(dst []byte, src []float32, nb int) int {
			return quantizeQx1AVX512(&dst[0], &src[0], nb, &q4_1Params)
		}},
		{"q5_1", 24, true, func(dst []byte, src []float32, nb int) int {
			return quantizeQx1AVX512(&dst[0], &src[0], nb, &q5_1Params)
		}},
	}
	const nb = 16*4 + 5
	for _, k := range kernels {
		for _, tc := range []struct {
			name  string
			block int // the block made special, or −1
			v     float32
			want  int
		}{
			{"clean", -1, 0, 64},
			{"nan", 37, float32(math.NaN()), 32},
			{"inf", 16, float32(math.Inf(-1)), 16},
			{"subnormal scale", 63, 1e-39, 48},
			{"last group", 66, float32(math.NaN()), 64},
			{"zero", 20, 0, 64},
		} {
			x := testValues(nb*QK, 9)
			want := tc.want
			if k.minned {
				for j := 0; j < QK; j++ {
					x[3*QK+j] = float32(j) - 40 // a clean block in place of the all-zero one
				}
				if tc.name == "zero" {
					want = 16 // a zero min
				}
			} else {
				for j := 0; j < QK; j++ {
					x[3*QK+j] = 0 // an all-zero block: d = 0, id = 0
				}
			}
			if tc.block >= 0 {
				if tc.name == "subnormal scale" {
					for j := 0; j < QK; j++ {
						x[tc.block*QK+j] = tc.v * float32(j%3)
					}
				} else {
					x[tc.block*QK+11] = tc.v
				}
			}
			if tc.name == "zero" {
				for j := 0; j < QK; j++ {
					x[tc.block*QK+j] = float32(j % 4) // min 0 (and d ≠ 0)
				}
			}
			dst := make([]byte, nb*k.size)
			if got := k.run(dst, x, nb); got != want {
				t.Errorf("%s %s: %d blocks done, want %d", k.name, tc.name, got, want)
			}
		}
	}
}
