package ggml

import (
	"bytes"
	"math"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// kSearchInputs returns super-blocks that exercise the transposed searches:
// ordinary weights, F16-rounded ones, constant, zero, one-signed, tiny,
// subnormal, huge (near MaxFloat32) and non-finite sub-blocks.
// kSearchKinds is the number of kinds of super-block kSearchInputs cycles through.
const kSearchKinds = 17

func kSearchInputs(nblocks int, seed uint64) []float32 {
	s := seed | 1
	next := func() uint64 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return s
	}
	unit := func() float32 { return float32(next()>>40)/float32(1<<24) - 0.5 }
	x := make([]float32, nblocks*QK_K)
	for b := 0; b < nblocks; b++ {
		blk := x[b*QK_K : (b+1)*QK_K]
		kind := b % kSearchKinds
		scale := float32(math.Pow(10, float64(int(next()%13))-8)) // 1e-8 … 1e4
		for i := range blk {
			v := (unit() + unit() + unit()) * scale
			if next()%64 == 0 {
				v *= 20 // outliers
			}
			blk[i] = v
		}
		sub := int(next() % 16) // a 16-value sub-block to disturb
		part := blk[16*sub : 16*sub+16]
		switch kind {
		case 1: // F16-rounded, as from a real checkpoint
			for i, v := range blk {
				blk[i] = FP16ToFP32(FP32ToFP16(v))
			}
		case 2: // one constant sub-block
			for i := range part {
				part[i] = 0.25
			}
		case 3: // zero sub-block
			for i := range part {
				part[i] = 0
			}
		case 4: // all positive
			for i, v := range blk {
				blk[i] = abs32(v) + 0.01
			}
		case 5: // all negative
			for i, v := range blk {
				blk[i] = -abs32(v) - 0.01
			}
		case 6: // tiny and subnormal
			for i := range blk {
				blk[i] *= 1e-37
			}
		case 7: // huge: range overflows float32
			for i := range blk {
				blk[i] = unit() * 3.3e38 * 2 // ±MaxFloat32 range
			}
		case 8: // few distinct values
			for i := range blk {
				blk[i] = float32(int(next()%5)-2) * 0.1
			}
		case 9: // NaN somewhere
			part[next()%16] = float32(math.NaN())
		case 10: // Inf somewhere
			part[next()%16] = float32(math.Inf(1 - 2*int(next()%2)))
		case 11: // one huge outlier in a sub-block
			part[next()%16] = 3e38
		case 12: // near-constant 32-value sub-block (max − min in the last bits)
			for i := range blk[32*(sub/2) : 32*(sub/2)+32] {
				blk[32*(sub/2)+i] = math.Float32frombits(0x3e800000 + uint32(next()%3))
			}
		case 15: // the same, negative and larger
			for i := range blk[32*(sub/2) : 32*(sub/2)+32] {
				blk[32*(sub/2)+i] = -math.Float32frombits(0x447a0000 + uint32(next()%4))
			}
		case 13: // ±0 mix
			for i := range part {
				if next()%2 == 0 {
					part[i] = float32(math.Copysign(0, -1))
				}
			}
		case 16: // one 32-value sub-block of subnormals two steps apart
			// among ordinary ones: its inverse scale overflows, so that lane
			// needs the scalar rounding at every candidate while the
			// others take the vector path
			for i := range blk[32*(sub/2) : 32*(sub/2)+32] {
				blk[32*(sub/2)+i] = math.Float32frombits(uint32(next() % 3))
			}
		case 14: // halves on the rounding boundaries
			for i := range blk {
				blk[i] = float32(int(next()%64)-32) * 0.5
			}
		}
	}
	return x
}

func TestKSearchMatchesScalar(t *testing.T) {
	n := 4096
	if testing.Short() {
		n = 512
	}
	x := kSearchInputs(n, 12345)
	for _, lv := range simd.Supported() {
		if lv < simd.SSE2 {
			continue // the reference itself
		}
		restore := simd.Set(lv)
		kSearchMatchesScalar(t, lv, x)
		restore()
	}
}

// kSearchMatchesScalar compares the K-quants at the current level lv with
// the portable Go code on x.
func kSearchMatchesScalar(t *testing.T, lv simd.Level, x []float32) {
	n := len(x) / QK_K
	for _, typ := range []Type{Q4_K, Q5_K, Q6_K} {
		size, _ := typ.RowSize(int64(len(x)))
		got := make([]byte, size)
		want := make([]byte, size)
		if _, err := Quantize(typ, got, x); err != nil {
			t.Fatal(err)
		}
		// The reference: the scalar searches and every other step in Go.
		restore := simd.Set(simd.Scalar)
		_, err := Quantize(typ, want, x)
		restore()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			bs := int(size) / n
			for b := 0; b < n; b++ {
				if !bytes.Equal(got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs]) {
					t.Errorf("%v at %v: block %d (kind %d) differs from the scalar search", typ, lv, b, b%kSearchKinds)
					break
				}
			}
		}
	}
}

func TestKSearchKernelsMatchGo(t *testing.T) {
	x := kSearchInputs(64, 777)
	for b := 0; b < 64; b++ {
		blk := x[b*QK_K : (b+1)*QK_K]
		if !allFinite(blk) {
			continue
		}
		var (
			t1, t2 qkScratch
			q1, q2 q6Scratch
		)
		for i, v := range blk {
			t1.xt[i], t1.wt[i] = v, abs32(v)+0.5
			q1.xt[i], q1.wt[i], q1.wvt[i] = v, v*v, v*v*v
		}
		for k := 0; k < 8; k++ {
			t1.ln.isc[k] = float32(k+1) * 0.37
			t1.ln.mn[k] = -float32(k) * 0.01
			t1.ln.ts[k] = float32(k) * 0.11
			t1.ln.tm[k] = -float32(k) * 0.02
		}
		t1.ln.nmax = [4]float32{15, 15, 15, 15}
		for k := 0; k < 16; k++ {
			q1.isc[k] = float32(k-8) * 3.3
		}
		t2, q2 = t1, q1
		qkx2Sums(&t1.xt, &t1.wt, &t1.fq, &t1.ln)
		qkx2SumsGo(&t2.xt, &t2.wt, &t2.fq, &t2.ln)
		qkx2Errors(&t1.xt, &t1.wt, &t1.fq, &t1.ln)
		qkx2ErrorsGo(&t2.xt, &t2.wt, &t2.fq, &t2.ln)
		qx6Sums(&q1.xt, &q1.wt, &q1.wvt, &q1.isc, &q1.sLX, &q1.sL2)
		qx6SumsGo(&q2.xt, &q2.wt, &q2.wvt, &q2.isc, &q2.sLX, &q2.sL2)
		if !sameBits(t1.fq[:], t2.fq[:]) || !sameBits(t1.ln.sL[:], t2.ln.sL[:]) || !sameBits(t1.ln.sL2[:], t2.ln.sL2[:]) ||
			!sameBits(t1.ln.sXL[:], t2.ln.sXL[:]) || !sameBits(t1.ln.ce[:], t2.ln.ce[:]) {
			t.Fatalf("block %d: qkx2 kernels differ from the Go versions", b)
		}
		if !sameBits(q1.sLX[:], q2.sLX[:]) || !sameBits(q1.sL2[:], q2.sL2[:]) {
			t.Fatalf("block %d: qx6Sums differs from the Go version", b)
		}
	}
}

func sameBits(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestDecodeF16AllValues decodes every binary16 pattern, in runs that mix
// normal and special values and at every alignment, against FP16ToFP32.
func TestDecodeF16AllValues(t *testing.T) {
	const n = 1 << 16
	src := make([]byte, 2*n+2*17)
	want := make([]uint32, n+17)
	fill := func(order func(i int) uint16) {
		for i := 0; i < len(want); i++ {
			h := order(i)
			src[2*i], src[2*i+1] = byte(h), byte(h>>8)
			want[i] = math.Float32bits(FP16ToFP32(h))
		}
	}
	check := func(name string) {
		for off := 0; off < 9; off++ {
			m := n + 17 - off - off%3
			dst := make([]float32, m)
			DecodeF16(dst, src[2*off:2*off+2*m])
			for i := range dst {
				if got := math.Float32bits(dst[i]); got != want[off+i] {
					t.Fatalf("%s, offset %d: value %d decodes to %#x, want %#x", name, off, off+i, got, want[off+i])
				}
			}
		}
	}
	fill(func(i int) uint16 { return uint16(i) })
	check("sequential")
	fill(func(i int) uint16 { return uint16(i * 40503) })
	check("scattered")
}
