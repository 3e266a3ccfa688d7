package dirtarget

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/planner"
)

func TestPutObserveDelete(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "objects")
	tg := Target{Dir: dir}
	if objs, err := tg.Observe(ctx); err != nil || len(objs) != 0 {
		t.Fatalf("missing dir: %v %v", objs, err)
	}
	o, err := planner.ObjectFromManifest(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "chat-gpu-1", "namespace": "llm",
			"labels": map[string]any{planner.LabelManagedBy: planner.ManagedBy}},
		"spec": map[string]any{"replicas": int64(2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "deployment-llm-chat-gpu-1.yaml")
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("file %v mode %v", err, info.Mode())
	}
	// Files that are not Gantry's are read past and never touched.
	os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o644)
	objs, err := tg.Observe(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("observe: %v %v", objs, err)
	}
	if d := cmp.Diff(planner.Diff(o.Manifest, objs[0].Manifest), []planner.FieldChange(nil)); d != "" {
		t.Errorf("round trip changed fields: %s", d)
	}
	if err := tg.Delete(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := tg.Delete(ctx, o); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.yaml")); err != nil {
		t.Error("an unmanaged file was removed")
	}
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("{{{"), 0o644)
	if _, err := tg.Observe(ctx); err == nil {
		t.Error("a broken manifest was read silently")
	}
}

// FuzzObserve: files in the target directory are input; reading them must
// never panic, and must either succeed or say which file is bad.
func FuzzObserve(f *testing.F) {
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  labels: {app.kubernetes.io/managed-by: gantry}\nspec: {replicas: 2}\n"))
	f.Add([]byte("metadata: 7\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		objs, err := Target{Dir: dir}.Observe(context.Background())
		if err == nil {
			for _, o := range objs {
				if o.Name == "" || o.Kind == "" {
					t.Errorf("object without identity: %+v", o)
				}
			}
		}
	})
}
