//go:build !purego

package ctensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// TestDecodeAVX2 checks decodeAVX2 on its own: every BF16 and F16 bit
// pattern and random F32 ones (specials among them), in groups of 8, 32
// and the whole row, against DecodeFloat32, the Go finite check and absMax.
func TestDecodeAVX2(t *testing.T) {
	if simd.Detected() < simd.AVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(5, 5))
	f32 := make([]byte, 4<<16)
	for i := 0; i < 1<<16; i++ {
		v := rng.Uint32()
		switch i % 97 {
		case 0:
			v = 0x7f800000 | v&0x80000000 // ±Inf
		case 1:
			v = 0x7f7fffff | v&0x80000000 // ±MaxFloat32
		case 2:
			v &= 0x807fffff // subnormal
		}
		binary.LittleEndian.PutUint32(f32[4*i:], v)
	}
	seq16 := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(seq16[2*i:], uint16(i))
	}
	for _, tc := range []struct {
		dt   st.DType
		mode int
		src  []byte
	}{{st.BF16, decBF16, seq16}, {st.F16, decF16, seq16}, {st.F32, decF32, f32}, {st.F32, decScan, f32}} {
		n := 1 << 16
		want := make([]float32, n)
		st.DecodeFloat32(want, tc.src, tc.dt)
		for _, group := range []int{8, 32, 4096} {
			for lo := 0; lo < n; lo += 4096 {
				x := make([]float32, 4096)
				gmax := make([]float32, 4096/group)
				var dst *float32
				if tc.mode != decScan {
					dst = &x[0]
				}
				ok := decodeAVX2(dst, &tc.src[lo*int(tc.dt.Size())], 4096, group, &gmax[0], tc.mode)
				ws := want[lo : lo+4096]
				fin := true
				for _, v := range ws {
					fin = fin && !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
				}
				if ok != fin {
					t.Fatalf("%s mode %d group %d at %d: finite %v, want %v", tc.dt, tc.mode, group, lo, ok, fin)
				}
				if tc.mode != decScan {
					if i := bitsEqual32(x, ws); i >= 0 && (fin || !math.IsNaN(float64(ws[i]))) {
						t.Fatalf("%s group %d: x[%d] = %#08x, want %#08x", tc.dt, group, lo+i, math.Float32bits(x[i]), math.Float32bits(ws[i]))
					}
				}
				if !fin {
					continue
				}
				for g := range gmax {
					if m := absMax(ws[g*group : (g+1)*group]); math.Float32bits(gmax[g]) != math.Float32bits(m) {
						t.Fatalf("%s mode %d group %d at %d: max %g, want %g", tc.dt, tc.mode, group, lo+g*group, gmax[g], m)
					}
				}
			}
		}
	}
	// One non-finite value in an otherwise finite row, at every position.
	for _, bad := range []float32{inf32, -inf32, nan32} {
		for _, dt := range []st.DType{st.BF16, st.F16, st.F32} {
			for p := 0; p < 64; p++ {
				x := make([]float32, 64)
				for i := range x {
					x[i] = float32(i%13) - 6
				}
				x[p] = bad
				src := encodeRow(x, dt)
				gmax := make([]float32, 2)
				if decodeAVX2(&x[0], &src[0], 64, 32, &gmax[0], decMode(dt)) {
					t.Errorf("%s: %g at %d counted finite", dt, bad, p)
				}
				if dt == st.F32 && decodeAVX2(nil, &src[0], 64, 32, &gmax[0], decScan) {
					t.Errorf("scan: %g at %d counted finite", bad, p)
				}
			}
		}
	}
}
