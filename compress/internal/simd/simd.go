package simd

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// Level is an instruction set the kernels may use.
type Level int32

// The levels, in increasing order.
const (
	Scalar Level = iota
	SSE2
	AVX2
	AVX512
	AVX512VBMI
)

var names = [...]string{"scalar", "sse2", "avx2", "avx512", "avx512vbmi"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(names) {
		return names[l]
	}
	return fmt.Sprintf("Level(%d)", int32(l))
}

// Parse reads a level name as String writes it.
func Parse(s string) (Level, error) {
	for i, n := range names {
		if s == n {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("simd level %q: want scalar, sse2, avx2, avx512 or avx512vbmi", s)
}

// Detected is the best level this CPU and OS support, ignoring GANTRY_SIMD.
func Detected() Level { return detected }

var detected = detect()

func detect() Level {
	if runtime.GOARCH != "amd64" || purego {
		return Scalar
	}
	x := cpu.X86
	avx512 := x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL && x.HasAVX2 && x.HasF16C && x.HasFMA && x.HasBMI2
	switch {
	case avx512 && x.HasAVX512VBMI:
		return AVX512VBMI
	case avx512:
		return AVX512
	case x.HasAVX2 && x.HasF16C && x.HasFMA && x.HasBMI2 && x.HasAVX:
		return AVX2
	}
	return SSE2
}

var current atomic.Int32

func init() {
	l := detected
	if s := os.Getenv("GANTRY_SIMD"); s != "" {
		if want, err := Parse(s); err == nil && want < l {
			l = want
		}
	}
	current.Store(int32(l))
}

// Current is the level kernels use now.
func Current() Level { return Level(current.Load()) }

// Supported lists every level from Scalar up to Detected.
func Supported() []Level {
	var ls []Level
	for l := Scalar; l <= detected; l++ {
		ls = append(ls, l)
	}
	return ls
}

// Set makes kernels use l and returns a function that restores the
// previous level. It panics if the CPU does not support l.
func Set(l Level) (restore func()) {
	if l < Scalar || l > detected {
		panic(fmt.Sprintf("simd: %v is not supported here (best: %v)", l, detected))
	}
	prev := current.Swap(int32(l))
	return func() { current.Store(prev) }
}
