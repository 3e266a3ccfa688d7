package registrytest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// CosignVersion is the cosign the compatibility tests build and run.
const CosignVersion = "v2.6.5"

// Cosign returns the cosign binary, built from the Go module proxy into
// ${XDG_CACHE_HOME:-$HOME/.cache}/gantry-test/cosign/VERSION on first use
// (about 3 minutes) and reused after. It skips the test under -short.
func Cosign(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("cosign compatibility test skipped in -short mode")
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache")
	}
	bindir := filepath.Join(cache, "gantry-test", "cosign", CosignVersion)
	bin := filepath.Join(bindir, "cosign")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building cosign %s into %s", CosignVersion, bindir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/sigstore/cosign/v2/cmd/cosign@"+CosignVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bindir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install cosign: %v\n%s", err, out)
	}
	return bin
}

// RunCosign runs cosign with a temporary HOME, no TUF or Rekor (key mode
// with the transparency log ignored) and only 127.0.0.1 to talk to.
// cosign 2.6.5 still tries to refresh its TUF trusted root in key mode;
// the proxy on a closed local port makes that fail at once, and cosign
// goes on with a warning ("Could not fetch trusted_root.json ...
// Continuing with individual targets"): key mode does not need it.
func RunCosign(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"TUF_ROOT=" + filepath.Join(home, "tuf"),
		"SIGSTORE_NO_CACHE=true",
		"COSIGN_EXPERIMENTAL=0",
		"NO_PROXY=127.0.0.1,localhost",
		"HTTPS_PROXY=http://127.0.0.1:9", // anything not local fails at once
		"HTTP_PROXY=http://127.0.0.1:9",
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
