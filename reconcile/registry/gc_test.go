package registry

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerOf is an uncompressed layer with the given bytes.
func layerOf(s string) v1.Layer { return static.NewLayer([]byte(s), types.OCIUncompressedLayer) }

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// blobsOf is every blob digest of img: manifest, config, layers.
func blobsOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	d, _ := img.Digest()
	c, _ := img.ConfigName()
	out := []string{d.Hex, c.Hex}
	ls, _ := img.Layers()
	for _, l := range ls {
		h, _ := l.Digest()
		out = append(out, h.Hex)
	}
	return out
}

// diskBlobs lists blobs/sha256 with sizes.
func diskBlobs(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, _ := e.Info()
		out[e.Name()] = info.Size()
	}
	return out
}

// snapshot is every file of the layout with its size and mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			out[p] = fmt.Sprint(info.Size(), info.ModTime().UnixNano())
		}
		return err
	})
	return out
}

// GC keeps the referenced images and the newest Keep of each repository,
// removes the other entries and the blobs only they used, keeps blobs a
// kept image shares, and removes stale temp files. Dry run removes
// nothing and reports the same.
func TestLayoutGC(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	lay := NewLayout(dir)
	shared := layerOf("shared weights")
	imgs := map[string]v1.Image{
		"a1": imageOf(t, shared, layerOf("a1")),
		"a2": imageOf(t, layerOf("a2")),
		"a3": imageOf(t, layerOf("a3")),
		"b1": imageOf(t, shared, layerOf("b1")),
		"b2": imageOf(t, layerOf("b2")),
		"c1": imageOf(t, layerOf("c1")),
		"c2": imageOf(t, layerOf("c2")),
	}
	ref := func(k string) string { return "gantry.local/models/" + k[:1] + ":ck-" + k }
	for _, k := range []string{"a1", "a2", "b1", "a3", "c1", "b2", "c2"} { // written in this order
		if _, err := lay.Write(ctx, ref(k), imgs[k]); err != nil {
			t.Fatal(err)
		}
	}
	// c2, the last written, lost its time (written by another tool): it
	// counts as the oldest of c.
	im := readIndexFile(t, dir)
	for i, d := range im.Manifests {
		if d.Annotations[AnnotationCreated] == "" {
			t.Fatalf("entry %d has no %s", i, AnnotationCreated)
		}
		if d.Annotations[AnnotationImageName] == ref("c2") {
			delete(im.Manifests[i].Annotations, AnnotationCreated)
		}
	}
	if err := lay.writeIndex(&im); err != nil {
		t.Fatal(err)
	}
	// A temp file of a push that died.
	stale := filepath.Join(dir, "blobs", "sha256", "ab12cd"+blobTmpInfix+"123")
	if err := os.WriteFile(stale, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}

	b1, _ := imgs["b1"].Digest()
	opts := GCOptions{Keep: 1, Referenced: []string{"gantry.local/models/b@" + b1.String()}}
	want := map[string]bool{"a3": true, "b1": true, "b2": true, "c1": true} // newest of a, b, c; b1 referenced
	var wantBlobs []string
	for k, img := range imgs {
		if want[k] {
			wantBlobs = append(wantBlobs, blobsOf(t, img)...)
		}
	}
	slices.Sort(wantBlobs)
	wantBlobs = slices.Compact(wantBlobs)
	before := diskBlobs(t, dir)
	var wantBytes int64
	wantRemoved := 0
	for b, size := range before {
		if !slices.Contains(wantBlobs, b) {
			wantBytes += size
			wantRemoved++
		}
	}
	wantRemoved-- // the temp file is counted apart

	// Dry run: the same report, nothing touched.
	snap := snapshot(t, dir)
	dry := opts
	dry.DryRun = true
	dres, err := lay.GC(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, snapshot(t, dir)); diff != "" {
		t.Errorf("dry run changed the layout (-before +after):\n%s", diff)
	}

	res, err := lay.GC(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	digestOf := func(k string) string { d, _ := imgs[k].Digest(); return d.String() }
	wantRes := GCResult{
		Kept:    []string{ref("b1") + "@" + digestOf("b1"), ref("a3") + "@" + digestOf("a3"), ref("c1") + "@" + digestOf("c1"), ref("b2") + "@" + digestOf("b2")},
		Removed: []string{ref("a1") + "@" + digestOf("a1"), ref("a2") + "@" + digestOf("a2"), ref("c2") + "@" + digestOf("c2")},
		Blobs:   wantRemoved, Temps: 1, Bytes: wantBytes,
	}
	if diff := cmp.Diff(wantRes, res); diff != "" {
		t.Errorf("GC (-want +got):\n%s", diff)
	}
	wantRes.DryRun = true
	if diff := cmp.Diff(wantRes, dres); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	var left []string
	for b := range diskBlobs(t, dir) {
		left = append(left, b)
	}
	slices.Sort(left)
	if diff := cmp.Diff(wantBlobs, left); diff != "" {
		t.Errorf("blobs left (-want +got):\n%s", diff)
	}
	for k := range imgs {
		d, ok, err := lay.Has(ctx, ref(k))
		if err != nil || ok != want[k] || (ok && d != digestOf(k)) {
			t.Errorf("after GC, Has(%s) = %s %v %v, want %v", k, d, ok, err, want[k])
		}
	}
	checkWhole(t, dir)
	// The shared layer is still readable through b1.
	img, err := lay.Image(ctx, ref("b1"))
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	if len(ls) != 2 {
		t.Fatalf("b1 has %d layers", len(ls))
	}
	if rc, err := ls[0].Compressed(); err != nil {
		t.Errorf("b1's shared layer: %v", err)
	} else {
		rc.Close()
	}

	// Again: nothing more to do.
	again, err := lay.GC(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Removed) != 0 || again.Blobs != 0 || again.Temps != 0 || again.Bytes != 0 {
		t.Errorf("second GC removed %+v", again)
	}

	// Keep 0 keeps only what is referenced.
	res, err = lay.GC(ctx, GCOptions{Referenced: []string{b1.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 1 || len(res.Removed) != 3 {
		t.Errorf("keep 0: %+v", res)
	}
	if _, err := lay.GC(ctx, GCOptions{Keep: -1}); err == nil {
		t.Error("keep -1 accepted")
	}
	if _, err := lay.GC(ctx, GCOptions{Referenced: []string{"sha256:nothex"}}); err == nil {
		t.Error("a bad digest accepted")
	}
	// A layout that does not exist is nothing to collect.
	if res, err := NewLayout(filepath.Join(t.TempDir(), "none")).GC(ctx, opts); err != nil || len(res.Kept)+len(res.Removed) != 0 {
		t.Errorf("GC of no layout: %+v %v", res, err)
	}
}

// GC runs over and over while many goroutines, each with its own Layout
// value, push new images. Every pushed image is the newest of its
// repository, so GC must keep it whole, however the two interleave: a
// push holds the blob lock shared from its first blob to its index entry.
func TestLayoutGCWhilePushing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	const repos = 12
	ref := func(i, v int) string { return fmt.Sprintf("gantry.local/models/r%d:ck-%d", i, v) }
	for i := range repos {
		if _, err := NewLayout(dir).Write(ctx, ref(i, 0), mustRandom(t)); err != nil {
			t.Fatal(err)
		}
	}
	stopGC := gcLoop(ctx, t, dir)
	var wg sync.WaitGroup
	digests := make([]string, repos)
	for i := range repos {
		wg.Go(func() {
			for v := 1; v <= 3; v++ {
				d, err := NewLayout(dir).Write(ctx, ref(i, v), mustRandom(t))
				if err != nil {
					t.Error(err)
					return
				}
				digests[i] = d
			}
		})
	}
	wg.Wait()
	t.Logf("%d GCs ran during the pushes", stopGC())
	for i := range repos {
		if d, ok, err := NewLayout(dir).Has(ctx, ref(i, 3)); !ok || err != nil || d != digests[i] {
			t.Errorf("Has(%s) = %s %v %v, want %s", ref(i, 3), d, ok, err, digests[i])
		}
	}
	checkWhole(t, dir)
	res, err := NewLayout(dir).GC(ctx, GCOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readIndexFile(t, dir).Manifests); n != repos {
		t.Errorf("%d entries after the last GC, want %d (%+v)", n, repos, res)
	}
	checkWhole(t, dir)
}

// The same across processes: two children push while this process
// collects. Each image is its own repository, so each is kept.
func TestLayoutGCWhileOtherProcessesPush(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	const n = 20
	start := strconv.FormatInt(time.Now().Add(200*time.Millisecond).UnixNano(), 10)
	a := child(t, "write", dir, "GANTRY_LAYOUT_PREFIX=a", "GANTRY_LAYOUT_N="+strconv.Itoa(n), "GANTRY_LAYOUT_START="+start)
	b := child(t, "write", dir, "GANTRY_LAYOUT_PREFIX=b", "GANTRY_LAYOUT_N="+strconv.Itoa(n), "GANTRY_LAYOUT_START="+start)
	exited := make(chan error, 2)
	go func() { exited <- a.Wait() }()
	go func() { exited <- b.Wait() }()
	gcs, running := 0, 2
	for running > 0 {
		select {
		case err := <-exited:
			running--
			if err != nil {
				t.Errorf("child: %v", err)
			}
		default:
			if _, err := NewLayout(dir).GC(context.Background(), GCOptions{Keep: 1}); err != nil {
				t.Fatal(err)
			}
			gcs++
			time.Sleep(5 * time.Millisecond) // a daemon collects once a reconcile, not in a loop
		}
	}
	t.Logf("%d GCs ran during the pushes", gcs)
	if got := len(checkWhole(t, dir)); got != 2*n {
		t.Errorf("%d entries, want %d", got, 2*n)
	}
}

// A GC that cannot get the lock in time gives up with the context.
func TestLayoutGCWaitsForPushes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	if _, err := NewLayout(dir).Write(context.Background(), "gantry.local/models/x:ck-1", mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	c := child(t, "hang", dir) // holds the blob lock shared, forever
	waitPartial(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := NewLayout(dir).GC(ctx, GCOptions{}); err == nil {
		t.Fatal("GC ran while a push held the lock")
	}
	if left := tempFiles(t, dir); len(left) == 0 {
		t.Error("the live push's temp file is gone")
	}
	c.Process.Kill()
	c.Wait()
	res, err := NewLayout(dir).GC(context.Background(), GCOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Temps == 0 || len(tempFiles(t, dir)) != 0 {
		t.Errorf("after the push died, GC left temp files: %+v %v", res, tempFiles(t, dir))
	}
	checkWhole(t, dir)
}

// gcLoop runs GC (keep 1) on dir again and again in a goroutine, until
// the returned stop is called; stop returns how many GCs ran.
func gcLoop(ctx context.Context, t *testing.T, dir string) (stop func() int) {
	done := make(chan struct{})
	var gcs int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := NewLayout(dir).GC(ctx, GCOptions{Keep: 1}); err != nil {
				t.Error(err)
				return
			}
			gcs++
		}
	})
	return func() int {
		close(done)
		wg.Wait()
		return gcs
	}
}
