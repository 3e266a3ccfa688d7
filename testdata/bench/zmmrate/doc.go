// Package zmmrate measures how fast this core runs independent 256-bit
// (YMM) and 512-bit (ZMM) float additions and multiplications: fifteen or
// sixteen independent chains, so the loops are bound by throughput, not
// latency. On a core that splits 512-bit operations in two, a ZMM
// operation takes about twice as long as a YMM one and moves no more
// floats per second; BENCHMARKS.md uses it to say which kernels can gain
// from AVX-512.
//
//	taskset -c 1 go test ./testdata/bench/zmmrate -bench . -count 3
package zmmrate
