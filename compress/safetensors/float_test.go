package safetensors

import (
	"math"
	"testing"
)

func TestF8E4M3KnownAnswers(t *testing.T) {
	// Hand-computed: code = s eeee mmm, bias 7.
	cases := []struct {
		in   float32
		want uint8
	}{
		{0, 0x00},
		{float32(math.Copysign(0, -1)), 0x80},
		{1, 0x38},            // 0 0111 000
		{-1, 0xb8},           // 1 0111 000
		{1.125, 0x39},        // 0 0111 001
		{1.0625, 0x38},       // halfway 1.000/1.001: ties to even mantissa 000
		{1.1875, 0x3a},       // halfway 1.001/1.010: ties to even 010
		{240, 0x77},          // 1.875·2^7: 0 1110 111
		{448, 0x7e},          // 1.75·2^8: 0 1111 110, the largest finite value
		{460, 0x7e},          // saturates
		{1e9, 0x7e},          // saturates
		{-1e9, 0xfe},         // saturates
		{0.015625, 0x08},     // 2^-6, smallest normal: 0 0001 000
		{0.001953125, 0x01},  // 2^-9, smallest subnormal
		{0.0009765625, 0x00}, // 2^-10, halfway 0/2^-9: ties to even 0
		{0.0029296875, 0x02}, // 1.5·2^-9, halfway 1/2: ties to even 2
		{0.0146484375, 0x08}, // 7.5·2^-9 rounds up into the smallest normal
		{float32(math.Inf(1)), 0x7e},
		{float32(math.Inf(-1)), 0xfe},
		{float32(math.NaN()), 0x7f},
	}
	for _, c := range cases {
		if got := F32ToF8E4M3(c.in); got != c.want {
			t.Errorf("F32ToF8E4M3(%g) = %#02x, want %#02x", c.in, got, c.want)
		}
	}
	if v := F8E4M3ToF32(0x7e); v != 448 {
		t.Errorf("F8E4M3ToF32(0x7e) = %g", v)
	}
	if v := F8E4M3ToF32(0x01); v != 1.0/512 {
		t.Errorf("F8E4M3ToF32(0x01) = %g", v)
	}
	if v := F8E4M3ToF32(0xff); !math.IsNaN(float64(v)) {
		t.Errorf("F8E4M3ToF32(0xff) = %g, want NaN", v)
	}
}

// TestF8E4M3Nearest checks the encoder against a brute-force search over all
// codes for the nearest value, ties to the even code.
func TestF8E4M3Nearest(t *testing.T) {
	for c := 0; c < 256; c++ {
		v := F8E4M3ToF32(uint8(c))
		if math.IsNaN(float64(v)) {
			continue
		}
		if got := F32ToF8E4M3(v); F8E4M3ToF32(got) != v {
			t.Fatalf("code %#02x (%g) encodes to %#02x", c, v, got)
		}
	}
	brute := func(x float32) uint8 {
		best, bestD := uint8(0), math.Inf(1)
		for c := 0; c < 256; c++ {
			v := float64(F8E4M3ToF32(uint8(c)))
			if math.IsNaN(v) || (v == 0 && c == 0x80) {
				continue
			}
			d := math.Abs(v - float64(x))
			if d < bestD || (d == bestD && c&1 == 0) {
				best, bestD = uint8(c), d
			}
		}
		return best
	}
	s := uint64(1)
	for i := 0; i < 20000; i++ {
		s = s*6364136223846793005 + 1442695040888963407
		// Values spread over the whole exponent range of the format.
		x := float32(math.Ldexp(float64(s>>40)/(1<<24), int(s>>8%24)-12))
		if s&1 == 1 {
			x = -x
		}
		if math.Abs(float64(x)) >= 448 {
			continue
		}
		got, want := F32ToF8E4M3(x), brute(x)
		if F8E4M3ToF32(got) != F8E4M3ToF32(want) {
			t.Fatalf("F32ToF8E4M3(%g) = %#02x (%g), nearest is %#02x (%g)", x, got, F8E4M3ToF32(got), want, F8E4M3ToF32(want))
		}
	}
}

func TestF16KnownAnswers(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},                  // largest finite
		{65519, 0x7bff},                  // below the halfway point
		{65520, 0x7c00},                  // halfway 65504/65536: ties to even, which is Inf
		{5.960464477539063e-08, 0x0001},  // 2^-24, smallest subnormal
		{2.9802322387695312e-08, 0x0000}, // 2^-25: halfway, ties to even 0
		{8.940696716308594e-08, 0x0002},  // 1.5·2^-24: halfway 1/2, ties to 2
		{6.097555160522461e-05, 0x03ff},  // largest subnormal 1023·2^-24
		{6.103515625e-05, 0x0400},        // 2^-14, smallest normal
		{1 + 1.0/2048, 0x3c00},           // halfway 1/1+2^-10: ties to even
		{1 + 3.0/2048, 0x3c02},           // halfway, ties up to even
		{float32(math.Inf(-1)), 0xfc00},
	}
	for _, c := range cases {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	// Every finite half survives a round trip through float32.
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if g := F32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x", h, g)
			}
			continue
		}
		if g := F32ToF16(f); g != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)=%g) = %#04x", h, f, g)
		}
	}
}

func TestBF16KnownAnswers(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{1 + 1.0/256, 0x3f80}, // halfway 0x3f80/0x3f81: ties to even
		{1 + 3.0/256, 0x3f82}, // halfway 0x3f81/0x3f82: ties to even
		{-0.5, 0xbf00},
		{float32(math.Inf(1)), 0x7f80},
	}
	for _, c := range cases {
		if got := F32ToBF16(c.in); got != c.want {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
		if got := BF16ToF32(c.want); got != float32(math.Float32frombits(uint32(c.want)<<16)) {
			t.Errorf("BF16ToF32(%#04x) = %g", c.want, got)
		}
	}
	if g := F32ToBF16(float32(math.NaN())); g&0x7f80 != 0x7f80 || g&0x7f == 0 {
		t.Errorf("NaN -> %#04x", g)
	}
}

func TestDecodeEncodeFloat32(t *testing.T) {
	x := []float32{0, 1, -2.5, 3.25, 104, -0.0078125}
	for _, dt := range []DType{F32, F16, BF16, F64, F8_E4M3} {
		buf := make([]byte, int64(len(x))*dt.Size())
		if err := EncodeFloat32(buf, x, dt); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := DecodeFloat32(y, buf, dt); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if x[i] != y[i] { // all values are exact in every format
				t.Errorf("%s: %g -> %g", dt, x[i], y[i])
			}
		}
	}
	if err := DecodeFloat32(make([]float32, 1), make([]byte, 4), I32); err == nil {
		t.Error("DecodeFloat32 of I32: no error")
	}
	if err := DecodeFloat32(make([]float32, 2), make([]byte, 3), BF16); err == nil {
		t.Error("DecodeFloat32 short buffer: no error")
	}
}

func TestFirstNonFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, dt := range []DType{F16, BF16, F32, F64, F8_E4M3} {
		for _, tc := range []struct {
			v    []float32
			want int
		}{
			{[]float32{0, 1, -2, 0.5}, -1},
			{[]float32{0, 1, nan}, 2},
			{[]float32{-nan, 0}, 0},
		} {
			b := make([]byte, int64(len(tc.v))*dt.Size())
			if err := EncodeFloat32(b, tc.v, dt); err != nil {
				t.Fatal(err)
			}
			if got := FirstNonFinite(b, dt); got != tc.want {
				t.Errorf("%v %v: %d, want %d", dt, tc.v, got, tc.want)
			}
		}
		if dt != F8_E4M3 { // E4M3 has no infinities: ±Inf saturates to ±448
			b := make([]byte, 3*dt.Size())
			EncodeFloat32(b, []float32{1, 2, -inf}, dt)
			if got := FirstNonFinite(b, dt); got != 2 {
				t.Errorf("%v -Inf: %d", dt, got)
			}
		}
	}
	for b, want := range map[byte]int{0x7b: -1, 0x7c: 0, 0xfc: 0, 0x7f: 0, 0x3c: -1} {
		if got := FirstNonFinite([]byte{b}, F8_E5M2); got != want {
			t.Errorf("E5M2 %#x: %d, want %d", b, got, want)
		}
	}
	if got := FirstNonFinite([]byte{0xff, 0xff}, I16); got != -1 {
		t.Errorf("I16: %d", got)
	}
}
