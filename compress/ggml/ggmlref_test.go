//go:build ggmlref

package ggml

// This file compares the Go kernels with a real, prebuilt ggml. It is built
// only with -tags ggmlref, needs cgo, and skips unless GANTRY_GGML_LIB names
// a libggml-base.so (see "Checking against ggml" in doc.go):
//
//	GANTRY_GGML_LIB=/path/to/libggml-base.so go test -tags ggmlref ./compress/ggml -run Ref -v
//
// GANTRY_GGML_EXHAUSTIVE=1 also converts every float32 to F16 and BF16.

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/gantry-dev/gantry/compress/ggml/internal/ggmlref"
)

func openRef(t *testing.T) *ggmlref.Lib {
	t.Helper()
	path := os.Getenv("GANTRY_GGML_LIB")
	if path == "" {
		t.Skip("GANTRY_GGML_LIB is not set")
	}
	lib, err := ggmlref.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	v, c := lib.Version()
	t.Logf("ggml %s (commit %s) from %s", v, c, path)
	return lib
}

// refCase is one input matrix: rows × nPerRow float32 values.
type refCase struct {
	name          string
	rows, nPerRow int
	gen           func(r *rand.Rand, row int, x []float32)
}

func normal(r *rand.Rand, sigma float64) float32 { return float32(r.NormFloat64() * sigma) }

// roundF16 is v as it arrives from an F16 file.
func roundF16(v float32) float32 { return FP16ToFP32(FP32ToFP16(v)) }

// specialKinds fill a group of values with the cases that stress the
// kernels' edges: zeros, all-equal groups, signed ties of the largest
// magnitude, tiny, subnormal and huge values, outliers and rounding ties.
var specialKinds = []struct {
	name string
	fill func(r *rand.Rand, x []float32)
}{
	{"zero", func(r *rand.Rand, x []float32) { clear(x) }},
	{"negzero", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = float32(math.Copysign(0, -1))
		}
	}},
	{"equal+", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = 0.37
		}
	}},
	{"equal-", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = -1.25e-3
		}
	}},
	{"one", func(r *rand.Rand, x []float32) {
		clear(x)
		x[r.IntN(len(x))] = normal(r, 1)
	}},
	{"tie-neg-first", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = normal(r, 0.01)
		}
		i, j := r.IntN(len(x)/2), len(x)/2+r.IntN(len(x)/2)
		x[i], x[j] = -0.05, 0.05
	}},
	{"tie-pos-first", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = normal(r, 0.01)
		}
		i, j := r.IntN(len(x)/2), len(x)/2+r.IntN(len(x)/2)
		x[i], x[j] = 0.05, -0.05
	}},
	{"tiny", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = normal(r, 1e-20)
		}
	}},
	{"subnormal", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = math.Float32frombits(r.Uint32() & 0x807fffff)
		}
	}},
	{"subnormal-mix", func(r *rand.Rand, x []float32) {
		for i := range x {
			if i%3 == 0 {
				x[i] = normal(r, 1e-3)
			} else {
				x[i] = math.Float32frombits(r.Uint32() & 0x807fffff)
			}
		}
	}},
	{"f16-subnormal", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = FP16ToFP32(uint16(r.Uint32() & 0x83ff))
		}
	}},
	{"huge", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = normal(r, 1e30)
		}
	}},
	{"near-max", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = float32((r.Float64()*2 - 1) * math.MaxFloat32)
		}
	}},
	{"f16-range", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = roundF16(float32((r.Float64()*2 - 1) * 65504))
		}
	}},
	{"outlier", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = normal(r, 0.01)
		}
		x[r.IntN(len(x))] = 100
	}},
	{"halves", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = float32(r.IntN(81)-40) / 2
		}
	}},
	{"grid-127", func(r *rand.Rand, x []float32) {
		// max|x| = 127: Q8_0 gets d = 1, so halves are roundf ties.
		for i := range x {
			x[i] = float32(r.IntN(255)-127) + 0.5*float32(r.IntN(2))
		}
		x[0] = 127
	}},
	{"grid-8", func(r *rand.Rand, x []float32) {
		// max = −8: Q4_0 gets d = 1, so x + 8.5 lands on halves.
		for i := range x {
			x[i] = float32(r.IntN(32)-16) / 2
		}
		x[len(x)-1] = -8
	}},
	{"positive", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = 1 + float32(r.Float64())
		}
	}},
	{"negative", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = -1 - float32(r.Float64())
		}
	}},
	{"f16-normal", func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = roundF16(normal(r, 0.02))
		}
	}},
}

// fillSpecial fills a row in groups of g values, each group of one special
// kind, cycling through the kinds from an offset that depends on the row.
func fillSpecial(g int) func(r *rand.Rand, row int, x []float32) {
	return func(r *rand.Rand, row int, x []float32) {
		for k := 0; k*g < len(x); k++ {
			specialKinds[(row*7+k)%len(specialKinds)].fill(r, x[k*g:k*g+g])
		}
	}
}

var refCases = []refCase{
	{"normal", 4, 1024, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = normal(r, 0.02)
		}
	}},
	{"normal-f16", 3, 2048, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = roundF16(normal(r, 0.02))
		}
	}},
	{"uniform", 2, 512, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = float32(r.Float64()*2 - 1)
		}
	}},
	{"weights-outliers", 2, 4096, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = normal(r, 0.035)
			if r.IntN(500) == 0 {
				x[i] *= 30
			}
		}
	}},
	{"halves", 5, 256, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = float32(r.IntN(81)-40) / 2
		}
	}},
	{"special-16", 2 * len(specialKinds), 256, fillSpecial(16)},
	{"special-32", 2 * len(specialKinds), 768, fillSpecial(32)},
	{"special-256", len(specialKinds), 256 * len(specialKinds), fillSpecial(256)},
	{"bulk", 64, 4096, func(r *rand.Rand, _ int, x []float32) {
		// Many ordinary blocks, so rarely taken branches of the scale
		// searches (the last candidates) get exercised.
		for i := range x {
			x[i] = roundF16(normal(r, 0.02))
			if r.IntN(300) == 0 {
				x[i] = roundF16(normal(r, 0.5))
			}
		}
	}},
	{"one-row", 1, 256, func(r *rand.Rand, _ int, x []float32) {
		for i := range x {
			x[i] = normal(r, 1)
		}
	}},
}

func (c refCase) values(seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, uint64(len(c.name))))
	x := make([]float32, c.rows*c.nPerRow)
	for row := 0; row < c.rows; row++ {
		c.gen(r, row, x[row*c.nPerRow:(row+1)*c.nPerRow])
	}
	return x
}

// refTypes are the types compared through ggml_quantize_chunk.
var refTypes = []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16}

func goQuantize(t *testing.T, typ Type, x []float32) []byte {
	t.Helper()
	n, err := typ.RowSize(int64(len(x)))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, n)
	switch typ {
	case F16:
		EncodeF16(dst, x)
	case BF16:
		EncodeBF16(dst, x)
	default:
		if _, err := Quantize(typ, dst, x); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// dequantizeSym names ggml's function that widens typ to float32.
func dequantizeSym(typ Type) string {
	switch typ {
	case F16:
		return "ggml_fp16_to_fp32_row"
	case BF16:
		return "ggml_bf16_to_fp32_row"
	}
	return "dequantize_row_" + typ.String()
}

func floatsHex(x []float32) string {
	var b strings.Builder
	for i, v := range x {
		if i%8 == 0 {
			b.WriteString("\n\t\t")
		}
		fmt.Fprintf(&b, "%08x(%g) ", math.Float32bits(v), v)
	}
	return b.String()
}

// firstBlockDiff describes the first block where got and want differ, and
// how many blocks differ, or returns "".
func firstBlockDiff(typ Type, nPerRow int, x []float32, got, want []byte) string {
	bs, ts := int(typ.BlockSize()), int(typ.TypeSize())
	if typ == F16 || typ == BF16 { // report runs of 32 values as "blocks"
		bs, ts = 32, 64
	}
	first, count := -1, 0
	for b := 0; b*ts < len(want); b++ {
		if string(got[b*ts:(b+1)*ts]) != string(want[b*ts:(b+1)*ts]) {
			if first < 0 {
				first = b
			}
			count++
		}
	}
	if first < 0 {
		return ""
	}
	bpr := nPerRow / bs
	return fmt.Sprintf("%d of %d blocks differ; first is block %d (row %d, block %d of the row)\n"+
		"\tinput:%s\n\tgo:   %s\n\tggml: %s",
		count, len(want)/ts, first, first/bpr, first%bpr,
		floatsHex(x[first*bs:(first+1)*bs]),
		hex.EncodeToString(got[first*ts:(first+1)*ts]),
		hex.EncodeToString(want[first*ts:(first+1)*ts]))
}

// TestRefQuantizeChunk compares Quantize with ggml_quantize_chunk(type, src,
// dst, 0, nrows, n_per_row, NULL) for every supported type, and Dequantize
// with ggml's dequantize_row_* on ggml's output.
func TestRefQuantizeChunk(t *testing.T) {
	lib := openRef(t)
	for _, typ := range refTypes {
		if typ.Quantized() {
			req, err := lib.RequiresImatrix(uint32(typ))
			if err != nil {
				t.Fatal(err)
			}
			if req {
				t.Errorf("%v: ggml requires an importance matrix", typ)
			}
		}
	}
	for ci, c := range refCases {
		for seed := uint64(1); seed <= 3; seed++ {
			x := c.values(seed*1000 + uint64(ci))
			for _, typ := range refTypes {
				t.Run(fmt.Sprintf("%s/%d/%v", c.name, seed, typ), func(t *testing.T) {
					got := goQuantize(t, typ, x)
					want := make([]byte, len(got))
					n, err := lib.QuantizeChunk(uint32(typ), want, x, int64(c.rows), int64(c.nPerRow))
					if err != nil {
						t.Fatal(err)
					}
					if n != len(want) {
						t.Fatalf("ggml wrote %d bytes, Go %d", n, len(got))
					}
					if d := firstBlockDiff(typ, c.nPerRow, x, got, want); d != "" {
						t.Errorf("%v %d×%d: %s", typ, c.rows, c.nPerRow, d)
					}
					compareDequantize(t, lib, typ, want, len(x))
				})
			}
		}
	}
}

func compareDequantize(t *testing.T, lib *ggmlref.Lib, typ Type, q []byte, n int) {
	t.Helper()
	gotF := make([]float32, n)
	wantF := make([]float32, n)
	if err := Dequantize(typ, gotF, q); err != nil {
		t.Fatal(err)
	}
	if !lib.Row(dequantizeSym(typ), unsafe.Pointer(&wantF[0]), unsafe.Pointer(&q[0]), int64(n)) {
		t.Logf("%s not exported; dequantize not compared", dequantizeSym(typ))
		return
	}
	for i := range gotF {
		if math.Float32bits(gotF[i]) != math.Float32bits(wantF[i]) {
			t.Errorf("dequantize %v: value %d is %08x (%g), ggml %08x (%g)", typ, i,
				math.Float32bits(gotF[i]), gotF[i], math.Float32bits(wantF[i]), wantF[i])
			return
		}
	}
}

// TestRefDequantizeRandom feeds random bytes (with finite fp16 scales) to both
// dequantizers.
func TestRefDequantizeRandom(t *testing.T) {
	lib := openRef(t)
	r := rand.New(rand.NewPCG(42, 7))
	for _, typ := range []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K} {
		const blocks = 512
		q := make([]byte, blocks*typ.TypeSize())
		for i := range q {
			q[i] = byte(r.Uint32())
		}
		// Keep the fp16 scales finite: clear the top exponent bit when it would
		// make the exponent all ones.
		ts := int(typ.TypeSize())
		for b := 0; b < blocks; b++ {
			offs := []int{0, 2}
			if typ == Q6_K {
				offs = []int{208}
			} else if typ == Q8_0 || typ == Q4_0 || typ == Q5_0 {
				offs = []int{0}
			}
			for _, o := range offs {
				if q[b*ts+o+1]&0x7c == 0x7c {
					q[b*ts+o+1] &^= 0x40
				}
			}
		}
		compareDequantize(t, lib, typ, q, blocks*int(typ.BlockSize()))
	}
}

// TestRefF16 compares the F16 and BF16 conversions: every binary16 value
// widened, and a sweep of float32 values (every sign and exponent, with
// mantissas that are exact, just below, at and just above each rounding
// tie) narrowed. GANTRY_GGML_EXHAUSTIVE=1 narrows all 2^32 float32 values.
func TestRefF16(t *testing.T) {
	lib := openRef(t)

	h := make([]uint16, 1<<16)
	for i := range h {
		h[i] = uint16(i)
	}
	want := make([]float32, len(h))
	if !lib.Row("ggml_fp16_to_fp32_row", unsafe.Pointer(&want[0]), unsafe.Pointer(&h[0]), int64(len(h))) {
		t.Fatal("ggml_fp16_to_fp32_row not exported")
	}
	raw := make([]byte, 2*len(h))
	for i, v := range h {
		raw[2*i], raw[2*i+1] = byte(v), byte(v>>8)
	}
	dec := make([]float32, len(h))
	DecodeF16(dec, raw)
	for i, v := range h {
		if g := math.Float32bits(FP16ToFP32(v)); g != math.Float32bits(want[i]) {
			t.Errorf("FP16ToFP32(%04x) = %08x, ggml %08x", v, g, math.Float32bits(want[i]))
		}
		if g := math.Float32bits(dec[i]); g != math.Float32bits(want[i]) {
			t.Errorf("DecodeF16(%04x) = %08x, ggml %08x", v, g, math.Float32bits(want[i]))
		}
	}

	var bits []uint32
	if os.Getenv("GANTRY_GGML_EXHAUSTIVE") != "" {
		const chunk = 1 << 24
		bits = make([]uint32, chunk)
		for base := uint64(0); base < 1<<32; base += chunk {
			for i := range bits {
				bits[i] = uint32(base) + uint32(i)
			}
			if !narrowAll(t, lib, bits) {
				return
			}
		}
		t.Logf("all 2^32 float32 values narrow alike")
		return
	}
	r := rand.New(rand.NewPCG(3, 5))
	for se := uint32(0); se < 512; se++ {
		top := se << 23
		for k := 1; k <= 23; k++ { // a tie at bit k−1, and its neighbours
			for rep := 0; rep < 8; rep++ {
				m := r.Uint32() & 0x7fffff &^ (1<<k - 1)
				tie := m | 1<<(k-1)
				bits = append(bits, top|m, top|tie, top|(tie-1), top|(tie+1), top|(m|(1<<k-1)))
			}
		}
		for rep := 0; rep < 64; rep++ {
			bits = append(bits, top|r.Uint32()&0x7fffff)
		}
	}
	narrowAll(t, lib, bits)
	t.Logf("%d float32 values narrow alike to F16 and BF16", len(bits))
}

// narrowAll compares FP32ToFP16 and FP32ToBF16 with ggml_fp32_to_fp16_row,
// ggml_fp32_to_bf16_row_ref and ggml_fp32_to_bf16_row on the given bit
// patterns, and reports whether all were equal.
func narrowAll(t *testing.T, lib *ggmlref.Lib, bits []uint32) bool {
	t.Helper()
	n := int64(len(bits))
	src := unsafe.Pointer(&bits[0]) // float32 bit patterns
	fns := []struct {
		sym string
		fn  func(float32) uint16
	}{
		{"ggml_fp32_to_fp16_row", FP32ToFP16},
		{"ggml_fp32_to_bf16_row_ref", FP32ToBF16},
		{"ggml_fp32_to_bf16_row", FP32ToBF16},
	}
	ok := true
	out := make([]uint16, len(bits))
	for _, f := range fns {
		if !lib.Row(f.sym, unsafe.Pointer(&out[0]), src, n) {
			t.Logf("%s not exported; not compared", f.sym)
			continue
		}
		bad := 0
		for i, b := range bits {
			if g := f.fn(math.Float32frombits(b)); g != out[i] {
				if bad < 5 {
					t.Errorf("%s: %08x gives %04x in Go, %04x in ggml", f.sym, b, g, out[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d values differ", f.sym, bad, len(bits))
			ok = false
		}
	}
	return ok
}
