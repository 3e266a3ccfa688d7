package dirtarget

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// TestObserveDecodesOnlyChangedFiles: observing a directory of unchanged
// objects decodes none of them again; a file whose bytes changed, even to
// the same length, is decoded again and observed as it is now; what a
// caller does to the objects it got does not reach the next Observe.
func TestObserveDecodesOnlyChangedFiles(t *testing.T) {
	ctx := context.Background()
	tg := Target{Dir: filepath.Join(t.TempDir(), "objects")}
	for i := 0; i < 30; i++ {
		o, err := planner.ObjectFromManifest(map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": fmt.Sprintf("svc-%02d", i), "namespace": "llm",
				"labels": map[string]any{planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: "r"}},
			"spec": map[string]any{"port": int64(8000)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	observe := func() ([]planner.Object, int64) {
		t.Helper()
		before := yamlDecodes.Load()
		objs, err := tg.Observe(ctx)
		if err != nil || len(objs) != 30 {
			t.Fatalf("Observe: %d objects, %v", len(objs), err)
		}
		return objs, yamlDecodes.Load() - before
	}
	objs, n := observe()
	if n != 0 {
		t.Fatalf("first Observe decoded %d files, want none: Put recorded what it wrote", n)
	}
	objs[0].Manifest["spec"].(map[string]any)["port"] = "changed by the caller"
	objs, n = observe()
	if n != 0 {
		t.Errorf("Observe of unchanged files decoded %d of them", n)
	}
	if p := objs[0].Manifest["spec"].(map[string]any)["port"]; p != float64(8000) {
		t.Errorf("port = %v after a caller changed its copy, want 8000", p)
	}

	// Same length, other bytes.
	path := filepath.Join(tg.Dir, "service-llm-svc-07.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "8000", "9000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, n = observe()
	if n != 1 {
		t.Errorf("one changed file: %d decoded, want 1", n)
	}
	for _, o := range objs {
		if o.Name == "svc-07" && o.Manifest["spec"].(map[string]any)["port"] != float64(9000) {
			t.Errorf("svc-07 observed with port %v, want 9000", o.Manifest["spec"].(map[string]any)["port"])
		}
	}
	if err := tg.Delete(ctx, objs[3]); err != nil {
		t.Fatal(err)
	}
	if objs, err := tg.Observe(ctx); err != nil || len(objs) != 29 {
		t.Errorf("after a delete: %d objects, %v", len(objs), err)
	}
}

// forgetAll empties the in-process cache: what a new process starts with.
func forgetAll() {
	parsedCache.mu.Lock()
	clear(parsedCache.dirs)
	parsedCache.mu.Unlock()
}

// TestSavedCacheServesTheNextProcess: after Save, a new process (an
// empty in-process cache) observes a directory of unchanged files
// without decoding any YAML, and observes exactly what a cold decode of
// the files gives; a file edited since is decoded; a corrupt or foreign
// cache file is ignored.
func TestSavedCacheServesTheNextProcess(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	tg := Target{Dir: filepath.Join(state, "objects"), CacheDir: filepath.Join(state, "work")}
	cfgObjects := renderedObjects(t)
	putAll := func() {
		t.Helper()
		for _, o := range cfgObjects {
			if err := tg.Put(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	putAll()
	observe := func(step string) ([]planner.Object, int64) {
		t.Helper()
		before := yamlDecodes.Load()
		objs, err := tg.Observe(ctx)
		if err != nil || len(objs) != len(cfgObjects) {
			t.Fatalf("%s: Observe: %d objects, %v", step, len(objs), err)
		}
		return objs, yamlDecodes.Load() - before
	}
	forgetAll()
	cold, n := observe("cold, no cache file")
	if n != int64(len(cfgObjects)) {
		t.Fatalf("cold Observe decoded %d of %d files", n, len(cfgObjects))
	}
	if err := tg.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(tg.Dir); len(entries) != len(cfgObjects) {
		t.Errorf("the objects directory has %d entries, want only the %d objects", len(entries), len(cfgObjects))
	}
	forgetAll()
	warm, n := observe("new process, cache saved")
	if n != 0 {
		t.Errorf("with the cache file, Observe decoded %d files, want 0", n)
	}
	if d := cmp.Diff(cold, warm); d != "" {
		t.Errorf("the cache observes otherwise than the YAML (-yaml +cache):\n%s", d)
	}

	// What Put records (never decoded) is what a decode gives, after a
	// Save and a new process too.
	putAll()
	if err := tg.Save(ctx); err != nil {
		t.Fatal(err)
	}
	forgetAll()
	put, n := observe("new process, cache from Put")
	if n != 0 {
		t.Errorf("Observe decoded %d files Put recorded", n)
	}
	if d := cmp.Diff(cold, put); d != "" {
		t.Errorf("Put's record differs from the YAML (-yaml +recorded):\n%s", d)
	}

	// A hand edit since the Save: that file alone is decoded.
	path := filepath.Join(tg.Dir, FileName(cfgObjects[0]))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, []byte("# edited\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	forgetAll()
	if _, n := observe("one file edited"); n != 1 {
		t.Errorf("one edited file: %d decoded, want 1", n)
	}

	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Corrupt, or another format: ignored.
	for _, junk := range []string{"{not json", `{"format": 99, "files": {}}`} {
		if err := os.WriteFile(tg.cacheFile(), []byte(junk), 0o644); err != nil {
			t.Fatal(err)
		}
		forgetAll()
		got, n := observe("cache file " + junk)
		if n != int64(len(cfgObjects)) {
			t.Errorf("cache file %q: %d decoded, want all %d", junk, n, len(cfgObjects))
		}
		if d := cmp.Diff(cold, got); d != "" {
			t.Errorf("cache file %q: (-before +after):\n%s", junk, d)
		}
	}
}

// renderedObjects are the objects the planner renders for a release
// with three shards: what the dir target holds in use.
func renderedObjects(t *testing.T) []planner.Object {
	t.Helper()
	replicas := 4
	r := &spec.Release{Name: "chat", Replicas: &replicas,
		Model:   spec.Model{Source: "models/m.gguf", Format: "gguf", Digest: "sha256:" + strings.Repeat("ab", 32)},
		Runtime: spec.Runtime{Image: "ghcr.io/ggml-org/llama.cpp:server", Args: []string{"--port", "8080"}, Port: 8080, Env: map[string]string{"A": "1"}, HealthPath: "/health"}}
	objs, err := planner.Render(planner.RenderInput{Release: r, Namespace: "llm", Revision: "abc",
		Model:     planner.Model{Ref: "gantry.local/models/chat:ck-1", Digest: "sha256:" + strings.Repeat("cd", 32), Key: "k"},
		Placement: map[string]int{"gpu-1": 2, "gpu-2": 1, "gpu-3": 1}})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
