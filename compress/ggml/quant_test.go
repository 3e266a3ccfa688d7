package ggml

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func quantizeOrFatal(t *testing.T, typ Type, x []float32) []byte {
	t.Helper()
	n, err := typ.RowSize(int64(len(x)))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, n)
	if _, err := Quantize(typ, dst, x); err != nil {
		t.Fatal(err)
	}
	return dst
}

func checkBytes(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", name, hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

// Q8_0 with max|x| = 127: d = 127/127 = 1 exactly (fp16 0x3c00), id = 1, so
// q = roundf(x), which rounds halves away from zero: 2.5 -> 3, -2.5 -> -3,
// 0.5 -> 1, -0.5 -> -1, 126.5 -> 127. nearest_int would give 2, -2, 0, 0.
func TestQ8_0KnownAnswer(t *testing.T) {
	x := make([]float32, 32)
	copy(x, []float32{127, 2.5, -2.5, 0.5, -0.5, 1.49, -1.51, 126.5, -127, 0.49999997})
	want := cat(le16(0x3c00), []byte{127, 3, 0xfd, 1, 0xff, 1, 0xfe, 127, 0x81, 0}, rep(0, 22))
	checkBytes(t, "q8_0", quantizeOrFatal(t, Q8_0, x), want)

	// All zero: d = 0 and id = 0, so every q is roundf(0) = 0.
	checkBytes(t, "q8_0 zero", quantizeOrFatal(t, Q8_0, make([]float32, 32)), rep(0, 34))
}

// Q4_0: the scale comes from the signed value of largest magnitude.
func TestQ4_0KnownAnswer(t *testing.T) {
	// max = −8 (index 0) -> d = −8/−8 = 1, id = 1; q = min(15, trunc(x + 8.5)).
	//   −8 -> 0.5 -> 0;  7 -> 15.5 -> 15;  0 -> 8;  0.4 -> 8.9 -> 8;
	//   0.5 -> 9;  −0.5 -> 8;  −0.6 -> 7.9 -> 7;  8 (tied |x|, later) -> 16.5 -> 16 -> 15.
	x := make([]float32, 32)
	copy(x, []float32{-8, 7, 0, 0.4, 0.5, -0.5, -0.6, 8})
	x[16] = 7 // pairs with x[0]: byte 0 = q0 | q16<<4 = 0 | 15<<4
	q := []byte{0, 15, 8, 8, 9, 8, 7, 15}
	qs := rep(8<<4|8, 16) // zeros elsewhere: q = 8 in both nibbles
	for j, v := range q {
		qs[j] = v | 8<<4
	}
	qs[0] = 0 | 15<<4
	checkBytes(t, "q4_0", quantizeOrFatal(t, Q4_0, x), cat(le16(0x3c00), qs))

	// max = +8 -> d = −1 (0xbc00), id = −1: x = −8 -> 16.5 -> clamp 15.
	y := make([]float32, 32)
	y[0], y[1] = 8, -8
	qs = rep(0x88, 16)
	qs[0] = 0 | 8<<4 // 8 -> 0.5 -> 0; y[16] = 0 -> 8
	qs[1] = 15 | 8<<4
	checkBytes(t, "q4_0 positive max", quantizeOrFatal(t, Q4_0, y), cat(le16(0xbc00), qs))

	// All zero: max stays +0, d = 0/−8 = −0 (0x8000), every q = 8.
	checkBytes(t, "q4_0 zero", quantizeOrFatal(t, Q4_0, make([]float32, 32)), cat(le16(0x8000), rep(0x88, 16)))
}

// Q4_1: min −1, max 14 -> d = 15/15 = 1, m = −1 (0xbc00);
// q = min(15, trunc(x + 1 + 0.5)).
func TestQ4_1KnownAnswer(t *testing.T) {
	x := make([]float32, 32)
	copy(x, []float32{-1, 14, 0.4, 0.6, 13.4})
	// −1 -> 0; 14 -> 15.5 -> 15; 0.4 -> 1.9 -> 1; 0.6 -> 2.1 -> 2; 13.4 -> 14.9 -> 14; 0 -> 1.5 -> 1
	qs := rep(1|1<<4, 16)
	for j, v := range []byte{0, 15, 1, 2, 14} {
		qs[j] = v | 1<<4
	}
	checkBytes(t, "q4_1", quantizeOrFatal(t, Q4_1, x), cat(le16(0x3c00), le16(0xbc00), qs))
}

// Q5_0: max = −16 -> d = 1; q = min(31, trunc(x + 16.5)); bit 4 of q[k]
// goes to bit k of qh.
func TestQ5_0KnownAnswer(t *testing.T) {
	x := make([]float32, 32)
	copy(x, []float32{-16, 15, 0, -0.6, 3.4})
	x[17] = 15
	// q: −16 -> 0; 15 -> 31; 0 -> 16; −0.6 -> 15.9 -> 15; 3.4 -> 19.9 -> 19; others 16; q[17] = 31.
	q := make([]byte, 32)
	for i := range q {
		q[i] = 16
	}
	copy(q, []byte{0, 31, 16, 15, 19})
	q[17] = 31
	var qh uint32
	qs := make([]byte, 16)
	for j := 0; j < 16; j++ {
		qs[j] = q[j]&15 | (q[j+16]&15)<<4
	}
	for k, v := range q {
		qh |= uint32(v>>4) << k
	}
	// Spelled out: bits set for q >= 16, i.e. every k except 0 and 3.
	if qh != 0xfffffff6 {
		t.Fatalf("test arithmetic: qh = %#x", qh)
	}
	checkBytes(t, "q5_0", quantizeOrFatal(t, Q5_0, x), cat(le16(0x3c00), []byte{0xf6, 0xff, 0xff, 0xff}, qs))
}

// Q5_1: min 0, max 31 -> d = 1, m = 0; q = trunc(x + 0.5) with no clamp.
func TestQ5_1KnownAnswer(t *testing.T) {
	x := make([]float32, 32)
	copy(x, []float32{0, 31, 16.5, 15.4, 30.9})
	// q: 0, 31, 17, 15, 31 (30.9 + 0.5 = 31.4), rest 0.
	qs := make([]byte, 16)
	copy(qs, []byte{0, 15, 1, 15, 15})
	// high bits: q[1]=31, q[2]=17, q[4]=31 have bit 4 -> qh = 0b10110
	checkBytes(t, "q5_1", quantizeOrFatal(t, Q5_1, x), cat(le16(0x3c00), le16(0), []byte{0x16, 0, 0, 0}, qs))
}

// kBlock is a Q4_K/Q5_K super-block whose sub-block j holds 0 at even and
// a_j = nmax·2^−(j%4) at odd positions. make_qkx2_quants then sees min = 0,
// max = a_j, iscale = nmax/a_j = 2^(j%4) and scale = 2^−(j%4), both exact,
// with L ∈ {0, nmax} and a weighted error of exactly 0, so no candidate of
// the search can beat it: scales = 1, ½, ¼, ⅛, 1, ½, ¼, ⅛ and mins = −0.
// max_scale = 1, so ls = nearest_int(63·s) = 63, 32 (31.5 ties to even), 16,
// 8; max_min = 0 gives lm = 0 and dmin = 0. d = fp16(1/63) = 0x2410
// = 65/4096. Requantizing, x/(d·ls) is 15.004 or 14.77 for Q4_K and 31.008
// or 30.52 for Q5_K, so L stays {0, nmax}.
// The 12 scale bytes: s[0..3] = 63, 32, 16, 8, s[4..7] = 0 (mins); for j ≥ 4
// s[j+4] = ls&15 (15, 0, 0, 8) and s[j−4] gets ls>>4 in its top two bits:
// 63|3<<6 = 0xff, 32|2<<6 = 0xa0, 16|1<<6 = 0x50, 8.
func kBlock(nmax float32) []float32 {
	x := make([]float32, 256)
	for j := 0; j < 8; j++ {
		a := nmax / float32(int(1)<<(j%4))
		for i := 1; i < 32; i += 2 {
			x[32*j+i] = a
		}
	}
	return x
}

var kScalesWant = []byte{0xff, 0xa0, 0x50, 0x08, 0, 0, 0, 0, 0x0f, 0, 0, 0x08}

func TestQ4_KKnownAnswer(t *testing.T) {
	// qs[32c+l] = L[64c+l] | L[64c+32+l]<<4: both halves share l's parity,
	// so odd l gives 0xff and even l 0x00.
	qs := make([]byte, 128)
	for i := range qs {
		if i%2 == 1 {
			qs[i] = 0xff
		}
	}
	checkBytes(t, "q4_K", quantizeOrFatal(t, Q4_K, kBlock(15)), cat(le16(0x2410), le16(0), kScalesWant, qs))
	checkBytes(t, "q4_K zero", quantizeOrFatal(t, Q4_K, make([]float32, 256)), rep(0, 144))
}

func TestQ5_KKnownAnswer(t *testing.T) {
	// L = 31 at odd positions: low nibble 15 in both halves of ql, and the
	// fifth bit set in qh[l] for all four 64-value groups (bits 0..7).
	qh := make([]byte, 32)
	ql := make([]byte, 128)
	for i := range ql {
		if i%2 == 1 {
			ql[i] = 0xff
		}
	}
	for i := range qh {
		if i%2 == 1 {
			qh[i] = 0xff
		}
	}
	checkBytes(t, "q5_K", quantizeOrFatal(t, Q5_K, kBlock(31)), cat(le16(0x2410), le16(0), kScalesWant, qh, ql))
}

// Q6_K: sub-block ib (16 values) holds −32·c at position 0, 17·c at 1 and 0
// elsewhere, c = 2^−(ib%4). In make_qx_quants, max = −32c, iscale = 1/c and
// L = −32, 17 with scale = Σw·x·l/Σw·l² = 1·c exactly (every product is a
// small integer times a power of two). Of the 18 other candidates only
// is ≤ −6 changes a level (−32 -> −31), and then
// (Σw·x·l)² = 1099329²·c^6 < Σx⁴·Σw·l² = 1132097·1067585·c^6, a 7e−5 margin,
// so the search keeps scale = c. max_scale = 1 -> iscale = −128,
// d = fp16(−1/128) = 0xa000, scales = nearest_int(−128c) = −128, −64, −32,
// −16 (0x80, 0xc0, 0xe0, 0xf0) and d·scale = c, so x/(d·scale) = −32, 17, 0:
// L+32 = 0, 49, 32.
// ql[64h+l] = L[128h+l]&15 | L[128h+l+64]&15<<4 and all four quarters share
// l%16, so ql = 0x11 where l%16 = 1 and 0 elsewhere; qh packs L>>4 = 0, 3, 2
// of all four quarters: 0x00, 0xff, 0xaa.
func TestQ6_KKnownAnswer(t *testing.T) {
	x := make([]float32, 256)
	for ib := 0; ib < 16; ib++ {
		c := 1 / float32(int(1)<<(ib%4))
		x[16*ib] = -32 * c
		x[16*ib+1] = 17 * c
	}
	ql := make([]byte, 128)
	qh := make([]byte, 64)
	for i := range ql {
		if i%16 == 1 {
			ql[i] = 0x11
		}
	}
	for i := range qh {
		switch i % 16 {
		case 0:
			qh[i] = 0
		case 1:
			qh[i] = 0xff
		default:
			qh[i] = 0xaa
		}
	}
	sc := bytes.Repeat([]byte{0x80, 0xc0, 0xe0, 0xf0}, 4)
	got := quantizeOrFatal(t, Q6_K, x)
	checkBytes(t, "q6_K", got, cat(ql, qh, sc, le16(0xa000)))
	y := make([]float32, 256)
	if err := Dequantize(Q6_K, y, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(x, y); diff != "" {
		t.Errorf("q6_K dequantize (-want +got):\n%s", diff)
	}
	checkBytes(t, "q6_K zero", quantizeOrFatal(t, Q6_K, make([]float32, 256)), rep(0, 210))
}

// The known-answer blocks above are exactly representable, so dequantizing
// them must give the input back; Q4_K/Q5_K only up to their 6-bit scales:
// ls = 32 stands for ½, so 7.5 comes back as 15·32·65/4096 = 7.6171875.
func TestDequantizeKnownBlocks(t *testing.T) {
	for _, tc := range []struct {
		typ Type
		x   []float32
		tol float64
	}{
		{Q8_0, []float32{127, -127, 3, -3, 0, 1, 2, 100}, 0},
		{Q4_0, []float32{-8, 7, 0, 1, -1, 3, 5, -7}, 0},
		{Q4_1, []float32{-1, 14, 0, 1, 2, 13}, 0},
		{Q5_0, []float32{-16, 15, 0, 1, -1}, 0},
		{Q5_1, []float32{0, 31, 16, 15}, 0},
		{Q4_K, kBlock(15), 0.12},
		{Q5_K, kBlock(31), 0.25},
	} {
		x := make([]float32, max(len(tc.x), int(tc.typ.BlockSize())))
		copy(x, tc.x)
		q := quantizeOrFatal(t, tc.typ, x)
		y := make([]float32, len(x))
		if err := Dequantize(tc.typ, y, q); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if d := math.Abs(float64(x[i] - y[i])); d > tc.tol {
				t.Errorf("%v: x[%d] = %g, dequantized %g", tc.typ, i, x[i], y[i])
				break
			}
		}
	}
}
