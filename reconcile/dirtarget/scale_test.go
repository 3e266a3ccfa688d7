package dirtarget

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/planner"
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
	if n != 30 {
		t.Fatalf("first Observe decoded %d files, want 30", n)
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
