package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/lora"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
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

// gantry build (what a build Job runs, or a user by hand) attests what it
// pushes, signed where the signing key is on the machine and unsigned
// where it is not (a Job: the daemon signs after it); with --candidate it
// pushes to the candidate tag and leaves the evals and the attestation
// to the daemon.
func TestBuildAttests(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	repo := pipelineRepo(t, tmp, filepath.Join(tmp, "pid"), "0")
	keys := t.TempDir()
	priv := filepath.Join(keys, "cosign.key")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	gantryHCL := filepath.Join(repo, "gantry.hcl")
	b, _ := os.ReadFile(gantryHCL)
	setKey := func(path string) {
		src := strings.Replace(string(b), `namespace = "llm"`, `namespace = "llm"
  signing_key_file = "`+path+`"`, 1)
		if err := os.WriteFile(gantryHCL, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lay := func(state string) *registry.Layout { return registry.NewLayout(filepath.Join(state, "oci")) }
	ref := func(state, release string) (string, string) {
		t.Helper()
		cfg, diags := spec.Load(ctx, repo, spec.LoadOptions{NoEnv: true})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		r, _ := cfg.Release(release)
		return planner.ImageRef(cfg, r), planner.CandidateRef(cfg, r)
	}

	// No key on this machine: attested, unsigned.
	setKey(filepath.Join(keys, "missing.key"))
	state := t.TempDir()
	if code, out, errs := gantry(t, "build", "--repo", repo, "--release", "tiny-chat-gguf", "--state-dir", state); code != 0 {
		t.Fatalf("build: %d %s %s", code, out, errs)
	}
	img, _ := ref(state, "tiny-chat-gguf")
	d, ok, err := lay(state).Has(ctx, img)
	if err != nil || !ok {
		t.Fatalf("not pushed: %v", err)
	}
	if st, signed, err := registry.ReadAttestation(ctx, lay(state), img, d); err != nil || st == nil || signed {
		t.Fatalf("attestation: signed=%v %v", signed, err)
	}

	// The key on this machine: signed.
	setKey(priv)
	state = t.TempDir()
	if code, out, errs := gantry(t, "build", "--repo", repo, "--release", "tiny-chat-gguf", "--state-dir", state); code != 0 {
		t.Fatalf("build: %d %s %s", code, out, errs)
	}
	img, _ = ref(state, "tiny-chat-gguf")
	d, _, _ = lay(state).Has(ctx, img)
	v, err := signature.LoadVerifier(&k.PublicKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Verify(ctx, lay(state), img, d, v); err != nil {
		t.Fatalf("signed build: %v", err)
	}

	// --candidate: under the candidate tag, nothing else.
	state = t.TempDir()
	if code, out, errs := gantry(t, "build", "--repo", repo, "--release", "tiny-chat-gguf", "--state-dir", state, "--candidate"); code != 0 {
		t.Fatalf("build --candidate: %d %s %s", code, out, errs)
	}
	img, cand := ref(state, "tiny-chat-gguf")
	if _, ok, _ := lay(state).Has(ctx, img); ok {
		t.Fatal("a candidate build was tagged as the release's image")
	}
	cd, ok, _ := lay(state).Has(ctx, cand)
	if !ok {
		t.Fatal("no candidate pushed")
	}
	if st, _, _ := registry.ReadAttestation(ctx, lay(state), cand, cd); st != nil {
		t.Fatal("a candidate was attested before its evals")
	}
}
