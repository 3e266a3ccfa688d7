package ctensors

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// Kernel benchmarks: one 1 MiB block of BF16 input (128 rows × 4096),
// through the whole per-block path of Convert (rowKernel.row): decode to
// float32, finite check, quantize, dequantize, error statistics, once per
// SIMD level (BenchmarkKernel/fp8/scalar is the Go code, /fp8/avx2 the
// vector kernels). Throughput is in bytes of BF16 input.
// BenchmarkKernel/copy is the baseline: a plain copy of the same bytes.
func BenchmarkKernel(b *testing.B) {
	const rows, cols = 128, 4096
	x := make([]float32, rows*cols)
	stgen.Values(stgen.Config{Seed: 1, Outliers: 512}, "bench.weight", 0, x)
	in := make([]byte, 2*len(x))
	st.EncodeFloat32(in, x, st.BF16)
	b.Run("copy", func(b *testing.B) {
		dst := make([]byte, len(in))
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			copy(dst, in)
		}
	})
	for _, tc := range []struct {
		name        string
		bits, group int
	}{{"fp8", 8, cols}, {"int8", 8, cols}, {"int4", 4, 128}} {
		for _, l := range simd.Supported() {
			b.Run(tc.name+"/"+l.String(), func(b *testing.B) {
				defer simd.Set(l)()
				k := rowKernel{dt: st.BF16, fp8: tc.name == "fp8", bits: tc.bits, group: tc.group, scaleType: st.BF16}
				buf := rowBuf{x: make([]float32, cols), y: make([]float32, cols), packed: make([]uint32, cols*tc.bits/32)}
				out := make([]byte, cols*tc.bits/8)
				scales := make([]float32, cols/tc.group)
				b.SetBytes(int64(len(in)))
				for b.Loop() {
					var s quality.Stats
					for r := 0; r < rows; r++ {
						if _, err := k.row(out, scales, &buf, in[r*cols*2:], &s); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

var benchCfg = stgen.Config{Layers: 2, Hidden: 1024, Intermediate: 2816, Vocab: 8192, Heads: 8, KVHeads: 4, Shards: 2, Seed: 5, Outliers: 512}

// BenchmarkConvert converts a generated BF16 checkpoint (about 60 MB)
// end to end; throughput is in bytes of input tensors. BenchmarkConvert/copy
// is the baseline: copying the same files.
func BenchmarkConvert(b *testing.B) {
	in := filepath.Join(b.TempDir(), "in")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), in, benchCfg); err != nil {
		b.Fatal(err)
	}
	var size int64
	paths, _ := filepath.Glob(filepath.Join(in, "*.safetensors"))
	for _, p := range paths {
		f, err := st.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range f.Tensors() {
			size += t.Offsets[1] - t.Offsets[0]
		}
		f.Close()
	}
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			out := filepath.Join(b.TempDir(), "out")
			os.Mkdir(out, 0o755)
			if err := st.CopyTree(context.Background(), in, out, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, scheme := range []string{"fp8", "int8", "int4"} {
		b.Run(scheme, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := Convert(context.Background(), in, filepath.Join(b.TempDir(), "out"), Options{Scheme: scheme}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPeakRSS measures the peak resident set of Convert in a child process
// on a generated BF16 checkpoint of about 400 MB whose largest tensor is
// 64 MiB. It is skipped unless GANTRY_RSS is set (it writes about 700 MB
// to the temporary directory):
//
//	GANTRY_RSS=1 go test -run TestPeakRSS -v ./compress/ctensors
func TestPeakRSS(t *testing.T) {
	if os.Getenv("GANTRY_RSS") == "" {
		t.Skip("set GANTRY_RSS=1 to measure peak RSS")
	}
	cfg := stgen.Config{Layers: 3, Hidden: 2048, Intermediate: 5632, Vocab: 16384, Heads: 16, KVHeads: 4, Shards: 2, Seed: 9, Outliers: 512}
	in := filepath.Join(t.TempDir(), "in")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), in, cfg); err != nil {
		t.Fatal(err)
	}
	var total, largest int64
	paths, _ := filepath.Glob(filepath.Join(in, "*.safetensors"))
	for _, p := range paths {
		f, err := st.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range f.Tensors() {
			n := ti.Offsets[1] - ti.Offsets[0]
			total += n
			largest = max(largest, n)
		}
		f.Close()
	}
	for _, scheme := range []string{"fp8", "int8", "int4"} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$")
		cmd.Env = append(os.Environ(), "GANTRY_RSS_CHILD=1", "GANTRY_RSS_IN="+in, "GANTRY_RSS_OUT="+out, "GANTRY_RSS_SCHEME="+scheme)
		msg, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", scheme, err, msg)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		peak := ru.Maxrss * 1024 // kilobytes on Linux
		t.Logf("%s: input %d MiB, largest tensor %d MiB, peak RSS %.1f MiB (%.2f× the largest tensor); child: %s",
			scheme, total>>20, largest>>20, float64(peak)/(1<<20), float64(peak)/float64(largest), strings.TrimSpace(lastLine(string(msg))))
		if peak > 2*largest {
			t.Errorf("peak RSS %d is over twice the largest tensor %d", peak, largest)
		}
	}
}

func lastLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "VmHWM") {
			return l
		}
	}
	return ""
}

// TestRSSChild is TestPeakRSS's child process.
func TestRSSChild(t *testing.T) {
	if os.Getenv("GANTRY_RSS_CHILD") == "" {
		t.Skip("child of TestPeakRSS")
	}
	if _, err := Convert(context.Background(), os.Getenv("GANTRY_RSS_IN"), os.Getenv("GANTRY_RSS_OUT"), Options{Scheme: os.Getenv("GANTRY_RSS_SCHEME")}); err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
}
