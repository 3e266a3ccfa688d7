package ctensors

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
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

var (
	negZero = float32(math.Copysign(0, -1))
	nan32   = float32(math.NaN())
	inf32   = float32(math.Inf(1))
)

// fp8Mids returns the midpoints between consecutive non-negative E4M3
// values, the values just either side of them, and the values themselves:
// with scale 1 (max|x| = 448) they are the rounding points of the cast.
func fp8Mids() []float32 {
	var v []float32
	for c := 0; c < 0x7e; c++ {
		a, b := st.F8E4M3ToF32(uint8(c)), st.F8E4M3ToF32(uint8(c+1))
		m := (a + b) / 2
		v = append(v, a, m, math.Nextafter32(m, 0), math.Nextafter32(m, 1000))
	}
	return append(v, 448, math.Nextafter32(448, 0), math.Nextafter32(448, 1000), 464, 479.9, 480)
}

// adversarialRows returns rows of n values that stress the kernels: ±0,
// all-zero rows, ties and near-ties at the rounding points of every scheme,
// subnormals, magnitudes near MaxFloat32, a wide dynamic range (for the
// order of the float64 sums), and random rows, some with a NaN or ±Inf
// (finite is false to leave those out). Every row has n values.
func adversarialRows(rng *rand.Rand, n int, finite bool) [][]float32 {
	var rows [][]float32
	row := func(f func(j int) float32) {
		r := make([]float32, n)
		for j := range r {
			r[j] = f(j)
		}
		rows = append(rows, r)
	}
	pick := func(vals []float32) func(j int) float32 {
		off := rng.IntN(len(vals))
		return func(j int) float32 {
			v := vals[(j+off)%len(vals)]
			if (j/len(vals))%2 == 1 || rng.IntN(4) == 0 {
				v = -v
			}
			return v
		}
	}
	row(func(j int) float32 { return 0 })
	row(func(j int) float32 { return negZero })
	row(func(j int) float32 { return []float32{0, negZero}[j%2] })
	row(func(j int) float32 { return 1 })
	// Scale 1 for int8 (max 127.5), ties at every half.
	row(func(j int) float32 {
		if j == 0 {
			return 127.5
		}
		return float32(j%256-128) + 0.5
	})
	// Scale 1 for int4 (max 7.5 in every group of 8), ties at every half.
	row(func(j int) float32 {
		if j%8 == 0 {
			return -7.5
		}
		return float32(j%16-8) + 0.5
	})
	// Scale 2^-10 for int4 and int8: ties after an exact division.
	row(func(j int) float32 {
		if j%32 == 0 {
			return 7.5 / 1024
		}
		return (float32(j%15-7) + 0.5) / 1024
	})
	// FP8 scale 1 (max 448) and 2^-20: every rounding point of the cast.
	mids := fp8Mids()
	row(func(j int) float32 {
		if j == 0 {
			return 448
		}
		return pick(mids)(j)
	})
	row(func(j int) float32 {
		if j == n-1 {
			return -448.0 / (1 << 20)
		}
		return pick(mids)(j) / (1 << 20)
	})
	// Subnormal inputs: all tiny (a subnormal or zero scale), mixed with
	// normal ones, and subnormal results of x/s.
	row(func(j int) float32 { return math.Float32frombits(uint32(j%64 + 1)) })
	row(func(j int) float32 { return math.Float32frombits(uint32(rng.IntN(1 << 23))) })
	row(func(j int) float32 { return float32(j%5-2) * 1e-41 })
	row(func(j int) float32 {
		if j%7 == 0 {
			return float32(j%3-1) * 3
		}
		return math.Float32frombits(uint32(rng.IntN(1<<23))) * float32(j%3-1)
	})
	row(func(j int) float32 { return float32(j%9-4) * 1.5e-38 })
	// A subnormal scale far from max|x|/448: max|x| = 1000·2^-149 gives
	// the FP8 scale 2·2^-149, and x/s up to 500 must saturate.
	row(func(j int) float32 {
		if j == n/2 {
			return -math.Float32frombits(1000)
		}
		return math.Float32frombits(uint32(rng.IntN(1001))) * float32(1-2*rng.IntN(2))
	})
	// Huge magnitudes.
	row(func(j int) float32 { return []float32{math.MaxFloat32, -math.MaxFloat32, 1, 0}[j%4] })
	row(func(j int) float32 { return float32(j%7-3) * 1.1e38 })
	row(func(j int) float32 { return math.Nextafter32(math.MaxFloat32, 0) * float32(1-2*(j%2)) })
	// A wide dynamic range: any reordering of the sums shows.
	row(func(j int) float32 {
		return float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(120)-60)) * float32(1-2*rng.IntN(2))
	})
	// Random rows, ties mixed in.
	for i := 0; i < 12; i++ {
		scale := float32(math.Pow(10, rng.Float64()*12-6))
		row(func(j int) float32 {
			v := float32(rng.NormFloat64()) * scale
			switch rng.IntN(16) {
			case 0:
				v = float32(math.Round(float64(v*4))) / 4
			case 1:
				v *= 8 // an outlier
			}
			return v
		})
	}
	// Random finite bit patterns.
	row(func(j int) float32 {
		for {
			v := math.Float32frombits(rng.Uint32())
			if v-v == 0 {
				return v
			}
		}
	})
	if !finite {
		for _, bad := range []float32{nan32, inf32, -inf32, float32(math.Float32frombits(0xffc00001))} {
			for _, pos := range []int{0, n / 2, n - 1} {
				row(func(j int) float32 {
					if j == pos {
						return bad
					}
					return float32(j%17-8) * 0.25
				})
			}
		}
	}
	return rows
}

func bitsEqual32(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func statsEqual(a, b quality.Stats) bool {
	f := math.Float64bits
	return a.N == b.N && f(a.SumXX) == f(b.SumXX) && f(a.SumYY) == f(b.SumYY) &&
		f(a.SumXY) == f(b.SumXY) && f(a.SumEE) == f(b.SumEE) && f(a.MaxAbs) == f(b.MaxAbs)
}

type kernelCase struct {
	name      string
	fp8       bool
	bits      int
	group     int // 0: the row length
	scaleType st.DType
}

var kernelCases = []kernelCase{
	{"fp8", true, 8, 0, st.F32},
	{"int8/bf16", false, 8, 0, st.BF16},
	{"int8/f16", false, 8, 0, st.F16},
	{"int8/f32", false, 8, 0, st.F32},
	{"int4/g128", false, 4, 128, st.BF16},
	{"int4/g64/f16", false, 4, 64, st.F16},
	{"int4/g32/f32", false, 4, 32, st.F32},
	{"int4/channel", false, 4, 0, st.BF16},
}

// encodeRow turns x into input bytes of type dt, and x into what those
// bytes decode to.
func encodeRow(x []float32, dt st.DType) []byte {
	src := make([]byte, len(x)*int(dt.Size()))
	if err := st.EncodeFloat32(src, x, dt); err != nil {
		panic(err)
	}
	return src
}

// TestRowEveryLevel runs the per-row path of Convert at every level on
// adversarial rows of every input type and compares it with rowGo: the
// decoded row, the index of the first non-finite value, the output bytes,
// scales, dequantized values and statistics, bit for bit.
func TestRowEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		vec := 0
		for _, allow := range []bool{false, true} {
			for _, kc := range kernelCases {
				for _, n := range []int{8, 16, 40, 128, 256, 1024, 4096, 4100, 12} {
					group := kc.group
					if group == 0 {
						group = n
					}
					if n%group != 0 || (!kc.fp8 && n%(32/kc.bits) != 0) {
						continue
					}
					rng := rand.New(rand.NewPCG(uint64(n), uint64(len(kc.name))))
					for ri, x0 := range adversarialRows(rng, n, false) {
						for _, dt := range []st.DType{st.BF16, st.F16, st.F32, st.F64} {
							src := encodeRow(x0, dt)
							k := rowKernel{dt: dt, fp8: kc.fp8, bits: kc.bits, group: group, scaleType: kc.scaleType, allow: allow}
							outLen := n
							if !kc.fp8 {
								outLen = n * kc.bits / 8
							}
							run := func(f func(out []byte, scales []float32, b *rowBuf, src []byte, stats *quality.Stats) (int, error)) (out []byte, scales []float32, b rowBuf, s quality.Stats, bad int) {
								out = make([]byte, outLen)
								scales = make([]float32, n/group)
								b = rowBuf{x: make([]float32, n), y: make([]float32, n), packed: make([]uint32, n*kc.bits/32)}
								s = quality.Stats{N: 3, SumXX: 1.25, SumYY: 1, SumXY: 0.5, SumEE: 1e-3, MaxAbs: 0.125}
								bad, err := f(out, scales, &b, src, &s)
								if err != nil {
									t.Fatal(err)
								}
								return
							}
							o1, s1, b1, st1, bad1 := run(k.row)
							o0, s0, b0, st0, bad0 := run(k.rowGo)
							where := fmt.Sprintf("%s allow=%v n=%d row %d %s", kc.name, allow, n, ri, dt)
							if bad1 != bad0 {
								t.Fatalf("%s: first non-finite at %d, want %d", where, bad1, bad0)
							}
							if i := bitsEqual32(b1.x, b0.x); i >= 0 {
								t.Fatalf("%s: x[%d] = %#08x, want %#08x", where, i, math.Float32bits(b1.x[i]), math.Float32bits(b0.x[i]))
							}
							if bad0 >= 0 && !allow {
								continue
							}
							if !bytes.Equal(o1, o0) {
								i := 0
								for o1[i] == o0[i] {
									i++
								}
								t.Fatalf("%s: output byte %d = %#02x, want %#02x (x near %v)", where, i, o1[i], o0[i], b0.x[max(0, i*8/kc.bits-8):min(n, i*8/kc.bits+8)])
							}
							if i := bitsEqual32(s1, s0); i >= 0 {
								t.Fatalf("%s: scale %d = %g, want %g", where, i, s1[i], s0[i])
							}
							if i := bitsEqual32(b1.y, b0.y); i >= 0 {
								t.Fatalf("%s: y[%d] = %#08x, want %#08x (x %g)", where, i, math.Float32bits(b1.y[i]), math.Float32bits(b0.y[i]), b0.x[i])
							}
							if !statsEqual(st1, st0) {
								t.Fatalf("%s: stats\n%+v, want\n%+v", where, st1, st0)
							}
							if l >= simd.AVX2 && bad0 < 0 && dt != st.F64 && n%8 == 0 {
								vec++
							}
						}
					}
				}
			}
		}
		if l >= simd.AVX2 && vec == 0 {
			t.Error("no row went through the vector kernels")
		}
	})
}

// TestRowTakesVectorPath checks which rows the AVX2 path takes: finite rows
// of BF16, F16 and F32 with groups of a multiple of 8, and no others.
func TestRowTakesVectorPath(t *testing.T) {
	if simd.Detected() < simd.AVX2 {
		t.Skip("no AVX2")
	}
	defer simd.Set(simd.AVX2)()
	for _, tc := range []struct {
		dt    st.DType
		n     int
		group int
		bad   bool
		want  bool
	}{
		{st.BF16, 64, 64, false, true},
		{st.F16, 64, 32, false, true},
		{st.F32, 64, 64, false, true},
		{st.F64, 64, 64, false, false},
		{st.BF16, 12, 12, false, false},
		{st.BF16, 64, 64, true, false},
	} {
		x := make([]float32, tc.n)
		for i := range x {
			x[i] = float32(i) - 7.25
		}
		if tc.bad {
			x[5] = inf32
		}
		k := rowKernel{dt: tc.dt, fp8: true, bits: 8, group: tc.group, scaleType: st.F32}
		b := rowBuf{x: make([]float32, tc.n), y: make([]float32, tc.n)}
		var s quality.Stats
		done, _, _ := k.rowVec(make([]byte, tc.n), make([]float32, tc.n/tc.group), &b, encodeRow(x, tc.dt), &s)
		if done != tc.want {
			t.Errorf("%s n=%d group=%d non-finite=%v: vector path %v, want %v", tc.dt, tc.n, tc.group, tc.bad, done, tc.want)
		}
	}
}

// TestQuantizeRowsEveryLevel checks the exported QuantizeFP8Row and
// QuantizeIntRow at every level against their Go versions, with and
// without y, on row lengths that leave a tail for the Go code.
func TestQuantizeRowsEveryLevel(t *testing.T) {
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, n := range []int{1, 7, 8, 9, 24, 31, 64, 130, 1024} {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			for ri, x := range adversarialRows(rng, n, false) {
				for _, withY := range []bool{true, false} {
					where := fmt.Sprintf("n=%d row %d y=%v", n, ri, withY)
					var y0, y1 []float32
					if withY {
						y0, y1 = make([]float32, n), make([]float32, n)
					}
					q0, q1 := make([]byte, n), make([]byte, n)
					s0 := quantizeFP8RowGo(q0, y0, x)
					s1 := QuantizeFP8Row(q1, y1, x)
					if math.Float32bits(s0) != math.Float32bits(s1) || !bytes.Equal(q0, q1) || bitsEqual32(y1, y0) >= 0 {
						t.Fatalf("fp8 %s: scale %g codes % x y %v\nwant %g % x %v", where, s1, q1, y1, s0, q0, y0)
					}
					for _, c := range []struct{ bits, group int }{{8, n}, {4, n}, {4, 32}, {4, 8}, {8, 64}} {
						if c.group == 0 || n%c.group != 0 || n%(32/c.bits) != 0 {
							continue
						}
						for _, stype := range []st.DType{st.BF16, st.F16, st.F32} {
							p0, p1 := make([]uint32, n*c.bits/32), make([]uint32, n*c.bits/32)
							sc0, sc1 := make([]float32, n/c.group), make([]float32, n/c.group)
							quantizeIntRowGo(p0, sc0, y0, x, c.bits, c.group, stype)
							QuantizeIntRow(p1, sc1, y1, x, c.bits, c.group, stype)
							if fmt.Sprint(p0) != fmt.Sprint(p1) || bitsEqual32(sc1, sc0) >= 0 || bitsEqual32(y1, y0) >= 0 {
								t.Fatalf("int%d g%d %s %s: packed %x scales %v y %v\nwant %x %v %v", c.bits, c.group, stype, where, p1, sc1, y1, p0, sc0, y0)
							}
						}
					}
				}
			}
		}
	})
}

// TestAddStatsSplit checks that statAcc.add continued over a row split at
// even points gives the sums of one call, which the vector kernels rely on.
func TestAddStatsSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := make([]float32, 101), make([]float32, 101)
	for i := range x {
		x[i] = float32(math.Ldexp(rng.NormFloat64(), rng.IntN(40)-20))
		y[i] = x[i] * (1 + float32(rng.NormFloat64())/64)
	}
	var want quality.Stats
	want.Add(x, y)
	for _, cut := range []int{0, 2, 8, 50, 100} {
		var a statAcc
		a.add(x[:cut], y[:cut])
		a.add(x[cut:], y[cut:])
		var got, one quality.Stats
		a.merge(&got, len(x))
		addStats(&one, x, y)
		if !statsEqual(got, one) {
			t.Errorf("cut %d: %+v, want %+v", cut, got, one)
		}
		if got.N != want.N || got.MaxAbs != want.MaxAbs || math.Abs(got.SumEE-want.SumEE) > 1e-12*want.SumEE {
			t.Errorf("cut %d: %+v far from quality.Stats.Add %+v", cut, got, want)
		}
	}
}

// TestScalarFallbackForced checks that at the Scalar level the portable code
// is what runs: the vector path declines every row, and Convert's output is
// the Go reference's.
func TestScalarFallbackForced(t *testing.T) {
	defer simd.Set(simd.Scalar)()
	if simd.Current() != simd.Scalar {
		t.Fatalf("level %v after Set(Scalar)", simd.Current())
	}
	x := make([]float32, 256)
	for i := range x {
		x[i] = float32(i%19) - 9.5
	}
	for _, dt := range []st.DType{st.BF16, st.F16, st.F32} {
		k := rowKernel{dt: dt, bits: 4, group: 128, scaleType: st.BF16}
		b := rowBuf{x: make([]float32, 256), y: make([]float32, 256), packed: make([]uint32, 32)}
		var s quality.Stats
		if done, _, _ := k.rowVec(make([]byte, 128), make([]float32, 2), &b, encodeRow(x, dt), &s); done {
			t.Errorf("%s: the vector path ran at the Scalar level", dt)
		}
		out0, out1 := make([]byte, 128), make([]byte, 128)
		var s0, s1 quality.Stats
		sc0, sc1 := make([]float32, 2), make([]float32, 2)
		k.rowGo(out0, sc0, &b, encodeRow(x, dt), &s0)
		k.row(out1, sc1, &b, encodeRow(x, dt), &s1)
		if !bytes.Equal(out0, out1) || !statsEqual(s0, s1) {
			t.Errorf("%s: Scalar level differs from the Go reference", dt)
		}
	}
}

// TestConvertEveryLevel converts generated checkpoints of every input type
// with every scheme at every level and checks that the files and the
// quality report are the same as at the Scalar level, and that a NaN gives
// the same error (or, with AllowNonFinite, the same output).
func TestConvertEveryLevel(t *testing.T) {
	type result struct {
		tree map[string][]byte
		rep  quality.Report
		err  string
	}
	cfgs := []stgen.Config{
		{Layers: 1, Hidden: 128, Intermediate: 384, Vocab: 256, Heads: 2, Seed: 3, Outliers: 64},
		{Layers: 1, Hidden: 64, Intermediate: 192, Vocab: 128, Heads: 2, Seed: 4, DType: st.F16, Outliers: 32},
		{Layers: 1, Hidden: 64, Intermediate: 128, Vocab: 128, Heads: 2, Seed: 5, DType: st.F32, Shards: 2},
	}
	var ins []string
	for i, cfg := range cfgs {
		in := filepath.Join(t.TempDir(), fmt.Sprint("in", i))
		if err := stgen.WriteLlamaCheckpoint(context.Background(), in, cfg); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	// A copy of the first with a NaN and an Inf in a quantized tensor.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), bad, cfgs[0]); err != nil {
		t.Fatal(err)
	}
	poke(t, filepath.Join(bad, "model.safetensors"), "model.layers.0.mlp.up_proj.weight", 3*128+77, nan32)
	poke(t, filepath.Join(bad, "model.safetensors"), "model.layers.0.mlp.up_proj.weight", 5*128+1, -inf32)
	ins = append(ins, bad)
	opts := []Options{
		{Scheme: "fp8"}, {Scheme: "int8"}, {Scheme: "int4"}, {Scheme: "int4", GroupSize: 32},
		{Scheme: "int4", GroupSize: -1}, {Scheme: "fp8", QuantizeLMHead: true, Threads: 1},
		{Scheme: "int4", AllowNonFinite: true}, {Scheme: "fp8", AllowNonFinite: true},
	}
	results := map[string]result{}
	eachLevel(t, func(t *testing.T, l simd.Level) {
		for _, in := range ins {
			for _, o := range opts {
				key := fmt.Sprintf("%s %s g%d lmhead=%v allow=%v", filepath.Base(in), o.Scheme, o.GroupSize, o.QuantizeLMHead, o.AllowNonFinite)
				out := filepath.Join(t.TempDir(), "out")
				var r result
				rep, err := Convert(context.Background(), in, out, o)
				if err != nil {
					r.err = strings.ReplaceAll(err.Error(), in, "IN")
				} else {
					r.tree, r.rep = treeBytes(t, out), rep
				}
				ref, ok := results[key]
				if !ok {
					results[key] = r
					continue
				}
				if r.err != ref.err {
					t.Fatalf("%s: error %q, want %q", key, r.err, ref.err)
				}
				if len(r.tree) != len(ref.tree) {
					t.Fatalf("%s: %d files, want %d", key, len(r.tree), len(ref.tree))
				}
				for name, b := range ref.tree {
					if !bytes.Equal(r.tree[name], b) {
						t.Fatalf("%s: %s differs", key, name)
					}
				}
				if len(r.rep.Tensors) != len(ref.rep.Tensors) {
					t.Fatalf("%s: %d report rows, want %d", key, len(r.rep.Tensors), len(ref.rep.Tensors))
				}
				for i, row := range r.rep.Tensors {
					if !statsEqual(row.Stats, ref.rep.Tensors[i].Stats) || row.Name != ref.rep.Tensors[i].Name {
						t.Fatalf("%s: report row %s %+v, want %+v", key, row.Name, row.Stats, ref.rep.Tensors[i].Stats)
					}
				}
			}
		}
	})
	for key, r := range results {
		if strings.HasPrefix(key, "bad") && !strings.Contains(key, "allow=true") && !strings.Contains(r.err, "NaN at [3, 77]") {
			t.Errorf("%s: error %q does not name the NaN at [3, 77]", key, r.err)
		}
	}
}
