package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
	"github.com/gantry-dev/gantry/spec"
)

func verifyKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	privPEM, _ := cryptoutils.MarshalPrivateKeyToPEM(k)
	pubPEM, _ := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	os.WriteFile(priv, privPEM, 0o600)
	os.WriteFile(pub, pubPEM, 0o644)
	return priv, pub
}

// signedImage pushes a tiny image as ref into store, attests and signs it
// as the engine does, and returns its digest.
func signedImage(t *testing.T, store interface {
	registry.Store
	registry.Source
}, ref, priv string) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"hidden_size":8}`), 0o644)
	img, err := registry.BuildModelPack(ctx, registry.Model{Release: "chat", Version: "v1", Format: "safetensors",
		Files: []registry.File{{Path: "config.json", Source: p}}})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := store.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &spec.Config{Revision: "4e32347719d5aa0c1f0ffb8cc1b1c2d3e4f5a6b7"}
	r := &spec.Release{Name: "chat", Model: spec.Model{Source: "models/tiny", Format: "safetensors", Digest: "sha256:" + strings.Repeat("ab", 32)},
		Quantize: &spec.Quantize{Method: "int4", GroupSize: 128}}
	st, err := reconcile.ProvenanceStatement(cfg, r, "ck", ref, digest, nil,
		[]planner.BoundCheck{{Eval: "ppl", Metric: "perplexity", Kind: "max", Bound: 12, Value: 10.5, OK: true}})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := registry.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.AttachSigned(ctx, store, ref, digest, st, registry.PredicateSLSAProvenanceV1, sv); err != nil {
		t.Fatal(err)
	}
	if err := registry.Sign(ctx, store, ref, digest, sv); err != nil {
		t.Fatal(err)
	}
	return digest
}

func TestVerifyLayout(t *testing.T) {
	state := t.TempDir()
	priv, pub := verifyKeys(t)
	_, wrong := verifyKeys(t)
	ref := "gantry.local/models/chat:ck-0123"
	digest := signedImage(t, registry.NewLayout(filepath.Join(state, "oci")), ref, priv)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"verify", "--state-dir", state, "--key", pub, ref}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"image: gantry.local/models/chat@" + digest, `"_type": "https://in-toto.io/Statement/v1"`,
		"source:    models/tiny sha256:abab", "quantize:  int4 group_size=128 (" + planner.QuantizerVersion + ")",
		"revision:  4e32347719d5", "eval:      ppl perplexity max 12: 10.5 (ok)", "signature: verified", "attestation: verified"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"verify", "--layout", filepath.Join(state, "oci"), "--key", wrong, "gantry.local/models/chat@" + digest}, &out, &errb); code != 1 {
		t.Errorf("wrong key: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "signature: FAILED") || !strings.Contains(out.String(), "does not verify") {
		t.Errorf("wrong key output:\n%s", out.String())
	}
	// Without --key it prints and exits 0.
	out.Reset()
	if code := run(context.Background(), []string{"verify", "--state-dir", state, ref}, &out, &errb); code != 0 || !strings.Contains(out.String(), "gate passed: true") {
		t.Errorf("no key: exit %d\n%s", code, out.String())
	}
}

func TestVerifyRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	host, stop, err := registrytest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	priv, pub := verifyKeys(t)
	ref := host + "/models/chat:ck-0123"
	signedImage(t, registry.NewRemote(registry.Options{}), ref, priv)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"verify", "--key", pub, ref}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "signature: verified") {
		t.Errorf("output:\n%s", out.String())
	}
}
