package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-dev/gantry/planner"
)

func TestLayoutWriteHasObserve(t *testing.T) {
	ctx := context.Background()
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(ctx, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	lay := NewLayout(filepath.Join(t.TempDir(), ".gantry", "oci"))
	const ref = "gantry.local/models/tiny-chat:ck-0123456789abcdef0123456789abcdef"

	// Nothing there yet (the directory does not even exist).
	if _, ok, err := lay.Has(ctx, ref); ok || err != nil {
		t.Fatalf("Has on an empty layout: %v %v", ok, err)
	}
	got, err := lay.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	if got != want.String() {
		t.Errorf("Write returned %s, want %s", got, want)
	}
	index1, _ := os.ReadFile(filepath.Join(lay.Dir, "index.json"))

	// Idempotent: a second write changes nothing, not even index.json.
	if _, err := lay.Write(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	index2, _ := os.ReadFile(filepath.Join(lay.Dir, "index.json"))
	if !bytes.Equal(index1, index2) {
		t.Errorf("second write changed index.json:\n%s\n%s", index1, index2)
	}
	if !strings.Contains(string(index1), `"org.opencontainers.image.ref.name": "ck-0123456789abcdef0123456789abcdef"`) {
		t.Errorf("index.json lacks the tag as ref.name:\n%s", index1)
	}

	// Another repository with the same tag is another entry.
	other := "gantry.local/models/other:ck-0123456789abcdef0123456789abcdef"
	if _, ok, _ := lay.Has(ctx, other); ok {
		t.Error("Has found another repository's image by tag")
	}
	img2, _ := random.Image(100, 1)
	if _, err := lay.Write(ctx, other, img2); err != nil {
		t.Fatal(err)
	}
	// Re-tagging ref to another image replaces its entry.
	if _, err := lay.Write(ctx, ref, img2); err != nil {
		t.Fatal(err)
	}
	if _, err := lay.Write(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	idx, _ := os.ReadFile(filepath.Join(lay.Dir, "index.json"))
	if n := strings.Count(string(idx), `"io.containerd.image.name"`); n != 2 {
		t.Errorf("index.json has %d entries, want 2:\n%s", n, idx)
	}

	byDigest := ref[:strings.LastIndex(ref, ":")] + "@" + want.String()
	arts, err := Observe(ctx, lay, []string{ref, "gantry.local/models/tiny-chat:ck-ffff", byDigest})
	if err != nil {
		t.Fatal(err)
	}
	wantArts := map[string]planner.Artifact{
		ref:      {Ref: ref, Digest: want.String()},
		byDigest: {Ref: byDigest, Digest: want.String()},
	}
	if diff := cmp.Diff(wantArts, arts); diff != "" {
		t.Errorf("Observe (-want +got):\n%s", diff)
	}

	// Pull it back from the layout.
	dest := filepath.Join(t.TempDir(), "out")
	if err := Pull(ctx, lay, ref, dest); err != nil {
		t.Fatal(err)
	}
	sameTree(t, testFiles, dest)
}

// Both packagings come back as the same files, through an in-process
// registry (go-containerregistry's pkg/registry).
func TestPushPullInProcess(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	rem := NewRemote(Options{Logger: quiet})

	dir := writeModelDir(t, testFiles)
	m := testModel(dir, testFiles)
	base, _ := random.Image(300, 2)
	if _, err := rem.Write(ctx, host+"/base/busybox:1", base); err != nil {
		t.Fatal(err)
	}
	rbase, err := rem.Image(ctx, host+"/base/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	mp, err := BuildModelPack(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := BuildModelcar(ctx, rbase, m)
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range map[string]v1.Image{"modelpack": mp, "modelcar": mc} {
		t.Run(name, func(t *testing.T) {
			ref := host + "/models/" + name + ":ck-1"
			var lastDone, lastTotal int64
			r := NewRemote(Options{Logger: quiet, OnProgress: func(done, total int64) { lastDone, lastTotal = done, total }})
			dig, err := r.Write(ctx, ref, img)
			if err != nil {
				t.Fatal(err)
			}
			if lastTotal == 0 || lastDone != lastTotal {
				t.Errorf("progress ended at %d of %d", lastDone, lastTotal)
			}
			if got, ok, err := r.Has(ctx, ref); !ok || err != nil || got != dig {
				t.Errorf("Has = %s %v %v, want %s", got, ok, err, dig)
			}
			dest := filepath.Join(t.TempDir(), "model")
			if err := Pull(ctx, r, host+"/models/"+name+"@"+dig, dest); err != nil {
				t.Fatal(err)
			}
			sameTree(t, testFiles, dest)
		})
	}
	if _, ok, err := rem.Has(ctx, host+"/models/none:ck-2"); ok || err != nil {
		t.Errorf("Has on a missing tag: %v %v", ok, err)
	}
}

// tarLayer is a modelcar-style layer with hand-written entries.
func tarLayer(t *testing.T, entries ...*tar.Header) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 2
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("hi")[:h.Size])
		}
	}
	tw.Close()
	return static.NewLayer(b.Bytes(), types.OCIUncompressedLayer)
}

func TestPullRejectsUnsafeEntries(t *testing.T) {
	ctx := context.Background()
	file := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644} }
	ok := file("models/ok.bin")
	for name, entries := range map[string][]*tar.Header{
		"dot-dot":           {ok, file("models/../../evil")},
		"dot-dot inside":    {ok, file("models/a/../../evil")},
		"symlink out":       {ok, {Name: "models/link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
		"symlink then file": {{Name: "models/d", Typeflag: tar.TypeSymlink, Linkname: "../../"}, file("models/d/evil")},
		"hard link":         {ok, {Name: "models/h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}},
		"device":            {ok, {Name: "models/dev", Typeflag: tar.TypeChar}},
	} {
		t.Run(name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, tarLayer(t, entries...))
			if err != nil {
				t.Fatal(err)
			}
			lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
			if _, err := lay.Write(ctx, "gantry.local/x:1", img); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			dest := filepath.Join(parent, "a", "b", "model")
			err = Pull(ctx, lay, "gantry.local/x:1", dest)
			if err == nil {
				t.Fatal("Pull accepted an unsafe entry")
			}
			if _, serr := os.Stat(dest); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("destination exists after a failed pull: %v", serr)
			}
			// Nothing landed anywhere under the parent, temp dirs included.
			left := readTree(t, parent)
			if len(left) != 0 {
				t.Errorf("files left behind: %v", keys(left))
			}
			t.Logf("error: %v", err)
		})
	}

	// The base's files outside /models are ignored, whatever they are.
	img, _ := mutate.AppendLayers(empty.Image,
		tarLayer(t, &tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox"}, file("etc/passwd")),
		tarLayer(t, &tar.Header{Name: "models/", Typeflag: tar.TypeDir, Mode: 0o755}, ok))
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	lay.Write(ctx, "gantry.local/x:2", img)
	dest := filepath.Join(t.TempDir(), "m")
	if err := Pull(ctx, lay, "gantry.local/x:2", dest); err != nil {
		t.Fatal(err)
	}
	sameTree(t, map[string]string{"ok.bin": "hi"}, dest)

	// A non-empty destination is refused.
	if err := Pull(ctx, lay, "gantry.local/x:2", dest); !errors.Is(err, fs.ErrExist) {
		t.Errorf("pull into a non-empty directory: %v", err)
	}
}

// A blob whose bytes do not match the manifest fails the pull.
func TestPullVerifiesDigests(t *testing.T) {
	ctx := context.Background()
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(ctx, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	if _, err := lay.Write(ctx, "gantry.local/m:1", img); err != nil {
		t.Fatal(err)
	}
	man, _ := img.Manifest()
	blob := filepath.Join(lay.Dir, "blobs", "sha256", man.Layers[3].Digest.Hex)
	b, _ := os.ReadFile(blob)
	b[600] ^= 0xff // a byte of the weights
	os.Chmod(blob, 0o644)
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "m")
	err = Pull(ctx, lay, "gantry.local/m:1", dest)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Pull of a corrupted blob: %v", err)
	}
	if _, serr := os.Stat(dest); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("destination exists after a failed pull")
	}
}

// Given a writer (a terminal, in the CLI), the push draws a progress bar
// with bytes and rate; without one, and off a terminal, it stays quiet.
func TestProgressBar(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(ctx, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := NewRemote(Options{Logger: quiet, Progress: &out}).Write(ctx, host+"/models/bar:1", img); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "push "+host+"/models/bar:1") || !strings.Contains(s, "KiB") {
		t.Errorf("progress output: %q", s)
	}
}

func TestInsecureOption(t *testing.T) {
	for _, tc := range []struct {
		insecure bool
		ref      string
		scheme   string
	}{
		{false, "registry.example.com/m:1", "https"},
		{true, "registry.example.com/m:1", "http"},
		{false, "localhost:5000/m:1", "http"},
		{false, "127.0.0.1:5000/m:1", "http"},
	} {
		r, err := NewRemote(Options{Insecure: tc.insecure}).parse(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Context().Scheme(); got != tc.scheme {
			t.Errorf("Insecure=%v %s: scheme %s, want %s", tc.insecure, tc.ref, got, tc.scheme)
		}
	}
}
