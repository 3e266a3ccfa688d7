package ggml

import (
	"bytes"
	"math"
	"testing"
)

// testValues fills n values from a fixed-seed xorshift generator, shaped like
// trained weights: a sum of uniforms (roughly normal, σ ≈ 0.02) with an
// occasional outlier ten times larger.
func testValues(n int, seed uint64) []float32 {
	s := seed | 1
	next := func() float32 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return float32(s>>40)/float32(1<<24) - 0.5
	}
	x := make([]float32, n)
	for i := range x {
		v := (next() + next() + next() + next()) * 0.035
		if i%997 == 13 {
			v *= 10
		}
		x[i] = v
	}
	return x
}

var quantTypes = []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K}

// Bounds on the relative RMS error for roughly normal data: each type's
// step is range/levels, so the error is about step/√12 over σ. Measured
// values are about 75% of these.
var relRMSEBound = map[Type]float64{
	Q8_0: 0.008, Q4_0: 0.13, Q4_1: 0.12, Q5_0: 0.065, Q5_1: 0.055,
	Q4_K: 0.10, Q5_K: 0.05, Q6_K: 0.025,
}

func TestQuantizeDequantizeErrorBound(t *testing.T) {
	x := testValues(64*256, 1)
	for _, typ := range quantTypes {
		q := quantizeOrFatal(t, typ, x)
		y := make([]float32, len(x))
		if err := Dequantize(typ, y, q); err != nil {
			t.Fatal(err)
		}
		var ee, xx float64
		var maxErr, amax float64
		for i := range x {
			e := float64(x[i] - y[i])
			ee += e * e
			xx += float64(x[i]) * float64(x[i])
			maxErr = math.Max(maxErr, math.Abs(e))
			amax = math.Max(amax, math.Abs(float64(x[i])))
		}
		rel := math.Sqrt(ee / xx)
		t.Logf("%v: rel RMSE %.4f, max abs err %.4g (max |x| %.3g)", typ, rel, maxErr, amax)
		if rel > relRMSEBound[typ] {
			t.Errorf("%v: rel RMSE %.4f > %.4f", typ, rel, relRMSEBound[typ])
		}
		// No value can be off by more than a quarter of the largest magnitude
		// even at 4 bits (the step is at most max/7.5).
		if maxErr > amax/4 {
			t.Errorf("%v: max abs error %g > %g", typ, maxErr, amax/4)
		}
	}
}

// Blocks are independent: quantizing a buffer at once or block by block gives
// the same bytes, so rows may be split across workers freely.
func TestQuantizeBlockIndependence(t *testing.T) {
	x := testValues(8*256, 2)
	for _, typ := range quantTypes {
		whole := quantizeOrFatal(t, typ, x)
		var parts []byte
		bs := int(typ.BlockSize())
		for i := 0; i < len(x); i += bs {
			parts = append(parts, quantizeOrFatal(t, typ, x[i:i+bs])...)
		}
		if !bytes.Equal(whole, parts) {
			t.Errorf("%v: block-wise result differs", typ)
		}
	}
}

// Edge inputs must not panic and must be deterministic: constant blocks,
// huge and tiny magnitudes, subnormals, and (for AllowNonFinite callers)
// Inf and NaN.
func TestQuantizeEdgeInputs(t *testing.T) {
	inputs := map[string]func(i int) float32{
		"const":     func(int) float32 { return 0.75 },
		"negconst":  func(int) float32 { return -3 },
		"huge":      func(i int) float32 { return float32(i%7-3) * 6e4 },
		"tiny":      func(i int) float32 { return float32(i%5-2) * 1e-30 },
		"subnormal": func(i int) float32 { return float32(i%3-1) * 1e-40 },
		"inf":       func(i int) float32 { return []float32{1, float32(math.Inf(1)), -2}[i%3] },
		"nan":       func(i int) float32 { return []float32{1, float32(math.NaN()), -2}[i%3] },
	}
	for name, f := range inputs {
		x := make([]float32, 256)
		for i := range x {
			x[i] = f(i)
		}
		for _, typ := range quantTypes {
			a := quantizeOrFatal(t, typ, x)
			b := quantizeOrFatal(t, typ, x)
			if !bytes.Equal(a, b) {
				t.Errorf("%s %v: not deterministic", name, typ)
			}
			y := make([]float32, len(x))
			if err := Dequantize(typ, y, a); err != nil {
				t.Fatal(err)
			}
			if name == "const" || name == "negconst" {
				// A constant block is reproduced within its type's step.
				for i := range y {
					if math.Abs(float64(y[i]-x[i])) > math.Abs(float64(x[i]))/7 {
						t.Errorf("%s %v: x=%g y=%g", name, typ, x[i], y[i])
						break
					}
				}
			}
		}
	}
}

func TestQuantizeRejectsBadLengths(t *testing.T) {
	if _, err := Quantize(Q4_K, make([]byte, 1000), make([]float32, 100)); err == nil {
		t.Error("Q4_K of 100 values: want error")
	}
	if _, err := Quantize(Q8_0, make([]byte, 10), make([]float32, 32)); err == nil {
		t.Error("short destination: want error")
	}
	if _, err := Quantize(F16, make([]byte, 64), make([]float32, 32)); err == nil {
		t.Error("F16 target: want error")
	}
	if err := Dequantize(Type(4), make([]float32, 32), make([]byte, 64)); err == nil {
		t.Error("removed type 4: want error")
	}
}

func TestTypeTable(t *testing.T) {
	for _, tc := range []struct {
		typ        Type
		name       string
		block, siz int64
	}{
		{F32, "f32", 1, 4}, {F16, "f16", 1, 2}, {BF16, "bf16", 1, 2},
		{Q4_0, "q4_0", 32, 18}, {Q4_1, "q4_1", 32, 20}, {Q5_0, "q5_0", 32, 22},
		{Q5_1, "q5_1", 32, 24}, {Q8_0, "q8_0", 32, 34}, {Q4_K, "q4_K", 256, 144},
		{Q5_K, "q5_K", 256, 176}, {Q6_K, "q6_K", 256, 210},
	} {
		if tc.typ.String() != tc.name || tc.typ.BlockSize() != tc.block || tc.typ.TypeSize() != tc.siz {
			t.Errorf("%d: got %s %d %d", tc.typ, tc.typ, tc.typ.BlockSize(), tc.typ.TypeSize())
		}
		if p, err := ParseType(tc.name); err != nil || p != tc.typ {
			t.Errorf("ParseType(%q) = %v, %v", tc.name, p, err)
		}
	}
	for _, bad := range []Type{4, 5, 31, 36, 40, 1 << 20} {
		if bad.Known() {
			t.Errorf("type %d known", bad)
		}
	}
}
