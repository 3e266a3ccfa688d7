package reconcile_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	remote, host, digest := upstreamModel(t, nil)
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

// Releases that share an oci:// source, reconciled at once, pull it once
// (the bug: concurrent pulls into one directory, the second failing on a
// non-empty destination), and a pull left half-done by a killed process
// is cleaned away.
func TestSharedOCISourcePulledOnce(t *testing.T) {
	ctx := context.Background()
	var blobGets atomic.Int64
	remote, host, digest := upstreamModel(t, func(r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
	})
	f := newFixture(t)
	f.e.Images, f.e.Jobs = remote, 4
	stale := filepath.Join(f.e.WorkDir, "sources", ".sha256-x.pull-123")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(f.repo, "releases.hcl"))
	src := strings.Replace(string(b), `source = "models/tiny-llama-f16.gguf"`, `source = "oci://`+host+`/upstream/tiny@`+digest+`"`, 1)
	i := strings.Index(src, `release "tiny-chat-gguf"`)
	block := src[i:]
	for _, m := range []string{"q8_0", "q4_0", "q5_0"} {
		src += strings.NewReplacer(`release "tiny-chat-gguf"`, `release "gguf-`+strings.ReplaceAll(m, "_", "-")+`"`, `method = "q4_k_m"`, `method = "`+m+`"`).Replace(block)
	}
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
	// The manifest's config and its one layer, fetched once each.
	if n := blobGets.Load(); n > 2 {
		t.Errorf("%d blob GETs for one shared source, want at most 2", n)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale pull %s is still there: %v", stale, err)
	}
}

// upstreamModel serves the quickstart's GGUF model as a ModelPack image
// from an in-process registry (seen calls each request first) and returns
// a client, the registry's host and the image digest.
func upstreamModel(t *testing.T, seen func(*http.Request)) (*registry.Remote, string, string) {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen(r)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	remote := registry.NewRemote(registry.Options{})
	img, err := registry.BuildModelPack(context.Background(), registry.Model{Release: "upstream", Version: "v1", Format: "gguf",
		Files: []registry.File{{Path: "tiny.gguf", Source: "../examples/quickstart/models/tiny-llama-f16.gguf"}}})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := remote.Write(context.Background(), host+"/upstream/tiny:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	return remote, host, digest
}
