package reconcile_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

// TestOCIModelSource: a release whose model comes from oci:// is pulled
// (digest-verified) from that registry, quantized, and pushed to the
// local layout.
func TestOCIModelSource(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	remote := registry.NewRemote(registry.Options{})
	img, err := registry.BuildModelPack(ctx, registry.Model{Release: "upstream", Version: "v1", Format: "gguf",
		Files: []registry.File{{Path: "tiny.gguf", Source: "../examples/quickstart/models/tiny-llama-f16.gguf"}}})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := remote.Write(ctx, host+"/upstream/tiny:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.e.Images = remote
	b, _ := os.ReadFile(filepath.Join(f.repo, "releases.hcl"))
	src := strings.Replace(string(b), `source = "models/tiny-llama-f16.gguf"`, `source = "oci://`+host+`/upstream/tiny@`+digest+`"`, 1)
	if err := os.WriteFile(filepath.Join(f.repo, "releases.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Releases {
		if r.State != reconcile.StateSynced {
			t.Errorf("%s: %s %s", r.Name, r.State, r.Reason)
		}
	}
	if f.c.quantizes != 2 {
		t.Errorf("%d quantizes", f.c.quantizes)
	}
}
