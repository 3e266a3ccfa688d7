package registry

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cosignVersion is the cosign the compatibility test builds and runs.
const cosignVersion = "v2.6.5"

// cosignBinary returns cosign, built from the Go module proxy into the
// user cache on first use (about 3 minutes) and reused after.
func cosignBinary(t *testing.T) string {
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
	bindir := filepath.Join(cache, "gantry-test", "cosign", cosignVersion)
	bin := filepath.Join(bindir, "cosign")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building cosign %s into %s", cosignVersion, bindir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/sigstore/cosign/v2/cmd/cosign@"+cosignVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bindir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install cosign: %v\n%s", err, out)
	}
	return bin
}

// runCosign runs cosign with a temporary HOME, no TUF or Rekor (key mode
// with the transparency log ignored) and only the local registry to
// talk to. cosign 2.6.5 still tries to refresh its TUF trusted root in
// key mode; the proxy on a closed local port makes that fail at once,
// and cosign goes on with a warning ("Could not fetch trusted_root.json
// ... Continuing with individual targets"): key mode does not need it.
func runCosign(t *testing.T, bin string, args ...string) (string, error) {
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

// TestCosignVerifies: cosign verify --key and verify-attestation --key
// accept what Sign and AttachSigned write to docker-registry, with ECDSA
// P-256 and Ed25519 keys; a wrong key is refused.
func TestCosignVerifies(t *testing.T) {
	host := needRegistry(t)
	bin := cosignBinary(t)
	for _, kind := range []string{"ecdsa", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			store := NewRemote(Options{Logger: quiet, Retry: fastRetry})
			repo := host + "/cosign/" + kind
			ref, digest := pushTestImage(t, ctx, store, repo, 42)
			dir := t.TempDir()
			priv, pub := testKeys(t, dir, kind)
			_, wrongPub := testKeys(t, t.TempDir(), kind)
			signer, err := LoadSigner(priv)
			if err != nil {
				t.Fatal(err)
			}
			if err := Sign(ctx, store, ref, digest, signer); err != nil {
				t.Fatal(err)
			}
			if err := AttachSigned(ctx, store, ref, digest, testStatement(repo, digest), PredicateSLSAProvenanceV1, signer); err != nil {
				t.Fatal(err)
			}
			image := repo + "@" + digest
			common := []string{"--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
			out, err := runCosign(t, bin, append(append([]string{"verify", "--key", pub}, common...), image)...)
			if err != nil {
				t.Fatalf("cosign verify: %v\n%s", err, out)
			}
			t.Logf("cosign verify:\n%s", out)
			if !strings.Contains(out, digest) {
				t.Errorf("cosign verify printed no payload naming %s:\n%s", digest, out)
			}
			for _, typ := range []string{"slsaprovenance1", PredicateSLSAProvenanceV1} {
				out, err = runCosign(t, bin, append(append([]string{"verify-attestation", "--key", pub, "--type", typ}, common...), image)...)
				if err != nil {
					t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
				}
				if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
					t.Errorf("cosign verify-attestation printed no statement:\n%s", out)
				}
			}
			if out, err := runCosign(t, bin, append(append([]string{"verify", "--key", wrongPub}, common...), image)...); err == nil {
				t.Errorf("cosign verify with a wrong key passed:\n%s", out)
			}
			if out, err := runCosign(t, bin, append(append([]string{"verify-attestation", "--key", wrongPub, "--type", "slsaprovenance1"}, common...), image)...); err == nil {
				t.Errorf("cosign verify-attestation with a wrong key passed:\n%s", out)
			}
		})
	}
}
