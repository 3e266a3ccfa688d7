//go:build amd64

package zmmrate

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// The ns/op of each benchmark is one iteration; divide by 15 (YMM) or 16
// (ZMM) operations, and by 8 or 16 floats an operation.
func BenchmarkYMM(b *testing.B) {
	if !cpu.X86.HasAVX2 {
		b.Skip("no AVX2")
	}
	ymm(b.N)
}

func BenchmarkZMM(b *testing.B) {
	if !cpu.X86.HasAVX512F {
		b.Skip("no AVX-512")
	}
	zmm(b.N)
}
