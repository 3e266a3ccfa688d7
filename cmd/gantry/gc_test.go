package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

// layoutEntries returns the image names in index.json, in index order.
func layoutEntries(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range im.Manifests {
		out = append(out, d.Annotations[registry.AnnotationImageName])
	}
	return out
}

// gantry gc and gantry run --gc-keep on the quickstart: images that the
// objects reference stay, so a reconcile after GC rebuilds nothing; old
// images beyond --keep go; --dry-run removes nothing; a registry in the
// specs is refused.
func TestGC(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	lay := registry.NewLayout(filepath.Join(state, "oci"))
	old := func(i string) string { return "gantry.local/models/tiny-chat:ck-old" + i }
	for _, i := range []string{"1", "2", "3", "4", "5"} { // older than what run builds
		img, _ := random.Image(4096, 2)
		if _, err := lay.Write(ctx, old(i), img); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"--repo", quickstart, "--state-dir", state}
	runOnce := func(extra ...string) string {
		t.Helper()
		code, out, errs := gantry(t, append(append([]string{"run", "--once"}, common...), extra...)...)
		if code != 0 {
			t.Fatalf("run --once: exit %d\n%s\n%s", code, out, errs)
		}
		return out
	}
	runOnce("--gc-keep", "0")
	all := layoutEntries(t, lay.Dir)
	var current []string
	for _, e := range all {
		if !strings.Contains(e, ":ck-old") {
			current = append(current, e)
		}
	}
	// The current images are two, each with its attestation (tagged
	// sha256-<digest>.att), which GC keeps with its image.
	if len(all) != 9 || len(current) != 4 {
		t.Fatalf("after run --gc-keep 0: %v", all)
	}

	// Dry run: the report, and nothing removed.
	index, _ := os.ReadFile(filepath.Join(lay.Dir, "index.json"))
	code, out, errs := gantry(t, append([]string{"gc", "--keep", "1", "--dry-run"}, common...)...)
	if code != 0 || !strings.Contains(out, "Would remove 5 images") || !strings.Contains(out, "- "+old("1")+"@sha256:") {
		t.Fatalf("gc --dry-run: exit %d\n%s\n%s", code, out, errs)
	}
	if after, _ := os.ReadFile(filepath.Join(lay.Dir, "index.json")); string(after) != string(index) {
		t.Error("gc --dry-run changed index.json")
	}

	// The daemon's GC after a reconcile (the default --gc-keep 3): the
	// current image and the two newest old ones of tiny-chat stay.
	if out := runOnce(); !strings.Contains(out, "No changes.") {
		t.Errorf("run --once after the first: %s", out)
	}
	want := append([]string{old("4"), old("5")}, current...)
	got := layoutEntries(t, lay.Dir)
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after run with --gc-keep 3 (-want +got):\n%s", diff)
	}

	// gc --keep 0: only what the objects reference stays, and the next
	// reconcile has nothing to build.
	code, out, errs = gantry(t, append([]string{"gc", "--keep", "0"}, common...)...)
	if code != 0 || !strings.Contains(out, "Removed 2 images") || !strings.Contains(out, "kept 2 images") {
		t.Fatalf("gc --keep 0: exit %d\n%s\n%s", code, out, errs)
	}
	got = layoutEntries(t, lay.Dir)
	slices.Sort(got)
	slices.Sort(current)
	if diff := cmp.Diff(current, got); diff != "" {
		t.Errorf("after gc --keep 0 (-want +got):\n%s", diff)
	}
	if out := runOnce("--gc-keep", "0"); !strings.Contains(out, "No changes.") || !strings.Contains(out, "0 actions executed") {
		t.Errorf("run --once after gc rebuilt something:\n%s", out)
	}

	// Bad flags and targets.
	if code, _, errs := gantry(t, append([]string{"gc", "--keep", "-1"}, common...)...); code != 1 || !strings.Contains(errs, "--keep -1") {
		t.Errorf("gc --keep -1: %d %s", code, errs)
	}
	if code, _, errs := gantry(t, append([]string{"gc", "--target", "nowhere"}, common...)...); code != 1 || !strings.Contains(errs, "want kube or dir:PATH") {
		t.Errorf("gc --target nowhere: %d %s", code, errs)
	}
}

func TestGCRefusesRegistry(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gantry.hcl")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "gantry {", "gantry {\n  registry = \"registry.example.com/models\"", 1))
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	code, out, errs := gantry(t, "gc", "--repo", dir, "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "registry.example.com/models") || !strings.Contains(errs, "gc only collects the local layout") {
		t.Fatalf("gc with a registry: exit %d\n%s\n%s", code, out, errs)
	}
}

func TestReferencedDigests(t *testing.T) {
	d1 := "sha256:" + strings.Repeat("1", 64)
	d2 := "sha256:" + strings.Repeat("2", 64)
	d3 := "sha256:" + strings.Repeat("3", 64)
	objs := []planner.Object{
		{Kind: "Service", Manifest: map[string]any{"metadata": map[string]any{"annotations": map[string]any{planner.AnnotationModelDigest: d1}}}},
		{Kind: "Deployment", Manifest: map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{planner.AnnotationModelDigest: planner.UnknownDigest}},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"containers": []any{map[string]any{"image": "gantry.local/models/m@" + d2}},
				"volumes":    []any{map[string]any{"image": map[string]any{"reference": "r.example/x@" + d3}}},
			}}},
		}},
	}
	if diff := cmp.Diff([]string{d1, d2, d3}, referencedDigests(objs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
