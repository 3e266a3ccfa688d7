package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestIndexParsedOncePerVersion: looking up many references in an
// unchanged layout parses index.json once, and once it is settled does
// not read it again; a write makes the next look-up see the new entry
// (never a stale index), whichever Layout value made it.
func TestIndexParsedOncePerVersion(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	refs := make([]string, 20)
	for i := range refs {
		refs[i] = fmt.Sprintf("gantry.local/models/r%02d:ck-0123456789abcdef0123456789abcdef", i)
	}
	for _, ref := range refs[:10] {
		if _, err := lay.Write(ctx, ref, img); err != nil {
			t.Fatal(err)
		}
	}

	// A fresh index: read each time, compared by bytes, parsed once.
	parses := indexParses.Load()
	got, err := Observe(ctx, lay, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("Observe found %d images, want 10", len(got))
	}
	if n := indexParses.Load() - parses; n > 1 {
		t.Errorf("20 look-ups parsed index.json %d times, want at most 1", n)
	}

	// Settled (older than indexSettle): not even read again.
	index := filepath.Join(lay.Dir, indexFile)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(index, old, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lay.Has(ctx, refs[0]); err != nil { // reads and settles it
		t.Fatal(err)
	}
	parses, hits, reads := indexParses.Load(), indexCacheHits.Load(), indexReads.Load()
	if _, err := Observe(ctx, lay, refs); err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if _, _, err := lay.Has(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if n := indexParses.Load() - parses; n != 0 {
		t.Errorf("a settled index was parsed %d times by 20 look-ups", n)
	}
	if n := indexReads.Load() - reads; n != 0 {
		t.Errorf("a settled index was read %d times by Observe and 20 look-ups", n)
	}
	if n := indexCacheHits.Load() - hits; n != 21 { // Observe looks once
		t.Errorf("%d of 21 look-ups served without reading index.json, want 21", n)
	}

	// Another writer (another Layout value on the same directory) adds an
	// image: the next look-up sees it.
	other := NewLayout(lay.Dir)
	if _, err := other.Write(ctx, refs[15], img); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := lay.Has(ctx, refs[15]); err != nil || !ok {
		t.Errorf("after another writer's push, Has(%s) = %v, %v; want true", refs[15], ok, err)
	}
	// Results are the caller's: changing one does not change the cache.
	im, _, err := lay.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	im.Manifests = im.Manifests[:0]
	if _, ok, _ := lay.Has(ctx, refs[0]); !ok {
		t.Error("a caller's change to readIndex's result reached the cache")
	}
}

// A push does not parse the index it just wrote: N pushes into one layout
// parse index.json at most once (the first read), not once per push,
// whose index grows with every release (quadratic in the releases).
func TestPushesDoNotReparseTheirIndex(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	parses := indexParses.Load()
	for i := 0; i < 20; i++ {
		ref := fmt.Sprintf("gantry.local/models/p%02d:ck-0123456789abcdef0123456789abcdef", i)
		if _, err := lay.Write(ctx, ref, img); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := lay.Has(ctx, ref); err != nil || !ok {
			t.Fatalf("Has(%s) = %v, %v", ref, ok, err)
		}
	}
	if n := indexParses.Load() - parses; n > 1 {
		t.Errorf("20 pushes parsed index.json %d times, want at most 1", n)
	}
}

// testImage is the ModelPack image of testFiles.
func testImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := BuildModelPack(context.Background(), testModel(writeModelDir(t, testFiles), testFiles))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BenchmarkLayoutWrites pushes n releases into one fresh layout, each its
// own small image (one shared model layer, its own manifest) under its own
// reference: unbatched, every Write rewrites index.json (O(n²) bytes);
// batched, the index is flushed O(log n) times (O(n) bytes). Compare the
// ratio of n=1000 to n=100 between the two.
//
//	go test ./reconcile/registry -run '^$' -bench BenchmarkLayoutWrites -benchtime 3x
func BenchmarkLayoutWrites(b *testing.B) {
	base := testImage(b)
	for _, n := range []int{100, 1000} {
		imgs := make([]v1.Image, n)
		refs := make([]string, n)
		for i := range n {
			img, ok := mutate.Annotations(base, map[string]string{AnnotationRelease: fmt.Sprintf("r%04d", i)}).(v1.Image)
			if !ok {
				b.Fatal("mutate.Annotations did not return an image")
			}
			if _, err := img.Digest(); err != nil {
				b.Fatal(err)
			}
			imgs[i] = img
			refs[i] = fmt.Sprintf("gantry.local/models/r%04d:ck-0123456789abcdef0123456789abcdef", i)
		}
		for _, batched := range []bool{false, true} {
			mode := "unbatched"
			if batched {
				mode = "batched"
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, mode), func(b *testing.B) {
				ctx := context.Background()
				writes := indexWrites.Load()
				for range b.N {
					b.StopTimer()
					lay := NewLayout(filepath.Join(b.TempDir(), "oci"))
					b.StartTimer()
					end := func(context.Context) error { return nil }
					if batched {
						end = lay.Batch()
					}
					for i, img := range imgs {
						if _, err := lay.Write(ctx, refs[i], img); err != nil {
							b.Fatal(err)
						}
					}
					if err := end(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(indexWrites.Load()-writes)/float64(b.N), "index-writes/op")
			})
		}
	}
}
