package ggml

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// benchLevels runs f as one sub-benchmark per simd level this CPU
// supports, so every SIMD path is measured against the scalar path in the
// same run.
func benchLevels(b *testing.B, f func(b *testing.B)) {
	for _, l := range simd.Supported() {
		b.Run(l.String(), func(b *testing.B) {
			defer simd.Set(l)()
			f(b)
		})
	}
}

// The kernel benchmarks quantize 1 Mi float32 values (4 MiB of F32 input,
// which is what b.SetBytes counts, so MB/s is F32 input bytes) and also
// report Mparams/s, the unit QUANT-NOTES uses for llama-quantize.
// BenchmarkCopy moves the same 4 MiB with copy() as a memory-bandwidth
// baseline.
const benchN = 1 << 20

func BenchmarkQuantize(b *testing.B) { benchQuantize(b, benchN) }

// BenchmarkQuantizeTile quantizes one tile of 4096 values over and over,
// as the pipeline does (compress/ggufquant's tileValues): the input stays
// in L1/L2, so this is the kernel's own speed, where BenchmarkQuantize's
// 4 MiB also measure the cache's bandwidth.
func BenchmarkQuantizeTile(b *testing.B) { benchQuantize(b, 4096) }

// BenchmarkQuantizeDequantizeTile is BenchmarkQuantizeTile for the types
// whose kernels also dequantize (QuantizeDequantize), as the pipeline
// calls them for the error report.
func BenchmarkQuantizeDequantizeTile(b *testing.B) {
	const n = 4096
	x := testValues(n, 3)
	y := make([]float32, n)
	for _, typ := range quantTypes {
		if !FusesDequantize(typ) {
			continue
		}
		b.Run(typ.String(), func(b *testing.B) {
			benchLevels(b, func(b *testing.B) {
				size, _ := typ.RowSize(n)
				dst := make([]byte, size)
				b.SetBytes(4 * n)
				for i := 0; i < b.N; i++ {
					if _, err := QuantizeDequantize(typ, dst, y, x); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
			})
		})
	}
}

// benchQuantize quantizes n values to every type at every level.
func benchQuantize(b *testing.B, n int) {
	x := testValues(n, 3)
	for _, typ := range quantTypes {
		b.Run(typ.String(), func(b *testing.B) {
			benchLevels(b, func(b *testing.B) {
				size, _ := typ.RowSize(int64(n))
				dst := make([]byte, size)
				b.SetBytes(4 * int64(n))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := Quantize(typ, dst, x); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
			})
		})
	}
}

func BenchmarkDequantize(b *testing.B) {
	x := testValues(benchN, 3)
	for _, typ := range quantTypes {
		b.Run(typ.String(), func(b *testing.B) {
			benchLevels(b, func(b *testing.B) {
				n, _ := typ.RowSize(benchN)
				q := make([]byte, n)
				if _, err := Quantize(typ, q, x); err != nil {
					b.Fatal(err)
				}
				y := make([]float32, benchN)
				b.SetBytes(4 * benchN)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := Dequantize(typ, y, q); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(benchN)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
			})
		})
	}
}

// BenchmarkDecodeF16 converts 1 Mi F16 values (2 MiB counted) to float32.
func BenchmarkDecodeF16(b *testing.B) {
	src := make([]byte, 2*benchN)
	EncodeF16(src, testValues(benchN, 4))
	benchDecode(b, src, DecodeF16)
}

// BenchmarkDecodeBF16 converts 1 Mi BF16 values (2 MiB counted) to float32.
func BenchmarkDecodeBF16(b *testing.B) {
	src := make([]byte, 2*benchN)
	for i, v := range testValues(benchN, 4) {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(math.Float32bits(v)>>16))
	}
	benchDecode(b, src, DecodeBF16)
}

// benchDecode runs decode of the benchN 16-bit values in src at every level.
func benchDecode(b *testing.B, src []byte, decode func(dst []float32, src []byte)) {
	dst := make([]float32, benchN)
	benchLevels(b, func(b *testing.B) {
		b.SetBytes(2 * benchN)
		for i := 0; i < b.N; i++ {
			decode(dst, src)
		}
		b.ReportMetric(float64(benchN)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
	})
}

// BenchmarkCopy is the memory-bandwidth baseline: copy() of 4 MiB.
func BenchmarkCopy(b *testing.B) {
	src := make([]byte, 4*benchN)
	dst := make([]byte, 4*benchN)
	b.SetBytes(4 * benchN)
	for i := 0; i < b.N; i++ {
		copy(dst, src)
	}
}
