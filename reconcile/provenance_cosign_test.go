package reconcile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
)

// TestAttestCosign: an image attested and signed by Engine.attest in
// docker-registry passes cosign verify --key and cosign verify-attestation
// --key --type slsaprovenance1, and Engine.verifyImage agrees. It uses the
// cosign that reconcile/registry's TestCosignVerifies builds (the same
// cache path) and builds it the same way if missing.
func TestAttestCosign(t *testing.T) {
	if testing.Short() {
		t.Skip("cosign test skipped in -short mode")
	}
	bin := registrytest.Cosign(t)
	host, stop, err := registrytest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx := context.Background()
	store := registry.NewRemote(registry.Options{})
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"hidden_size":8}`), 0o644)
	img, err := registry.BuildModelPack(ctx, registry.Model{Release: "chat", Version: "v1", Format: "safetensors",
		Files: []registry.File{{Path: "config.json", Source: p}}})
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/models/chat:ck-0123"
	digest, err := store.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := provKeys(t, t.TempDir())
	cfg, r := provRelease()
	cfg.Settings.SigningKeyFile = priv
	e := &Engine{}
	if err := e.attest(ctx, store, cfg, r, "ck", ref, digest, &quality.Tensor{Type: "int4", Params: 10, RelRMSE: 0.02}, provChecks); err != nil {
		t.Fatal(err)
	}
	cfg.Settings.VerifyKeyFile = pub
	if err := e.verifyImage(ctx, cfg, store, ref, digest); err != nil {
		t.Fatal(err)
	}
	image := host + "/models/chat@" + digest
	common := []string{"--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
	if out, err := registrytest.RunCosign(t, bin, append(append([]string{"verify"}, common...), image)...); err != nil {
		t.Fatalf("cosign verify: %v\n%s", err, out)
	}
	out, err := registrytest.RunCosign(t, bin, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, common...), image)...)
	if err != nil {
		t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
		t.Errorf("cosign verify-attestation:\n%s", out)
	}
}
