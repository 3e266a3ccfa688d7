package registry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
	"github.com/gantry-dev/gantry/spec"
)

// secondRegistry starts another docker-registry, the mirror, for the test.
func secondRegistry(t *testing.T) string {
	t.Helper()
	needRegistry(t)
	host, stop, err := registrytest.Start()
	t.Cleanup(stop)
	if err != nil {
		t.Fatalf("start a second registry: %v", err)
	}
	return host
}

func randomImage(t *testing.T) (v1.Image, string) {
	t.Helper()
	img, err := random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, d.String()
}

// rawManifest reads ref's manifest bytes straight from its registry.
func rawManifest(t *testing.T, ref string) []byte {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	return desc.Manifest
}

// TestMirrorBetweenRegistries copies an image from one docker-registry to
// another: the same manifest bytes, so the same digest; a second Mirror
// writes nothing (a look-up only).
func TestMirrorBetweenRegistries(t *testing.T) {
	ctx := context.Background()
	main, mirror := needRegistry(t), secondRegistry(t)
	p := newProxy(t, mirror) // counts what the mirror is asked
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})
	img, dig := randomImage(t)
	src := main + "/models/chat:ck-0123456789abcdef"
	if _, err := rem.Write(ctx, src, img); err != nil {
		t.Fatal(err)
	}
	dst := MirrorRef(p.host()+"/eu/models", src)
	if want := p.host() + "/eu/models/chat:ck-0123456789abcdef"; dst != want {
		t.Fatalf("MirrorRef = %s, want %s", dst, want)
	}
	got, err := Mirror(ctx, rem, src, rem, dst, dig)
	if err != nil {
		t.Fatal(err)
	}
	if got != dig {
		t.Errorf("Mirror returned %s, want %s", got, dig)
	}
	if up := uploads(p.requests()); len(up) == 0 {
		t.Error("the first mirror uploaded nothing")
	}
	if d, ok, err := rem.Has(ctx, mirror+"/eu/models/chat:ck-0123456789abcdef"); err != nil || !ok || d != dig {
		t.Errorf("the mirror has %s, %v, %v; want %s", d, ok, err, dig)
	}
	if a, b := rawManifest(t, src), rawManifest(t, dst); !bytes.Equal(a, b) {
		t.Errorf("the copy's manifest differs from the source's:\n%s\n%s", a, b)
	}

	// Again: the copy is there, so only look-ups.
	p.requests()
	if got, err := Mirror(ctx, rem, src, rem, dst, dig); err != nil || got != dig {
		t.Fatalf("second mirror: %s, %v", got, err)
	}
	for _, r := range p.requests() {
		if !strings.HasPrefix(r, "HEAD ") && r != "GET /v2/" {
			t.Errorf("second mirror sent %s; want only look-ups", r)
		}
	}
}

// TestMirrorFromLayout copies from the local OCI layout (the embedded
// store) into a registry.
func TestMirrorFromLayout(t *testing.T) {
	ctx := context.Background()
	mirror := secondRegistry(t)
	lay := NewLayout(t.TempDir())
	img, dig := randomImage(t)
	src := "gantry.local/models/chat:ck-feedface"
	if _, err := lay.Write(ctx, src, img); err != nil {
		t.Fatal(err)
	}
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})
	dst := MirrorRef(mirror+"/models", src)
	if got, err := Mirror(ctx, lay, src, rem, dst, dig); err != nil || got != dig {
		t.Fatalf("mirror from the layout: %s, %v", got, err)
	}
	copied, err := rem.Image(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.RawManifest()
	if raw, _ := copied.RawManifest(); !bytes.Equal(raw, want) {
		t.Error("the copy's manifest differs from the layout's")
	}
	// Into a layout too: Mirror takes any Store.
	lay2 := NewLayout(t.TempDir())
	if got, err := Mirror(ctx, rem, dst, lay2, "mirror.local/models/chat:ck-feedface", dig); err != nil || got != dig {
		t.Fatalf("mirror into a layout: %s, %v", got, err)
	}
}

// TestMirrorConcurrent mirrors one image to one reference twice at once:
// both succeed with the digest.
func TestMirrorConcurrent(t *testing.T) {
	ctx := context.Background()
	main, mirror := needRegistry(t), secondRegistry(t)
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})
	img, dig := randomImage(t)
	src := main + "/models/twice:ck-1"
	if _, err := rem.Write(ctx, src, img); err != nil {
		t.Fatal(err)
	}
	dst := MirrorRef(mirror+"/models", src)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			got, err := Mirror(ctx, NewRemote(Options{Logger: quiet, Retry: fastRetry}), src, rem, dst, dig)
			if err == nil && got != dig {
				err = errors.New("returned " + got)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("mirror %d: %v", i, err)
		}
	}
	if d, ok, err := rem.Has(ctx, dst); err != nil || !ok || d != dig {
		t.Errorf("after the concurrent mirrors the mirror has %s, %v, %v", d, ok, err)
	}
}

// TestMirrorDigestMismatch: a source whose digest is not the one asked
// for is refused and nothing is written; errors name both references.
func TestMirrorDigestMismatch(t *testing.T) {
	ctx := context.Background()
	main, mirror := needRegistry(t), secondRegistry(t)
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})
	img, _ := randomImage(t)
	_, other := randomImage(t)
	src := main + "/models/moved:ck-2"
	if _, err := rem.Write(ctx, src, img); err != nil {
		t.Fatal(err)
	}
	dst := MirrorRef(mirror+"/models", src)
	_, err := Mirror(ctx, rem, src, rem, dst, other)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mirror with another digest: %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), src) || !strings.Contains(err.Error(), dst) || !strings.Contains(err.Error(), other) {
		t.Errorf("error %q should name both references and the digest wanted", err)
	}
	if _, ok, err := rem.Has(ctx, dst); err != nil || ok {
		t.Errorf("after a refused mirror the mirror has the tag (%v, %v)", ok, err)
	}

	// A source that is not there: both references, nothing written.
	_, err = Mirror(ctx, rem, main+"/models/absent:ck-3", rem, mirror+"/models/absent:ck-3", other)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), main+"/models/absent:ck-3") || !strings.Contains(err.Error(), mirror+"/models/absent:ck-3") {
		t.Errorf("mirror of a missing image: %v", err)
	}
}

// TestMirrorRedacts: credentials in a reference never reach the error.
func TestMirrorRedacts(t *testing.T) {
	ctx := context.Background()
	lay := NewLayout(t.TempDir())
	_, err := Mirror(ctx, lay, "user:s3cretpw@registry.example/models/chat:ck-1", lay, "https://bob:t0kenpw@mirror.example/models/chat:ck-1", "sha256:"+strings.Repeat("0", 64))
	if err == nil {
		t.Fatal("mirror of unparsable references succeeded")
	}
	if strings.Contains(err.Error(), "s3cretpw") || strings.Contains(err.Error(), "t0kenpw") {
		t.Errorf("error leaks a credential: %v", err)
	}
	if !strings.Contains(err.Error(), "registry.example/models/chat:ck-1") || !strings.Contains(err.Error(), "mirror.example/models/chat:ck-1") {
		t.Errorf("error %q should name both references", err)
	}
	for in, want := range map[string]string{
		"u:p@host:5000/m/x:t":        "***@host:5000/m/x:t",
		"https://u:p@host/m/x:t":     "https://***@host/m/x:t",
		"host/m/x@sha256:ab":         "host/m/x@sha256:ab",
		"host:5000/m/x:t":            "host:5000/m/x:t",
		"u@host/m/x@sha256:ab":       "***@host/m/x@sha256:ab",
		"registry.example/models/ch": "registry.example/models/ch",
	} {
		if got := redactRef(in); got != want {
			t.Errorf("redactRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMirrorRef(t *testing.T) {
	for _, c := range [][3]string{
		{"mirror.eu:5000/models", "registry.example/models/chat:ck-abc", "mirror.eu:5000/models/chat:ck-abc"},
		{"mirror.eu:5000/models/", "registry.example:443/a/b/chat:ck-abc", "mirror.eu:5000/models/chat:ck-abc"},
		{"mirror.eu/m", "registry.example/models/chat@sha256:00ff", "mirror.eu/m/chat@sha256:00ff"},
		{"mirror.eu/m", "registry.example/models/chat:v1@sha256:00ff", "mirror.eu/m/chat:v1@sha256:00ff"},
		{"mirror.eu/m", "localhost:5000/chat", "mirror.eu/m/chat"},
		{"mirror.eu/m", "chat:ck-1", "mirror.eu/m/chat:ck-1"},
	} {
		if got := MirrorRef(c[0], c[1]); got != c[2] {
			t.Errorf("MirrorRef(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
	// The planner's rule for the reference a cluster's pods use.
	w := 1.0
	cfg := &spec.Config{
		Settings: spec.Settings{Registry: "registry.example/models"},
		Clusters: []spec.Cluster{{Name: "eu", Kubeconfig: "eu.yaml", Weight: &w, RegistryMirror: "mirror.eu:5000/models/"}},
	}
	r := &spec.Release{Name: "chat"}
	if got, want := MirrorRef(cfg.Clusters[0].RegistryMirror, planner.ImageRef(cfg, r)), planner.ClusterImageRef(cfg, "eu", r); got != want {
		t.Errorf("MirrorRef of the release's image = %s, planner.ClusterImageRef = %s", got, want)
	}
}
