package registry

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestModelPackShape(t *testing.T) {
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(context.Background(), testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	man, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if man.ArtifactType != ArtifactTypeModelManifest || man.MediaType != types.OCIManifestSchema1 || man.Config.MediaType != MediaTypeModelConfig {
		t.Errorf("manifest types: artifactType %q mediaType %q config %q", man.ArtifactType, man.MediaType, man.Config.MediaType)
	}
	wantAnns := map[string]string{
		AnnotationRelease: "tiny-chat", AnnotationContentKey: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		AnnotationModelDigest: "sha256:554d52f687ff", AnnotationQuantization: "int4",
		AnnotationQuantize: `{"group_size":"128","method":"int4"}`,
		AnnotationRevision: "4e32347719d5", AnnotationGitRevision: "4e32347719d5", AnnotationVersion: "ck-0123456789abcdef",
	}
	if diff := cmp.Diff(wantAnns, man.Annotations); diff != "" {
		t.Errorf("manifest annotations (-want +got):\n%s", diff)
	}

	// Layers sorted by path, typed by kind, annotated with the path.
	type layerInfo struct{ Path, Title, MediaType string }
	var got []layerInfo
	for _, l := range man.Layers {
		got = append(got, layerInfo{l.Annotations[AnnotationFilepath], l.Annotations[AnnotationTitle], string(l.MediaType)})
	}
	want := []layerInfo{
		{"README.md", "README.md", string(MediaTypeModelDoc)},
		{"config.json", "config.json", string(MediaTypeModelConfigFile)},
		{"extra/generation_config.json", "generation_config.json", string(MediaTypeModelConfigFile)},
		{"model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors", string(MediaTypeModelWeight)},
		{"model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors", string(MediaTypeModelWeight)},
		{"tokenizer.json", "tokenizer.json", string(MediaTypeModelConfigFile)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}

	// The config is ModelPack's JSON, field names as in specs-go/v1.
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	diffIDs := []any{}
	for _, l := range man.Layers {
		diffIDs = append(diffIDs, l.Digest.String()) // uncompressed: digest == diffId
	}
	wantCfg := map[string]any{
		"descriptor": map[string]any{"name": "tiny-chat", "version": "ck-0123456789abcdef", "revision": "4e32347719d5"},
		"config":     map[string]any{"format": "safetensors", "precision": "int4", "quantization": "int4", "paramSize": "1m"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": diffIDs},
	}
	if diff := cmp.Diff(wantCfg, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	// Tars are reproducible: parents first, mtime 0, uid/gid 0, fixed modes.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs := tarHeaders(t, layers[2])
	wantHdrs := []string{"extra/ dir 0755", "extra/generation_config.json file 0644"}
	var gotHdrs []string
	for _, h := range hdrs {
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v uid %d gid %d uname %q gname %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		kind := "file"
		if h.Typeflag == tar.TypeDir {
			kind = "dir"
		}
		gotHdrs = append(gotHdrs, h.Name+" "+kind+" "+fmtMode(h.Mode))
	}
	if diff := cmp.Diff(wantHdrs, gotHdrs); diff != "" {
		t.Errorf("tar entries (-want +got):\n%s", diff)
	}
}

func fmtMode(m int64) string {
	return "0" + string(rune('0'+m>>6&7)) + string(rune('0'+m>>3&7)) + string(rune('0'+m&7))
}

func tarHeaders(t *testing.T, l v1.Layer) []*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []*tar.Header
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
}

// The same input gives the same digest, whatever the order of Files, the
// files' mtimes and modes, or where the files live on disk.
func TestReproducibleDigests(t *testing.T) {
	ctx := context.Background()
	base, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	build := func() (string, string) {
		dir := writeModelDir(t, testFiles) // a new directory each time
		old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		for p := range testFiles {
			full := filepath.Join(dir, filepath.FromSlash(p))
			os.Chtimes(full, old, time.Now().Add(-time.Duration(len(p))*time.Hour))
		}
		m := testModel(dir, testFiles)
		mp, err := BuildModelPack(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		mc, err := BuildModelcar(ctx, base, m)
		if err != nil {
			t.Fatal(err)
		}
		d1, err := mp.Digest()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := mc.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d1.String(), d2.String()
	}
	a1, a2 := build()
	b1, b2 := build()
	if a1 != b1 || a2 != b2 {
		t.Errorf("digests differ between identical builds: modelpack %s vs %s, modelcar %s vs %s", a1, b1, a2, b2)
	}

	// A different revision is a different artifact (it is recorded).
	dir := writeModelDir(t, testFiles)
	m := testModel(dir, testFiles)
	m.Revision = "ffffffffffff"
	img, err := BuildModelPack(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() == a1 {
		t.Error("changing the revision kept the digest")
	}
}

func TestModelcarShape(t *testing.T) {
	ctx := context.Background()
	dir := writeModelDir(t, testFiles)
	base, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	base = mutate.MediaType(base, types.OCIManifestSchema1)
	img, err := BuildModelcar(ctx, base, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	// validate's layer check assumes gzip; check the uncompressed layers'
	// digests by hand below.
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("validate: %v", err)
	}
	man, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Layers) != 1+len(testFiles) {
		t.Fatalf("%d layers, want base + %d", len(man.Layers), len(testFiles))
	}
	if man.Annotations[AnnotationContentKey] == "" || man.Annotations[AnnotationRevision] != "4e32347719d5" {
		t.Errorf("annotations: %v", man.Annotations)
	}
	layers, _ := img.Layers()
	for i, l := range man.Layers[1:] {
		if l.MediaType != types.OCIUncompressedLayer {
			t.Errorf("layer %d: media type %s", i+1, l.MediaType)
		}
		rc, _ := layers[i+1].Compressed()
		d, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || d != l.Digest || n != l.Size {
			t.Errorf("layer %d: content hashes to %s (%d bytes), manifest says %s (%d): %v", i+1, d, n, l.Digest, l.Size, err)
		}
		hdrs := tarHeaders(t, layers[i+1])
		last := hdrs[len(hdrs)-1].Name
		if hdrs[0].Name != "models/" || last != "models/"+l.Annotations[AnnotationFilepath] {
			t.Errorf("layer %d: entries %s ... %s", i+1, hdrs[0].Name, last)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		t.Errorf("config has %d diff ids for %d layers", len(cfg.RootFS.DiffIDs), len(man.Layers))
	}

	// A scratch base works too (no base layers).
	if _, err := BuildModelcar(ctx, empty.Image, testModel(dir, testFiles)); err != nil {
		t.Errorf("scratch base: %v", err)
	}
}

func TestBuildRejects(t *testing.T) {
	dir := writeModelDir(t, testFiles)
	for name, files := range map[string][]File{
		"escaping path": {{Path: "../x", Source: filepath.Join(dir, "config.json")}},
		"absolute path": {{Path: "/etc/passwd", Source: filepath.Join(dir, "config.json")}},
		"unclean path":  {{Path: "a//b", Source: filepath.Join(dir, "config.json")}},
		"duplicate":     {{Path: "a", Source: filepath.Join(dir, "config.json")}, {Path: "a", Source: filepath.Join(dir, "README.md")}},
		"missing file":  {{Path: "a", Source: filepath.Join(dir, "nope")}},
		"directory":     {{Path: "a", Source: dir}},
		"no files":      nil,
	} {
		t.Run(name, func(t *testing.T) {
			m := testModel(dir, nil)
			m.Files = files
			if _, err := BuildModelPack(context.Background(), m); err == nil {
				t.Error("BuildModelPack: no error")
			}
		})
	}
}

func TestLayerMediaType(t *testing.T) {
	for p, want := range map[string]string{
		"model.safetensors": string(MediaTypeModelWeight), "tiny.Q4_K_M.gguf": string(MediaTypeModelWeight),
		"config.json": string(MediaTypeModelConfigFile), "tokenizer.model": string(MediaTypeModelConfigFile),
		"README.md": string(MediaTypeModelDoc), "LICENSE": string(MediaTypeModelDoc), "docs/usage.md": string(MediaTypeModelDoc),
	} {
		if got := string(LayerMediaType(p)); got != want {
			t.Errorf("LayerMediaType(%q) = %s, want %s", p, got, want)
		}
	}
}

// settleFiles sets the modification time of dir's files to at, long
// enough ago for their versions to vouch for their content.
func settleFiles(t *testing.T, dir string, at time.Time) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Chtimes(filepath.Join(dir, e.Name()), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// Releases sharing a model file hash it once per version of the file,
// not once per release: a new build over the same, unchanged file reuses
// the digest. A file rewritten (new modification time), replaced (new
// inode) or grown is hashed again.
func TestLayerHashedOncePerFileVersion(t *testing.T) {
	ctx := context.Background()
	files := map[string]string{"tiny.Q4_K_M.gguf": strings.Repeat("weights!", 8192)}
	dir := writeModelDir(t, files)
	file := filepath.Join(dir, "tiny.Q4_K_M.gguf")
	long := time.Now().Add(-time.Hour)
	settleFiles(t, dir, long)
	build := func(release string) v1.Hash {
		t.Helper()
		m := testModel(dir, files)
		m.Release = release
		img, err := BuildModelPack(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		man, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		return man.Layers[0].Digest
	}
	passes := layerHashes.Load()
	first := build("r0")
	for i := 1; i < 30; i++ {
		if d := build(fmt.Sprintf("r%d", i)); d != first {
			t.Fatalf("release r%d: layer %s, want %s", i, d, first)
		}
	}
	if n := layerHashes.Load() - passes; n != 1 {
		t.Errorf("30 builds of one file hashed it %d times, want 1", n)
	}

	// Rewritten in place, same size, new content: hashed again.
	passes = layerHashes.Load()
	if err := os.WriteFile(file, []byte(strings.Repeat("WEIGHTS!", 8192)), 0o644); err != nil {
		t.Fatal(err)
	}
	settleFiles(t, dir, long.Add(time.Minute))
	second := build("r0")
	if second == first {
		t.Error("a rewritten file kept its digest")
	}
	if d := build("r1"); d != second {
		t.Errorf("layer %s, want %s", d, second)
	}
	if n := layerHashes.Load() - passes; n != 1 {
		t.Errorf("builds after a rewrite hashed %d times, want 1", n)
	}

	// Replaced by another file (rename) with the same content and times:
	// a new inode, hashed again, the same digest.
	passes = layerHashes.Load()
	tmp := filepath.Join(t.TempDir(), "new")
	if err := os.WriteFile(tmp, []byte(strings.Repeat("WEIGHTS!", 8192)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, long.Add(time.Minute), long.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	if d := build("r2"); d != second {
		t.Errorf("the same content under a new inode: layer %s, want %s", d, second)
	}
	if n := layerHashes.Load() - passes; n != 1 {
		t.Errorf("a replaced file was hashed %d times, want 1", n)
	}

	// Just modified: within the time a rewrite could keep the same
	// modification time, the version does not vouch for the content.
	passes = layerHashes.Load()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more")
	f.Close()
	third := build("r0")
	if third == second {
		t.Error("a grown file kept its digest")
	}
	build("r1")
	if n := layerHashes.Load() - passes; n != 2 {
		t.Errorf("two builds of a file modified just now hashed it %d times, want 2", n)
	}
}

// A layer whose file changes size after the layer was made fails loudly
// when it is streamed (here: written to a layout), whether the file
// shrank or grew: it never streams content that does not match its
// digest under that digest.
func TestLayerFailsWhenFileChangesSize(t *testing.T) {
	ctx := context.Background()
	for name, change := range map[string]func(string) error{
		"shrank": func(p string) error { return os.Truncate(p, 100) },
		"grew": func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("more weights")
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{"model.safetensors": strings.Repeat("w", 4096)}
			dir := writeModelDir(t, files)
			settleFiles(t, dir, time.Now().Add(-time.Hour))
			if _, err := BuildModelPack(ctx, testModel(dir, files)); err != nil { // the sum is kept
				t.Fatal(err)
			}
			img, err := BuildModelPack(ctx, testModel(dir, files))
			if err != nil {
				t.Fatal(err)
			}
			if err := change(filepath.Join(dir, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
			_, err = lay.Write(ctx, "gantry.local/models/m:ck-1", img)
			if err == nil {
				t.Fatal("a layer whose file changed size was written")
			}
			if !strings.Contains(err.Error(), "changed size while packaging") {
				t.Errorf("error: %v, want it to say the file changed size", err)
			}
			if _, ok, _ := lay.Has(ctx, "gantry.local/models/m:ck-1"); ok {
				t.Error("the image is in the layout")
			}
		})
	}
}
