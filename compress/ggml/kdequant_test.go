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
