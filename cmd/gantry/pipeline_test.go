package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/lora"
	"github.com/gantry-dev/gantry/planner"
)

func TestFuserVersionsAgree(t *testing.T) {
	if lora.Version != planner.FuserVersion {
		t.Fatalf("lora.Version %q != planner.FuserVersion %q", lora.Version, planner.FuserVersion)
	}
}

// pipelineRepo is a copy of the quickstart whose GGUF release merges an
// adapter and is gated by an eval that writes its pid to pidFile and
// sleeps $NAP seconds before it reports.
func pipelineRepo(t *testing.T, dir, pidFile, nap string) string {
	t.Helper()
	repo := filepath.Join(dir, "repo")
	if err := os.CopyFS(repo, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	base := ggufgen.Config{Name: "tiny-llama", Layers: 2, Embd: 256, FF: 512, Vocab: 256, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 42}
	if err := os.MkdirAll(filepath.Join(repo, "adapters"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteLoRA(context.Background(), filepath.Join(repo, "adapters", "chat.gguf"), ggufgen.LoRA{Base: base, Rank: 8, Alpha: 8, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(repo, "releases.hcl")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), `    source = "models/tiny-llama-f16.gguf"
    format = "gguf"`, `    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
    adapter { source = "adapters/chat.gguf" }`, 1)
	src = strings.Replace(src, `
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`, `
  gate {
    eval "nap" {
      command = ["sh", "-c", "echo $$ > \"$PIDFILE\"; sleep \"$NAP\"; echo '{\"ok\": 1}'"]
      env     = { PIDFILE = "`+pidFile+`", NAP = "`+nap+`" }
      min     = { ok = 1 }
    }
  }

  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`, 1)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo
}

// kill -9 of the daemon while it evaluates a merged build: its evaluator
// dies with it, and the next run converges with nothing half-written
// left behind (no temporary build, merge or eval result).
func TestKilledDuringEval(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "gantry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	pidFile := filepath.Join(tmp, "eval.pid")
	repo := pipelineRepo(t, tmp, pidFile, "120")
	state := filepath.Join(tmp, "state")
	cmd := exec.Command(bin, "run", "--repo", repo, "--state-dir", state, "--once", "--no-color")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var pid int
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		cmd.Process.Kill()
		t.Fatal("the evaluator never started")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The evaluator is not left running (it would hold the build's
	// files and a CPU).
	for i := 0; ; i++ {
		if err := syscall.Kill(pid, 0); err != nil {
			break
		}
		if i == 200 {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the evaluator (pid %d) outlived the killed daemon", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Converge: the same build, a quick evaluator.
	p := filepath.Join(repo, "releases.hcl")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), `NAP = "120"`, `NAP = "0"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "run", "--repo", repo, "--state-dir", state, "--once", "--no-color").CombinedOutput()
	if err != nil {
		t.Fatalf("run after kill: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "run", "--repo", repo, "--state-dir", state, "--once", "--no-color").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0 actions executed") {
		t.Fatalf("second run after kill: %v\n%s", err, out)
	}
	var left []string
	filepath.WalkDir(filepath.Join(state, "work"), func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "merged")) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}
