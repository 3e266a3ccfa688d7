package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

func buildGantry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gantry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestQuantizeSIMDCap runs the binary with GANTRY_SIMD capping the kernels
// at each level, the scalar fallback included: every level writes the same
// bytes and the same report, and --profile names the level that ran.
func TestQuantizeSIMDCap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildGantry(t)
	in, _, _ := tinyGGUF(t)
	levels := []string{"scalar", "sse2", "avx2", "avx512", "avx512vbmi"}
	best := 0
	for i, l := range levels {
		if l == compress.SIMD() {
			best = i
		}
	}
	for _, typ := range []string{"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"} {
		var first, firstReport []byte
		for i, l := range levels {
			out := filepath.Join(t.TempDir(), "out.gguf")
			cmd := exec.Command(bin, "quantize", "--in", in, "--out", out, "--type", typ, "--profile", "--report", "json")
			cmd.Env = append(os.Environ(), "GANTRY_SIMD="+l)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s at %s: %v\n%s", typ, l, err, stderr.String())
			}
			want := levels[min(i, best)]
			if !strings.Contains(stderr.String(), "simd "+want+":") {
				t.Errorf("%s: GANTRY_SIMD=%s: profile does not say simd %s:\n%s", typ, l, want, stderr.String())
			}
			for _, stage := range []string{"read", "decode", "quantize", "dequantize", "errors", "write"} {
				if !strings.Contains(stderr.String(), stage) {
					t.Errorf("%s: profile lacks %s:\n%s", typ, stage, stderr.String())
				}
			}
			b, _ := os.ReadFile(out)
			if first == nil {
				first, firstReport = b, stdout.Bytes()
				continue
			}
			if !bytes.Equal(b, first) {
				t.Errorf("%s: GANTRY_SIMD=%s writes other bytes than scalar", typ, l)
			}
			if !bytes.Equal(stdout.Bytes(), firstReport) {
				t.Errorf("%s: GANTRY_SIMD=%s reports otherwise than scalar:\n%s\nvs\n%s", typ, l, stdout.Bytes(), firstReport)
			}
		}
	}
}

// TestQuantizeKilledAtRandom kills gantry quantize with SIGKILL at random
// moments: the output path never holds a partial file, and the next run
// writes the same bytes as an uninterrupted one and removes what the
// killed runs left behind.
func TestQuantizeKilledAtRandom(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildGantry(t)
	in := filepath.Join(t.TempDir(), "in.gguf")
	if err := ggufgen.WriteLlama(context.Background(), in, ggufgen.Sized(48<<20)); err != nil {
		t.Fatal(err)
	}
	quantize := func(out string) *exec.Cmd {
		return exec.Command(bin, "quantize", "--in", in, "--out", out, "--type", "q4_k_m", "--threads", "2")
	}
	refDir := t.TempDir()
	start := time.Now()
	if out, err := quantize(filepath.Join(refDir, "ref.gguf")).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	full := time.Since(start)
	ref, _ := os.ReadFile(filepath.Join(refDir, "ref.gguf"))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, an uninterrupted run takes %v", seed, full)
	rng := rand.New(rand.NewPCG(seed, 15))
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	for round := 0; round < 4; round++ {
		cmd := quantize(out)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(full))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if b, err := os.ReadFile(out); err == nil && !bytes.Equal(b, ref) {
			t.Fatalf("round %d: %s holds %d bytes that are not the full output", round, out, len(b))
		}
		os.Remove(out) // the next round starts from nothing again
	}
	if msg, err := quantize(out).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, ref) {
		t.Error("the run after the kills wrote other bytes")
	}
	onlyEntry(t, dir, "out.gguf")
}
