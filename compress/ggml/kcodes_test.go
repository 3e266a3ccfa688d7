package ggml

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// TestKDequantEveryLevel checks Dequantize of Q4_K, Q5_K and Q6_K at
// every level against the Go reference, bit for bit: on blocks the
// quantizers wrote and on random bytes, whose fp16 scales include NaN,
// ±Inf, subnormals and ±0, and whose codes take every value.
func TestKDequantEveryLevel(t *testing.T) {
	types := []struct {
		typ   Type
		quant func([]byte, []float32)
		ref   func([]float32, []byte)
	}{
		{Q4_K, quantizeQ4K, dequantizeQ4KGo},
		{Q5_K, quantizeQ5K, dequantizeQ5KGo},
		{Q6_K, quantizeQ6K, dequantizeQ6KGo},
	}
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, kt := range types {
			for seed := uint64(1); seed <= 8; seed++ {
				rng := rand.New(rand.NewPCG(seed, 6))
				n := 64 * QK_K
				size, _ := kt.typ.RowSize(int64(n))
				quantized := make([]byte, size)
				kt.quant(quantized, testValues(n, seed))
				for _, src := range [][]byte{quantized, randomBytes(rng, int(size))} {
					want := make([]float32, n)
					got := make([]float32, n)
					kt.ref(want, src)
					if err := Dequantize(kt.typ, got, src); err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v seed %d: value %d (block %d) is %x, want %x", kt.typ, seed, i, i/QK_K, math.Float32bits(got[i]), math.Float32bits(want[i]))
						}
					}
				}
			}
		}
	})
}

// TestKPackEveryLevel checks the K-quant code packers at every level
// against the Go code on random codes of their full ranges (4, 5 and 6
// bits), all zeros and all ones.
func TestKPackEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		rng := rand.New(rand.NewPCG(4, 5))
		for round := 0; round < 200; round++ {
			var l4, l5 [QK_K]uint8
			var l6 [QK_K]int8
			for i := range l4 {
				switch round {
				case 0: // zeros
				case 1:
					l4[i], l5[i], l6[i] = 15, 31, 63
				default:
					l4[i], l5[i], l6[i] = uint8(rng.IntN(16)), uint8(rng.IntN(32)), int8(rng.IntN(64))
				}
			}
			var g4, w4 [128]byte
			packQ4K(&g4, &l4)
			packQ4KGo(&w4, &l4)
			if g4 != w4 {
				t.Fatalf("Q4_K round %d:\n got %x\nwant %x", round, g4, w4)
			}
			var g5, w5 [160]byte
			packQ5K(&g5, &l5)
			packQ5KGo(&w5, &l5)
			if g5 != w5 {
				t.Fatalf("Q5_K round %d:\n got %x\nwant %x", round, g5, w5)
			}
			var g6, w6 [192]byte
			packQ6K(&g6, &l6)
			packQ6KGo(&w6, &l6)
			if g6 != w6 {
				t.Fatalf("Q6_K round %d:\n got %x\nwant %x", round, g6, w6)
			}
		}
	})
}

// TestAllFiniteEveryLevel plants a NaN, +Inf or −Inf at every position of
// a super-block (and of a longer run) and expects allFinite to see it at
// every level; the largest finite values and subnormals are finite.
func TestAllFiniteEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, n := range []int{QK_K, 4 * QK_K, 37} {
			x := make([]float32, n)
			for i := range x {
				x[i] = []float32{math.MaxFloat32, -math.MaxFloat32, math.Float32frombits(1), 0, -1.5}[i%5]
			}
			if !allFinite(x) {
				t.Fatalf("n %d: finite values reported not finite", n)
			}
			for i := range x {
				for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7f800001)} {
					v := x[i]
					x[i] = bad
					if allFinite(x) {
						t.Fatalf("n %d: %v at %d not seen", n, bad, i)
					}
					x[i] = v
				}
			}
		}
	})
}
