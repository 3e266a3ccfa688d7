package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/reconcile/scaletest"
)

// BenchmarkRunOnce times the binary as a user runs it, process start and
// all: gantry run --once on the embedded target (dir target, local OCI
// layout) over scaletest.Repo's n releases. "first" starts from an empty
// state dir (4 quantizes, n pushes, 2n objects); "noop" runs again on the
// state a first run left (nothing to do).
//
//	go test ./cmd/gantry -run '^$' -bench BenchmarkRunOnce -benchtime 3x
func BenchmarkRunOnce(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "gantry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	run := func(b *testing.B, repo, state string) string {
		b.Helper()
		out, err := exec.Command(bin, "run", "--repo", repo, "--state-dir", state, "--once", "--no-color").CombinedOutput()
		if err != nil {
			b.Fatalf("run --once: %v\n%s", err, out)
		}
		return string(out)
	}
	for _, mode := range []string{"first", "noop"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				repo := scaletest.Repo(b, n, filepath.Join(quickstart, "models", "tiny-llama-f16.gguf"))
				state := b.TempDir()
				if mode == "noop" {
					run(b, repo, state)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if mode == "first" {
						b.StopTimer()
						state = b.TempDir()
						b.StartTimer()
					}
					out := run(b, repo, state)
					if mode == "noop" && !strings.Contains(out, "0 actions executed") {
						b.Fatalf("not a no-op:\n%s", out[max(0, len(out)-2000):])
					}
				}
			})
		}
	}
}
