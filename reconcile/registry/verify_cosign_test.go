package registry

import (
	"context"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
)

// TestCosignVerifies: cosign verify --key and verify-attestation --key
// accept what Sign and AttachSigned write to docker-registry, with ECDSA
// P-256 and Ed25519 keys; a wrong key is refused.
func TestCosignVerifies(t *testing.T) {
	host := needRegistry(t)
	bin := registrytest.Cosign(t)
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
			out, err := registrytest.RunCosign(t, bin, append(append([]string{"verify", "--key", pub}, common...), image)...)
			if err != nil {
				t.Fatalf("cosign verify: %v\n%s", err, out)
			}
			t.Logf("cosign verify:\n%s", out)
			if !strings.Contains(out, digest) {
				t.Errorf("cosign verify printed no payload naming %s:\n%s", digest, out)
			}
			for _, typ := range []string{"slsaprovenance1", PredicateSLSAProvenanceV1} {
				out, err = registrytest.RunCosign(t, bin, append(append([]string{"verify-attestation", "--key", pub, "--type", typ}, common...), image)...)
				if err != nil {
					t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
				}
				if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
					t.Errorf("cosign verify-attestation printed no statement:\n%s", out)
				}
			}
			if out, err := registrytest.RunCosign(t, bin, append(append([]string{"verify", "--key", wrongPub}, common...), image)...); err == nil {
				t.Errorf("cosign verify with a wrong key passed:\n%s", out)
			}
			if out, err := registrytest.RunCosign(t, bin, append(append([]string{"verify-attestation", "--key", wrongPub, "--type", "slsaprovenance1"}, common...), image)...); err == nil {
				t.Errorf("cosign verify-attestation with a wrong key passed:\n%s", out)
			}
		})
	}
}
