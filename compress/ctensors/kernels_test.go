package ctensors

import (
	"math"
	"testing"

	"github.com/gantry-dev/gantry/compress/quality"

	st "github.com/gantry-dev/gantry/compress/safetensors"
)

func TestRoundEven(t *testing.T) {
	for i := -300000; i <= 300000; i++ {
		v := float32(i) / 1000 // covers halves and near-halves in ±300
		if got, want := roundEven(v), float32(math.RoundToEven(float64(v))); got != want {
			t.Fatalf("roundEven(%g) = %g, want %g", v, got, want)
		}
	}
	for _, v := range []float32{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127.5, -127.5, 7.5, -7.5} {
		if got, want := roundEven(v), float32(math.RoundToEven(float64(v))); got != want {
			t.Errorf("roundEven(%g) = %g, want %g", v, got, want)
		}
	}
}

func TestInt4KnownRow(t *testing.T) {
	// max|x| = 7.5, so the scale is exactly 7.5/7.5 = 1 and x/scale = x.
	// clamp to [-8, 7]:       -7.5 -3.5 -0.5  0  0.5  2.5  6.9  7.5→7
	// round half to even:     -8   -4   -0    0  0    2    7    7
	// +8 (unsigned nibbles):   0    4    8    8  8   10   15   15
	// packed, first value in the low nibble: 0xFFA88840.
	x := []float32{-7.5, -3.5, -0.5, 0, 0.5, 2.5, 6.9, 7.5}
	packed := make([]uint32, 1)
	scales := make([]float32, 1)
	y := make([]float32, 8)
	QuantizeIntRow(packed, scales, y, x, 4, 8, st.F32)
	if scales[0] != 1 {
		t.Errorf("scale = %g, want 1", scales[0])
	}
	if packed[0] != 0xFFA88840 {
		t.Errorf("packed = %#08x, want 0xffa88840", packed[0])
	}
	want := []float32{-8, -4, 0, 0, 0, 2, 7, 7}
	for i := range want {
		if y[i] != want[i] {
			t.Errorf("y[%d] = %g, want %g", i, y[i], want[i])
		}
	}
	codes := make([]int8, 8)
	UnpackInt(codes, packed, 4)
	for i := range want {
		if float32(codes[i]) != want[i] {
			t.Errorf("unpacked[%d] = %d, want %g", i, codes[i], want[i])
		}
	}
	// As the I32 the file stores, 0xFFA88840 is -5732288.
	if int32(packed[0]) != -5732288 {
		t.Errorf("int32 = %d", int32(packed[0]))
	}
}

func TestInt8KnownRow(t *testing.T) {
	// max|x| = 127.5, scale 1. clamp to [-128, 127], round half to even:
	// -127.5→-128, -1.5→-2, 0.5→0, 127.5→127; +128: 0, 126, 128, 255,
	// packed low byte first: 0xFF807E00.
	x := []float32{-127.5, -1.5, 0.5, 127.5}
	packed := make([]uint32, 1)
	scales := make([]float32, 1)
	QuantizeIntRow(packed, scales, nil, x, 8, 4, st.F32)
	if scales[0] != 1 || packed[0] != 0xFF807E00 {
		t.Errorf("scale %g packed %#08x, want 1 0xff807e00", scales[0], packed[0])
	}
}

func TestFP8KnownRow(t *testing.T) {
	// max|x| = 2, scale = 2/448; x/scale = 112, -224, 448, 0:
	// 112 = 1.75·2^6 → 0 1101 110 = 0x6e; -224 = -1.75·2^7 → 1 1110 110 =
	// 0xf6; 448 → 0x7e.
	x := []float32{0.5, -1, 2, 0}
	q := make([]byte, 4)
	y := make([]float32, 4)
	s := QuantizeFP8Row(q, y, x)
	if s != float32(2)/448 {
		t.Errorf("scale %g", s)
	}
	if want := []byte{0x6e, 0xf6, 0x7e, 0x00}; string(q) != string(want) {
		t.Errorf("codes % x, want % x", q, want)
	}
	for i := range x {
		if math.Abs(float64(y[i]-x[i])) > 1e-6 {
			t.Errorf("y[%d] = %g, want %g", i, y[i], x[i])
		}
	}
}

func TestZeroRowUsesEps(t *testing.T) {
	x := make([]float32, 8)
	packed := make([]uint32, 1)
	scales := make([]float32, 1)
	QuantizeIntRow(packed, scales, nil, x, 4, 8, st.BF16)
	if scales[0] != 1.0/128 || packed[0] != 0x88888888 {
		t.Errorf("scale %g packed %#08x", scales[0], packed[0])
	}
	if s := QuantizeFP8Row(make([]byte, 8), nil, x); s != 1.1920929e-07 {
		t.Errorf("fp8 zero scale %g", s)
	}
}

func TestNonFiniteInKernels(t *testing.T) {
	inf := float32(math.Inf(1))
	x := []float32{float32(math.NaN()), inf, -inf, 1, 0, 0, 0, 0}
	packed := make([]uint32, 1)
	scales := make([]float32, 1)
	y := make([]float32, 8)
	QuantizeIntRow(packed, scales, y, x, 4, 8, st.F32)
	codes := make([]int8, 8)
	UnpackInt(codes, packed, 4)
	// scale from finite values: 1/7.5; NaN→0, +Inf→7, -Inf→-8, 1→7.5→8? clamp 7.
	if codes[0] != 0 || codes[1] != 7 || codes[2] != -8 || codes[3] != 7 {
		t.Errorf("codes %v", codes)
	}
	q := make([]byte, 8)
	QuantizeFP8Row(q, nil, x)
	if q[0] != 0x7f || q[1] != 0x7e || q[2] != 0xfe || q[3] != 0x7e {
		t.Errorf("fp8 codes % x", q)
	}
}

// TestQuantizeDequantizeBounds checks the error bound of each type on
// pseudo-random rows: integers are within half a step (scale/2) of the
// original; FP8 within half an ulp of the 3-bit mantissa (2^-4 relative)
// or, in the subnormal range, half the smallest step (scale·2^-10).
func TestQuantizeDequantizeBounds(t *testing.T) {
	const n = 1024
	x := make([]float32, n)
	y := make([]float32, n)
	s := uint64(42)
	for trial := 0; trial < 20; trial++ {
		amp := math.Ldexp(1, trial-10)
		for i := range x {
			s = s*6364136223846793005 + 1442695040888963407
			x[i] = float32((float64(s>>11)/(1<<53)*2 - 1) * amp)
		}
		for _, c := range []struct{ bits, group int }{{4, 128}, {4, n}, {8, n}, {8, 64}} {
			packed := make([]uint32, n*c.bits/32)
			scales := make([]float32, n/c.group)
			QuantizeIntRow(packed, scales, y, x, c.bits, c.group, st.F32)
			codes := make([]int8, n)
			UnpackInt(codes, packed, c.bits)
			for i := range x {
				sc := scales[i/c.group]
				if d := math.Abs(float64(x[i] - y[i])); d > float64(sc)/2+math.Abs(float64(x[i]))*1e-6 {
					t.Fatalf("int%d g%d: |%g-%g| = %g > scale/2 = %g", c.bits, c.group, x[i], y[i], d, sc/2)
				}
				if y[i] != float32(codes[i])*sc {
					t.Fatalf("int%d: unpacked code %d·%g != %g", c.bits, codes[i], sc, y[i])
				}
			}
		}
		q := make([]byte, n)
		sc := QuantizeFP8Row(q, y, x)
		for i := range x {
			d := math.Abs(float64(x[i] - y[i]))
			bound := math.Max(math.Abs(float64(x[i]))/16, float64(sc)/1024) * (1 + 1e-6)
			if d > bound {
				t.Fatalf("fp8: |%g-%g| = %g > %g", x[i], y[i], d, bound)
			}
		}
	}
}

func TestScaleRoundedToStorageType(t *testing.T) {
	x := []float32{0.1, -0.3, 0.2, 0.05, 0, 0, 0, 0}
	packed := make([]uint32, 1)
	scales := make([]float32, 1)
	QuantizeIntRow(packed, scales, nil, x, 4, 8, st.BF16)
	if st.BF16ToF32(st.F32ToBF16(scales[0])) != scales[0] {
		t.Errorf("scale %g is not a bf16 value", scales[0])
	}
}

func TestAddStatsMatchesQuality(t *testing.T) {
	x := []float32{1, -2, 3.5, 0, 0.25}
	y := []float32{1.1, -2, 3, 0.5, 0.25}
	for n := 0; n <= len(x); n++ {
		var a, b quality.Stats
		a.Add(x[:n], y[:n])
		addStats(&b, x[:n], y[:n])
		if a != b {
			t.Errorf("n=%d: %+v != %+v", n, a, b)
		}
	}
}
