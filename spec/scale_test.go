package spec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countOpens counts the model files hashFile opens while the test runs.
func countOpens(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	orig := openFile
	openFile = func(name string) (*os.File, error) {
		n.Add(1)
		return orig(name)
	}
	t.Cleanup(func() { openFile = orig })
	return &n
}

// scaleSpecs writes n releases sharing models/shared.gguf.
func scaleSpecs(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	var src strings.Builder
	for i := 0; i < n; i++ {
		src.WriteString("release \"r" + strings.Repeat("x", i) + "\" {\n  model {\n    source = \"models/shared.gguf\"\n    format = \"gguf\"\n  }\n  runtime {\n    image = \"x\"\n  }\n}\n")
	}
	writeFile(t, filepath.Join(root, "main.hcl"), src.String())
	writeFile(t, filepath.Join(root, "models", "shared.gguf"), "GGUF\x03\x00\x00\x00one")
	return root
}

func setMtime(t *testing.T, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, root string) *Config {
	t.Helper()
	cfg, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return cfg
}

// TestModelHashedOnceAcrossLoads: a model many releases share is hashed
// once per Load, and not at all by the next Load while the file is the
// same version; a new version (same size, other content) is hashed again
// and gives its own digest, and a file modified just now is not trusted
// by its identity at all.
func TestModelHashedOnceAcrossLoads(t *testing.T) {
	opens := countOpens(t)
	root := scaleSpecs(t, 20)
	model := filepath.Join(root, "models", "shared.gguf")
	setMtime(t, model, time.Now().Add(-time.Hour))

	first := mustLoad(t, root).Releases[0].Model.Digest
	if got := opens.Load(); got != 1 {
		t.Fatalf("first Load of 20 releases sharing a model hashed it %d times, want 1", got)
	}
	again := mustLoad(t, root)
	if got := opens.Load(); got != 1 {
		t.Errorf("second Load of an unchanged model hashed it again (%d opens)", got)
	}
	if d := again.Releases[19].Model.Digest; d != first {
		t.Errorf("cached digest %s, want %s", d, first)
	}

	// Same size, other bytes, another (old) modification time.
	writeFile(t, model, "GGUF\x03\x00\x00\x00two")
	setMtime(t, model, time.Now().Add(-30*time.Minute))
	changed := mustLoad(t, root).Releases[0].Model.Digest
	if changed == first {
		t.Fatalf("a changed model kept its old digest %s", first)
	}
	if got := opens.Load(); got != 2 {
		t.Errorf("changed model: %d opens in all, want 2", got)
	}
	want, err := FileDigest(context.Background(), model)
	if err != nil || want != changed {
		t.Errorf("digest %s, FileDigest says %s (%v)", changed, want, err)
	}

	// Modified just now: hashed on every Load, since a rewrite within the
	// timestamp granularity could keep size and time.
	writeFile(t, model, "GGUF\x03\x00\x00\x00new")
	before := opens.Load()
	mustLoad(t, root)
	mustLoad(t, root)
	if got := opens.Load() - before; got != 2 {
		t.Errorf("a model modified just now was hashed %d times in two Loads, want 2", got)
	}
}

// TestFitsWorkedOutOncePerPoolSet: the static inventory is scanned once
// per set of pools, not once per release.
func TestFitsWorkedOutOncePerPoolSet(t *testing.T) {
	root := t.TempDir()
	var src strings.Builder
	src.WriteString("node_pool \"a\" {\n  selector = { x = \"a\" }\n}\nnode_pool \"b\" {\n  selector = { x = \"b\" }\n}\n")
	src.WriteString("node \"n1\" {\n  pool = \"a\"\n  gpus = 8\n  gpu_memory = \"80Gi\"\n}\nnode \"n2\" {\n  pool = \"b\"\n  gpus = 1\n  gpu_memory = \"24Gi\"\n}\n")
	for i, pools := range []string{`["a"]`, `["b"]`, `["a"]`, `["b", "a"]`, `["a", "b"]`} {
		src.WriteString("release \"r" + strings.Repeat("x", i) + "\" {\n  model {\n    source = \"m.gguf\"\n    format = \"gguf\"\n  }\n  runtime {\n    image = \"x\"\n  }\n  resources {\n    gpus = 2\n    gpu_memory = \"20Gi\"\n  }\n  placement {\n    pools = " + pools + "\n  }\n}\n")
	}
	writeFile(t, filepath.Join(root, "main.hcl"), src.String())
	writeFile(t, filepath.Join(root, "m.gguf"), "GGUF\x03\x00\x00\x00")
	cfg, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
	// Only the releases limited to pool b (one GPU per node) cannot fit.
	var gpuErrs int
	for _, d := range diags {
		if d.Summary == "GPUs exceed every node" {
			gpuErrs++
		}
	}
	if gpuErrs != 1 {
		t.Fatalf("%d GPU errors, want 1 (release limited to pool b): %s", gpuErrs, diags.Error())
	}
	v := &validator{cfg: cfg}
	pools := map[string]*NodePool{}
	for i := range cfg.Pools {
		pools[cfg.Pools[i].Name] = &cfg.Pools[i]
	}
	for i := range cfg.Releases {
		v.placement(&cfg.Releases[i], pools)
	}
	if len(v.rooms) != 3 {
		t.Errorf("%d pool sets worked out for 5 releases, want 3 (a; b; a, b)", len(v.rooms))
	}
}

// TestBlocksIndexedOncePerFile: looking up attribute ranges for every
// release of one file indexes that file's blocks once, not once per
// release (a scan per look-up cost releases × blocks: 35 s for 10,000).
func TestBlocksIndexedOncePerFile(t *testing.T) {
	root := scaleSpecs(t, 50)
	before := blockIndexes.Load()
	cfg := mustLoad(t, root)
	if n := blockIndexes.Load() - before; n != 1 {
		t.Errorf("50 releases in one file: %d block indexes built, want 1", n)
	}
	// The index finds what a walk finds: the source attribute's range.
	v := &validator{cfg: cfg}
	r := cfg.Releases[49].Model
	got := v.attr(r.DefRange, "source")
	if got == r.DefRange || !strings.Contains(string(got.SliceBytes(cfg.Files[got.Filename].Bytes)), "models/shared.gguf") {
		t.Errorf("attr(source) = %s, not the source attribute", got)
	}
}
