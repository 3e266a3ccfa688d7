package ggufquant

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

// benchModel is generated once per benchmark binary run: an F16 llama model
// of about GANTRY_BENCH_MB megabytes (default 64).
var benchModel struct {
	once  sync.Once
	path  string
	size  int64
	data  int64 // tensor-data bytes (F16 input)
	param int64
	err   error
}

func benchInput(b *testing.B) (string, int64, int64, int64) {
	benchModel.once.Do(func() {
		mb := int64(64)
		if v, err := strconv.ParseInt(os.Getenv("GANTRY_BENCH_MB"), 10, 64); err == nil && v > 0 {
			mb = v
		}
		dir, err := os.MkdirTemp("", "ggufquant-bench")
		if err != nil {
			benchModel.err = err
			return
		}
		benchModel.path = filepath.Join(dir, "model.gguf")
		cfg := ggufgen.Sized(mb << 20)
		if benchModel.err = ggufgen.WriteLlama(context.Background(), benchModel.path, cfg); benchModel.err != nil {
			return
		}
		for _, t := range cfg.Tensors() {
			benchModel.data += t.Bytes()
			benchModel.param += t.Elements()
		}
		st, _ := os.Stat(benchModel.path)
		benchModel.size = st.Size()
	})
	if benchModel.err != nil {
		b.Fatal(benchModel.err)
	}
	return benchModel.path, benchModel.size, benchModel.data, benchModel.param
}

// BenchmarkQuantizeFile runs the whole pipeline on the generated F16 model
// with GOMAXPROCS threads. b.SetBytes counts F16 input tensor bytes;
// Mparams/s is comparable with QUANT-NOTES' llama-quantize figures.
// BenchmarkQuantizeFile/copy is the baseline: the same bytes read with
// ReadAt and written to a file, no computation.
func BenchmarkQuantizeFile(b *testing.B) {
	path, size, data, params := benchInput(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(filepath.Dir(path), "out.gguf")
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(data)
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			w, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(w, io.NewSectionReader(f, 0, size), buf); err != nil {
				b.Fatal(err)
			}
			w.Close()
		}
		b.ReportMetric(float64(params)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
	})
	for _, typ := range []string{"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"} {
		b.Run(typ, func(b *testing.B) {
			b.SetBytes(data)
			for i := 0; i < b.N; i++ {
				if _, err := Quantize(context.Background(), f, size, out, Options{Type: typ}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(params)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
		})
	}
}

// TestPeakRSS measures the peak resident memory of a quantization run in a
// child process. It only runs when GANTRY_RSS_MB is set to the model size in
// megabytes, e.g.
//
//	GANTRY_RSS_MB=400 go test -run TestPeakRSS -v ./compress/ggufquant
//
// The child is this test binary re-executed; its VmHWM (and the kernel's
// ru_maxrss for it) is reported against the model size and the largest
// tensor.
func TestPeakRSS(t *testing.T) {
	if os.Getenv("GANTRY_RSS_CHILD") != "" {
		rssChild(t)
		return
	}
	mb, err := strconv.ParseInt(os.Getenv("GANTRY_RSS_MB"), 10, 64)
	if err != nil || mb <= 0 {
		t.Skip("set GANTRY_RSS_MB=<model MB> to measure peak RSS")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "model.gguf")
	cfg := ggufgen.Sized(mb << 20)
	start := time.Now()
	if err := ggufgen.WriteLlama(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	var largest int64
	for _, ti := range cfg.Tensors() {
		largest = max(largest, ti.Bytes())
	}
	t.Logf("model: %d layers, embd %d, ff %d, vocab %d: %.1f MB, largest tensor %.1f MB (generated in %v)",
		cfg.Layers, cfg.Embd, cfg.FF, cfg.Vocab, float64(st.Size())/1e6, float64(largest)/1e6, time.Since(start).Round(time.Millisecond))
	typ := os.Getenv("GANTRY_RSS_TYPE")
	if typ == "" {
		typ = "q8_0"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSS$", "-test.v")
	cmd.Env = append(os.Environ(), "GANTRY_RSS_CHILD="+path, "GANTRY_RSS_TYPE="+typ)
	start = time.Now()
	outp, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, outp)
	}
	elapsed := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var hwm string
	for _, line := range strings.Split(string(outp), "\n") {
		if i := strings.Index(line, "VmHWM:"); i >= 0 {
			hwm = strings.TrimSpace(line[i+len("VmHWM:"):])
		}
	}
	t.Logf("%s of %.0f MB in %v: child ru_maxrss %.1f MB, VmHWM %s; %.2f× the largest tensor, %.3f× the model",
		typ, float64(st.Size())/1e6, elapsed.Round(time.Millisecond), float64(ru.Maxrss)/1e3, hwm,
		float64(ru.Maxrss*1024)/float64(largest), float64(ru.Maxrss*1024)/float64(st.Size()))
}

func rssChild(t *testing.T) {
	path := os.Getenv("GANTRY_RSS_CHILD")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	out := path + ".out"
	if _, err := Quantize(context.Background(), f, st.Size(), out, Options{Type: os.Getenv("GANTRY_RSS_TYPE")}); err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Println(line)
		}
	}
	fmt.Println("GOMAXPROCS", runtime.GOMAXPROCS(0))
	_ = gguf.DefaultAlignment
}
