// Package simd chooses, once per process, which instruction set the
// compress kernels use, and lets tests and benchmarks change it.
//
// Every kernel has a portable Go version, the oracle the others are tested
// against, and on amd64 one or more assembly versions. The levels are
// ordered: Scalar (portable Go only), SSE2 (the amd64 baseline), AVX2
// (AVX2 with F16C, FMA and BMI2), AVX512 (AVX-512 F, BW, DQ and VL) and
// AVX512VBMI (AVX512 with VBMI's byte permutes). A kernel runs its best
// version at or below Current; a kernel without a version for a level uses
// the next lower one it has.
//
// Current starts at the best level the CPU and OS support (from
// golang.org/x/sys/cpu), capped by the environment variable GANTRY_SIMD
// (scalar, sse2, avx2, avx512 or avx512vbmi), read once at start-up. Set
// changes it for tests and benchmarks; it is safe to call while kernels
// run (each kernel call reads the level once).
package simd
