package ggml

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// eachLevel runs f once per simd level this CPU supports.
func eachLevel(t *testing.T, f func(t *testing.T, l simd.Level)) {
	for _, l := range simd.Supported() {
		t.Run(l.String(), func(t *testing.T) {
			defer simd.Set(l)()
			f(t, l)
		})
	}
}

// adversarialBlocks returns Q8_0-sized blocks that stress the vector
// code: exact halves after scaling, ±0, all-equal, subnormal, huge, signed
// ties of the largest magnitude, lone NaN and ±Inf, then random ones.
func adversarialBlocks(rng *rand.Rand, nrand int) []float32 {
	var x []float32
	block := func(f func(j int) float32) {
		for j := 0; j < QK; j++ {
			x = append(x, f(j))
		}
	}
	negz := float32(math.Copysign(0, -1))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	block(func(j int) float32 { return 0 })
	block(func(j int) float32 { return negz })
	block(func(j int) float32 { return []float32{0, negz}[j%2] })
	block(func(j int) float32 { return 0.75 })
	block(func(j int) float32 { return float32(j%3-1) * 127 }) // ±127 ties and 0
	block(func(j int) float32 { return float32(1-j%3) * 8 })   // −8 first: the signed tie
	block(func(j int) float32 { return []float32{negz, 0}[j%2] })
	block(func(j int) float32 { return float32(j) - 15.5 })               // halves
	block(func(j int) float32 { return (float32(j) + 0.5) * 127 / 63.5 }) // x*id near .5
	block(func(j int) float32 { return float32(j-16) * 0.5 })
	block(func(j int) float32 { return math.Float32frombits(uint32(j + 1)) }) // subnormals
	block(func(j int) float32 { return float32(j%5-2) * 1e-41 })
	block(func(j int) float32 { return float32(j%7-3) * 1.1e38 })
	block(func(j int) float32 { return []float32{math.MaxFloat32, -math.MaxFloat32, 1}[j%3] })
	block(func(j int) float32 { return float32(j) * 1e-8 }) // tiny scale: subnormal fp16 d
	block(func(j int) float32 { return float32(j) * 6e-6 })
	block(func(j int) float32 { return float32(j-16) * 7e-39 })    // subnormal d
	block(func(j int) float32 { return float32(j-16) * 9.33e-38 }) // d near FLT_MIN
	for _, bad := range []float32{nan, inf, -inf} {
		for _, pos := range []int{0, 13, 31} {
			block(func(j int) float32 {
				if j == pos {
					return bad
				}
				return float32(j) - 7
			})
		}
	}
	for i := 0; i < nrand; i++ {
		scale := float32(math.Pow(10, rng.Float64()*8-4))
		block(func(j int) float32 {
			v := float32(rng.NormFloat64()) * scale
			if rng.IntN(8) == 0 {
				v = float32(math.Round(float64(v*4))) / 4 // ties
			}
			return v
		})
	}
	return x
}

// TestQ8_0EveryLevel checks Quantize and Dequantize of Q8_0 at every level
// against the Go reference, byte for byte and bit for bit.
func TestQ8_0EveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for seed := uint64(1); seed <= 20; seed++ {
			rng := rand.New(rand.NewPCG(seed, 8))
			nrand := 200
			if seed%4 == 0 {
				nrand = 2000 // most groups of sixteen clean, some not
			}
			// Rounding ties first, in whole groups of sixteen that the
			// wide kernels take (the special blocks come after them).
			x := append(nearHalfBlocks(rng, 64), adversarialBlocks(rng, nrand)...)
			if seed%2 == 0 {
				// The kernels take eight or sixteen blocks at a time:
				// shuffled, the special blocks sit at every place in a
				// group.
				shuffleBlocks(rng, x)
			}
			want := make([]byte, len(x)/QK*34)
			quantizeQ8_0Go(want, x)
			got := make([]byte, len(want))
			if _, err := Quantize(Q8_0, got, x); err != nil {
				t.Fatal(err)
			}
			for b := 0; b < len(x)/QK; b++ {
				if !bytes.Equal(got[34*b:34*b+34], want[34*b:34*b+34]) {
					t.Fatalf("seed %d block %d: %v\n got %x\nwant %x", seed, b, x[QK*b:QK*b+QK], got[34*b:34*b+34], want[34*b:34*b+34])
				}
			}
			// Dequantize the blocks and random bytes (NaN, Inf and
			// subnormal fp16 scales among them).
			for _, src := range [][]byte{want, randomBytes(rng, len(want))} {
				y0 := make([]float32, len(x))
				y1 := make([]float32, len(x))
				dequantizeQ8_0Go(y0, src)
				if err := Dequantize(Q8_0, y1, src); err != nil {
					t.Fatal(err)
				}
				for i := range y0 {
					if math.Float32bits(y0[i]) != math.Float32bits(y1[i]) {
						t.Fatalf("seed %d: dequantized value %d is %x, want %x", seed, i, math.Float32bits(y1[i]), math.Float32bits(y0[i]))
					}
				}
			}
		}
	})
}

// nearHalfBlocks returns n blocks whose first value is ±127, so that d is 1
// and x·id is x, and whose other values are halves k + 0.5 and their
// nearest neighbours (0.5 and 0.49999997 among them): the ties of roundf.
func nearHalfBlocks(rng *rand.Rand, n int) []float32 {
	x := make([]float32, 0, n*QK)
	for b := 0; b < n; b++ {
		x = append(x, float32(1-2*rng.IntN(2))*127)
		for j := 1; j < QK; j++ {
			v := float32(rng.IntN(127)) + 0.5
			if b%4 == 0 {
				v = 0.5
			}
			for k := rng.IntN(5) - 2; k != 0; {
				if k < 0 {
					v, k = math.Nextafter32(v, 0), k+1
				} else {
					v, k = math.Nextafter32(v, 200), k-1
				}
			}
			if rng.IntN(2) == 0 {
				v = -v
			}
			x = append(x, v)
		}
	}
	return x
}

// shuffleBlocks puts the QK-value blocks of x in a random order.
func shuffleBlocks(rng *rand.Rand, x []float32) {
	rng.Shuffle(len(x)/QK, func(i, j int) {
		for k := 0; k < QK; k++ {
			x[QK*i+k], x[QK*j+k] = x[QK*j+k], x[QK*i+k]
		}
	})
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// legacyTypes are the legacy block types after Q8_0 with their Go
// references and block sizes.
var legacyTypes = []struct {
	typ      Type
	size     int
	quant    func([]byte, []float32)
	dequant  func([]float32, []byte)
	minMaxed bool   // d from max−min, m = min
	stream   uint64 // the random stream of the type's inputs
}{
	{Q4_0, 18, quantizeQ4_0Go, dequantizeQ4_0Go, false, 4},
	{Q4_1, 20, quantizeQ4_1Go, dequantizeQ4_1Go, true, 5},
	{Q5_0, 22, quantizeQ5_0Go, dequantizeQ5_0Go, false, 6},
	{Q5_1, 24, quantizeQ5_1Go, dequantizeQ5_1Go, true, 7},
}

// TestLegacyEveryLevel checks Quantize and Dequantize of Q4_0, Q4_1, Q5_0
// and Q5_1 at every level against the Go references, byte for byte and bit
// for bit, on adversarial and random blocks and (for the min-based types)
// blocks shifted so that their min is ±0, subnormal or the only negative.
func TestLegacyEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, lt := range legacyTypes {
			for seed := uint64(1); seed <= 20; seed++ {
				rng := rand.New(rand.NewPCG(seed, lt.stream))
				nrand := 200
				if seed%4 == 0 {
					nrand = 2000 // most groups of sixteen clean, some not
				}
				x := append(nearHalfBlocks(rng, 64), adversarialBlocks(rng, nrand)...)
				if lt.minMaxed {
					x = append(x, shiftedMinBlocks(rng)...)
				}
				if seed%2 == 0 {
					shuffleBlocks(rng, x) // special blocks at every place of a group of eight or sixteen
				}
				nb := len(x) / QK
				want := make([]byte, nb*lt.size)
				lt.quant(want, x)
				got := make([]byte, len(want))
				if _, err := Quantize(lt.typ, got, x); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < nb; b++ {
					if g, w := got[lt.size*b:lt.size*(b+1)], want[lt.size*b:lt.size*(b+1)]; !bytes.Equal(g, w) {
						t.Fatalf("%v seed %d block %d: %v\n got %x\nwant %x", lt.typ, seed, b, x[QK*b:QK*b+QK], g, w)
					}
				}
				for _, src := range [][]byte{want, randomBytes(rng, len(want))} {
					y0 := make([]float32, len(x))
					y1 := make([]float32, len(x))
					lt.dequant(y0, src)
					if err := Dequantize(lt.typ, y1, src); err != nil {
						t.Fatal(err)
					}
					for i := range y0 {
						if math.Float32bits(y0[i]) != math.Float32bits(y1[i]) {
							t.Fatalf("%v seed %d: dequantized value %d is %x, want %x", lt.typ, seed, i, math.Float32bits(y1[i]), math.Float32bits(y0[i]))
						}
					}
				}
			}
		}
	})
}

// shiftedMinBlocks returns blocks whose minimum is +0, −0 (first or after
// a +0), subnormal, or FLT_MIN, among positive values.
func shiftedMinBlocks(rng *rand.Rand) []float32 {
	negz := float32(math.Copysign(0, -1))
	var x []float32
	for _, lows := range [][]float32{{0}, {negz}, {0, negz}, {negz, 0}, {1e-40}, {-1e-40}, {math.SmallestNonzeroFloat32}, {1.1754944e-38}, {-1.1754944e-38}} {
		b := make([]float32, QK)
		for j := range b {
			b[j] = float32(rng.Float64()*3 + 0.25)
		}
		for k, v := range lows {
			b[(7+5*k)%QK] = v
		}
		x = append(x, b...)
	}
	return x
}

// TestDecodeF16EveryLevel decodes all 2^16 binary16 patterns, at offsets
// that leave every tail length, and compares with FP16ToFP32 bit for bit.
func TestDecodeF16EveryLevel(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, skip := range []int{0, 1, 7, 15} {
			n := 1<<16 - skip
			dst := make([]float32, n)
			if DecodeF16Finite(dst, src[2*skip:]) {
				t.Errorf("skip %d: every pattern, Inf and NaN included, reported finite", skip)
			}
			for i, v := range dst {
				if want := FP16ToFP32(uint16(i + skip)); math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("skip %d: %#04x decodes to %#08x, want %#08x", skip, i+skip, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	})
}

// TestDecodeF16FiniteEveryLevel checks DecodeF16Finite's report on finite
// rows and on rows with one Inf or NaN at every position (in the vector
// part and in the tail), at every level.
func TestDecodeF16FiniteEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, n := range []int{0, 1, 15, 16, 17, 40, 64} {
			src := make([]byte, 2*n)
			for i := 0; i < n; i++ {
				binary.LittleEndian.PutUint16(src[2*i:], uint16(0x3c00+i)) // finite
			}
			if n > 0 {
				binary.LittleEndian.PutUint16(src, 0x03ff) // a subnormal is finite
			}
			dst := make([]float32, n)
			if !DecodeF16Finite(dst, src) {
				t.Errorf("n %d: finite row reported non-finite", n)
			}
			for pos := 0; pos < n; pos++ {
				for _, bad := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff} {
					b := append([]byte(nil), src...)
					binary.LittleEndian.PutUint16(b[2*pos:], bad)
					if DecodeF16Finite(dst, b) {
						t.Fatalf("n %d: %#04x at %d reported finite", n, bad, pos)
					}
				}
			}
		}
	})
}

// TestDecodeBF16EveryLevel decodes all 2^16 bfloat16 patterns, at offsets
// that leave every tail length, and compares with BF16ToFP32 bit for bit.
func TestDecodeBF16EveryLevel(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, skip := range []int{0, 1, 7, 15} {
			dst := make([]float32, 1<<16-skip)
			DecodeBF16(dst, src[2*skip:])
			for i, v := range dst {
				if want := BF16ToFP32(uint16(i + skip)); math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("skip %d: %#04x decodes to %#08x, want %#08x", skip, i+skip, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	})
}

// TestEncodeF16EveryLevel encodes random bit patterns (every class:
// NaNs, ±Inf, subnormals, values that overflow or round to binary16
// subnormals), exact ties of binary16 rounding and lone NaNs among
// ordinary values, at every level and every tail length, against
// FP32ToFP16.
func TestEncodeF16EveryLevel(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	var src []float32
	for i := 0; i < 1<<18; i++ {
		src = append(src, math.Float32frombits(rng.Uint32()))
	}
	for i := 0; i < 1<<14; i++ {
		// a binary16 value plus half its last place: a tie (normal and
		// subnormal results, and the overflow boundary)
		h := uint16(rng.Uint32()) & 0x7bff
		v := FP16ToFP32(h)
		next := FP16ToFP32(h + 1)
		src = append(src, (v+next)/2, -(v+next)/2, v)
	}
	for i := 0; i < 64; i++ {
		for j := 0; j < 16; j++ {
			v := float32(j) * 0.3
			if j == i%16 {
				v = float32(math.NaN())
			}
			src = append(src, v)
		}
	}
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, skip := range []int{0, 1, 7} {
			x := src[skip:]
			got := make([]byte, 2*len(x))
			EncodeF16(got, x)
			for i, v := range x {
				if g, w := binary.LittleEndian.Uint16(got[2*i:]), FP32ToFP16(v); g != w {
					t.Fatalf("skip %d: %#08x encodes to %#04x, want %#04x", skip, math.Float32bits(v), g, w)
				}
			}
		}
	})
}

// TestScalarFallbackForced checks that at the Scalar level the portable
// code is what runs: a block the AVX2 kernel would stop at and ordinary
// blocks alike come out as the Go reference writes them, and the level
// really is Scalar while it runs.
func TestScalarFallbackForced(t *testing.T) {
	defer simd.Set(simd.Scalar)()
	if simd.Current() != simd.Scalar {
		t.Fatalf("level %v after Set(Scalar)", simd.Current())
	}
	if n, _ := decodeF16Wide(make([]float32, 64), make([]byte, 128)); n != 0 {
		t.Errorf("the F16C decode ran %d values at the Scalar level", n)
	}
	x := adversarialBlocks(rand.New(rand.NewPCG(3, 3)), 50)
	want := make([]byte, len(x)/QK*34)
	quantizeQ8_0Go(want, x)
	got := make([]byte, len(want))
	Quantize(Q8_0, got, x)
	if !bytes.Equal(got, want) {
		t.Error("Scalar level differs from the Go reference")
	}
}

// TestRoundHalfAwayByAdd checks the identity the Q8_0 vector kernels round
// with: roundf(v) = trunc(v + copysign(nextafter(0.5, 0), v)) in float32,
// for every float32 of magnitude in [2^-3, 2^9) (every quant Q8_0 makes is
// in there or rounds to 0 either way) with a stride, and for each half k +
// 0.5 and its neighbours. (The same identity was checked in C for every
// finite float32 below 3e9 in magnitude.)
func TestRoundHalfAwayByAdd(t *testing.T) {
	c := math.Nextafter32(0.5, 0)
	check := func(v float32) {
		got := int32(v + float32(math.Copysign(float64(c), float64(v))))
		if want := roundHalfAway(v); got != want {
			t.Fatalf("v = %g (%#x): %d, want %d", v, math.Float32bits(v), got, want)
		}
	}
	for b := math.Float32bits(0.125); b < math.Float32bits(512); b += 13 {
		v := math.Float32frombits(b)
		check(v)
		check(-v)
	}
	for k := float32(0); k < 512; k++ {
		h := k + 0.5
		for _, v := range []float32{h, math.Nextafter32(h, 0), math.Nextafter32(h, 1024),
			math.Nextafter32(math.Nextafter32(h, 0), 0), math.Nextafter32(math.Nextafter32(h, 1024), 1024)} {
			check(v)
			check(-v)
		}
	}
}

// TestQuantizeDequantizeEveryLevel checks QuantizeDequantize against
// Quantize followed by Dequantize, bytes and bits, for every type at every
// level, on the adversarial blocks (specials among clean groups of sixteen
// and shuffled), including the fused Q8_0 kernel and its hand-offs.
func TestQuantizeDequantizeEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, typ := range quantTypes {
			for seed := uint64(1); seed <= 6; seed++ {
				rng := rand.New(rand.NewPCG(seed, 11))
				x := append(nearHalfBlocks(rng, 64), adversarialBlocks(rng, 300*int(seed%3))...)
				if seed%2 == 0 {
					shuffleBlocks(rng, x)
				}
				x = x[:len(x)/QK_K*QK_K]
				n, _ := typ.RowSize(int64(len(x)))
				want := make([]byte, n)
				if _, err := Quantize(typ, want, x); err != nil {
					t.Fatal(err)
				}
				wy := make([]float32, len(x))
				if err := Dequantize(typ, wy, want); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, n)
				gy := make([]float32, len(x)+5) // longer than needed: only len(x) written
				for i := range gy {
					gy[i] = 42
				}
				if m, err := QuantizeDequantize(typ, got, gy, x); err != nil || m != int(n) {
					t.Fatalf("%v: %d bytes, %v", typ, m, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%v seed %d: the quantized bytes differ from Quantize's", typ, seed)
				}
				for i := range wy {
					if math.Float32bits(gy[i]) != math.Float32bits(wy[i]) {
						t.Fatalf("%v seed %d: value %d dequantized to %x, want %x", typ, seed, i, math.Float32bits(gy[i]), math.Float32bits(wy[i]))
					}
				}
				if gy[len(x)] != 42 {
					t.Fatalf("%v: wrote past the values", typ)
				}
			}
		}
		if _, err := QuantizeDequantize(Q8_0, make([]byte, 34), make([]float32, 16), make([]float32, 32)); err == nil {
			t.Error("a short y is not an error")
		}
	})
}
