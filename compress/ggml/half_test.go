package ggml

import (
	"math"
	"testing"
)

func TestFP32ToFP16(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{65504, 0x7bff},     // largest finite
		{65519.996, 0x7bff}, // just below the tie with 65520
		{65520, 0x7c00},     // tie between 65504 and 65536: even mantissa is Inf
		{1e9, 0x7c00},       // overflow
		{float32(math.Inf(-1)), 0xfc00},
		{float32(math.NaN()), 0x7e00}, // ggml's canonical quiet NaN
		{0x1p-24, 0x0001},             // smallest subnormal
		{0x1p-25, 0x0000},             // tie between 0 and 2^-24: even is 0
		{0x1.8p-25, 0x0001},           // above the tie
		{0x3p-25, 0x0002},             // 1.5 ulp subnormal: tie, even is 2
		{0x1p-14, 0x0400},             // smallest normal
		{0x1.ffcp-15, 0x0400},         // tie between the largest subnormal and 2^-14: even is 0x400
		{1 + 0x1p-11, 0x3c00},         // tie: 1.0 is even
		{1 + 0x3p-11, 0x3c02},         // tie: 1+2^-9 is even
		{1 + 0x1p-11 + 0x1p-20, 0x3c01},
		{0.1, 0x2e66},
		{1.0 / 63, 0x2410}, // 2^-6·(1+16.25/1024) -> mantissa 16
	} {
		if got := FP32ToFP16(tc.in); got != tc.want {
			t.Errorf("FP32ToFP16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestFP16RoundTrip(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := FP16ToFP32(h)
		if f != f {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("%#04x decoded to NaN", h)
			}
			continue
		}
		if got := FP32ToFP16(f); got != h {
			t.Fatalf("FP32ToFP16(FP16ToFP32(%#04x)=%g) = %#04x", h, f, got)
		}
		if f16Table[h] != f && !(f != f) {
			t.Fatalf("table mismatch at %#04x", h)
		}
	}
	// Spot values: the smallest subnormal and the largest finite.
	if FP16ToFP32(1) != 0x1p-24 || FP16ToFP32(0x7bff) != 65504 || FP16ToFP32(0x03ff) != 0x3ffp-24 {
		t.Errorf("subnormal/max decode wrong")
	}
}

func TestBF16(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{1 + 0x1p-8, 0x3f80},           // tie: even
		{1 + 0x3p-8, 0x3f82},           // tie: even
		{1 + 0x1p-8 + 0x1p-20, 0x3f81}, // above the tie
		{float32(math.Inf(1)), 0x7f80},
		{math.Float32frombits(0x7f800001), 0x7fc0}, // signalling NaN made quiet
	} {
		if got := FP32ToBF16(tc.in); got != tc.want {
			t.Errorf("FP32ToBF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
		if tc.in == tc.in && BF16ToFP32(tc.want) != tc.in && tc.want&1 == 0 && tc.in == 1 {
			t.Errorf("BF16ToFP32(%#04x) = %g", tc.want, BF16ToFP32(tc.want))
		}
	}
}

func TestNearestInt(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want int32
	}{
		{0.5, 0}, {1.5, 2}, {2.5, 2}, {-0.5, 0}, {-1.5, -2}, {-2.5, -2},
		{0.49999997, 0}, {31.5, 32}, {-128, -128}, {4194303, 4194303},
	} {
		if got := nearestInt(tc.in); got != tc.want {
			t.Errorf("nearestInt(%g) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   float32
		want int32
	}{
		{0.5, 1}, {-0.5, -1}, {2.5, 3}, {-2.5, -3}, {0.49999997, 0}, {126.5, 127},
	} {
		if got := roundHalfAway(tc.in); got != tc.want {
			t.Errorf("roundHalfAway(%g) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestDecodeF16AllPatterns(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		src[2*i], src[2*i+1] = byte(i), byte(i>>8)
	}
	dst := make([]float32, 1<<16)
	DecodeF16(dst, src)
	for i, v := range dst {
		if math.Float32bits(v) != math.Float32bits(FP16ToFP32(uint16(i))) {
			t.Fatalf("DecodeF16(%#04x) = %g, want %g", i, v, FP16ToFP32(uint16(i)))
		}
	}
}

// A binary16 NaN widens to a quiet float32 NaN with the same sign and
// payload, as ggml's GGML_FP16_TO_FP32 (its multiplication by 2^-112
// quiets a signalling NaN) and F16C's vcvtph2ps do. Checked against
// libggml-base's ggml_fp16_to_fp32_row for all 2^16 patterns (ggmlref test).
func TestFP16ToFP32NaN(t *testing.T) {
	for _, tc := range []struct {
		in   uint16
		want uint32
	}{
		{0x7c00, 0x7f800000}, // +Inf
		{0xfc00, 0xff800000}, // −Inf
		{0x7e00, 0x7fc00000}, // quiet NaN
		{0x7c01, 0x7fc02000}, // signalling NaN made quiet, payload kept
		{0xfd00, 0xffe00000},
		{0x7fff, 0x7fffe000},
	} {
		if got := math.Float32bits(FP16ToFP32(tc.in)); got != tc.want {
			t.Errorf("FP16ToFP32(%#04x) = %#08x, want %#08x", tc.in, got, tc.want)
		}
		var dst [1]float32
		DecodeF16(dst[:], []byte{byte(tc.in), byte(tc.in >> 8)})
		if got := math.Float32bits(dst[0]); got != tc.want {
			t.Errorf("DecodeF16(%#04x) = %#08x, want %#08x", tc.in, got, tc.want)
		}
	}
}
