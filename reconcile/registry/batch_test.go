package registry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// batchState is a copy of what the directory's batches keep, for tests.
func batchState(dir string) (open, pending int, holds bool) {
	b := &locksFor(dir).batch
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, len(b.pending), b.hold != nil
}

// checkBatchesDone fails the test if a batch is left open, an entry
// pending or the blob lock held on dir.
func checkBatchesDone(t testing.TB, dir string) {
	t.Helper()
	if open, pending, holds := batchState(dir); open != 0 || pending != 0 || holds {
		t.Errorf("after the batches: %d open, %d entries pending, blob lock held %v", open, pending, holds)
	}
}

// 1,000 writes in a batch rewrite index.json a few times (O(log N)), and
// write O(N) bytes of it in all, not O(N²): unbatched, each write
// rewrites the whole index.
func TestBatchIndexWritesLinear(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	const n = 1000
	writes, bytes := indexWrites.Load(), indexBytesWritten.Load()
	end := lay.Batch()
	for i := range n {
		ref := fmt.Sprintf("gantry.local/models/r%04d:ck-0123456789abcdef0123456789abcdef", i)
		if _, err := lay.Write(ctx, ref, img); err != nil {
			t.Fatal(err)
		}
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	writes, bytes = indexWrites.Load()-writes, indexBytesWritten.Load()-bytes
	st, err := os.Stat(filepath.Join(lay.Dir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes in a batch: index.json written %d times, %d bytes (final %d bytes, %.1f×)", n, writes, bytes, st.Size(), float64(bytes)/float64(st.Size()))
	// Flushes at 16, 32, 48, 64, then each a quarter more, and the end.
	if writes > 25 {
		t.Errorf("index.json written %d times for %d writes, want at most 25", writes, n)
	}
	if bytes > 8*st.Size() {
		t.Errorf("%d bytes of index.json written, more than 8× its final %d bytes", bytes, st.Size())
	}
	if got := len(checkWhole(t, lay.Dir)); got != n {
		t.Errorf("index.json has %d entries, want %d", got, n)
	}
	checkBatchesDone(t, lay.Dir)

	// Unbatched, for comparison: each write rewrites the index.
	writes = indexWrites.Load()
	for i := range 20 {
		if _, err := lay.Write(ctx, fmt.Sprintf("gantry.local/models/u%d:ck-1", i), img); err != nil {
			t.Fatal(err)
		}
	}
	if w := indexWrites.Load() - writes; w != 20 {
		t.Errorf("20 writes without a batch wrote index.json %d times, want 20", w)
	}
}

// In a batch, Has and Image (of any Layout value on the directory) see
// an entry as soon as Write returns, before index.json has it; a newer
// write of the tag replaces it; nested batches flush at the last end.
func TestBatchReadYourWrites(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	lay, other := NewLayout(dir), NewLayout(dir)
	const ref = "gantry.local/models/tiny-chat:ck-0123456789abcdef0123456789abcdef"
	img, img2 := testImage(t), mustRandom(t)
	want, _ := img.Digest()
	want2, _ := img2.Digest()

	outer := lay.Batch() // before the directory exists
	inner := other.Batch()
	if got, err := lay.Write(ctx, ref, img); err != nil || got != want.String() {
		t.Fatalf("Write = %s, %v; want %s", got, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); !os.IsNotExist(err) {
		t.Fatalf("index.json written in a batch with one entry: %v", err)
	}
	for _, l := range []*Layout{lay, other, NewLayout(dir + "/")} {
		if d, ok, err := l.Has(ctx, ref); err != nil || !ok || d != want.String() {
			t.Errorf("Has(%s) on a pending entry = %s %v %v, want %s", ref, d, ok, err, want)
		}
	}
	byDigest := "gantry.local/models/tiny-chat@" + want.String()
	if d, ok, err := other.Has(ctx, byDigest); err != nil || !ok || d != want.String() {
		t.Errorf("Has(%s) on a pending entry = %s %v %v", byDigest, d, ok, err)
	}
	got, err := other.Image(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("Image(%s) has digest %s, want %s", ref, d, want)
	}
	dest := filepath.Join(t.TempDir(), "model")
	if err := Pull(ctx, other, ref, dest); err != nil {
		t.Fatal(err)
	}
	sameTree(t, testFiles, dest)
	// The same image again: nothing more is pending.
	if _, err := other.Write(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	if _, pending, _ := batchState(dir); pending != 1 {
		t.Errorf("%d entries pending after writing one image twice, want 1", pending)
	}

	// Another image under the tag: the newest wins.
	if _, err := other.Write(ctx, ref, img2); err != nil {
		t.Fatal(err)
	}
	if d, ok, _ := lay.Has(ctx, ref); !ok || d != want2.String() {
		t.Errorf("after re-tagging, Has(%s) = %s %v, want %s", ref, d, ok, want2)
	}
	if err := inner(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inner(ctx); err != nil { // a second end does nothing
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); !os.IsNotExist(err) {
		t.Fatalf("index.json written before the last batch ended: %v", err)
	}
	if err := outer(ctx); err != nil {
		t.Fatal(err)
	}
	entries := checkWhole(t, dir)
	if len(entries) != 1 || entries[ref].Digest != want2 {
		t.Errorf("index.json after the batch: %v, want only %s at %s", entries, ref, want2)
	}
	checkBatchesDone(t, dir)
	if _, err := os.Stat(filepath.Join(dir, ociLayoutFile)); err != nil {
		t.Errorf("no oci-layout file: %v", err)
	}

	// A write of a recorded image in a batch leaves index.json alone.
	before, _ := os.ReadFile(filepath.Join(dir, indexFile))
	end := lay.Batch()
	if _, err := lay.Write(ctx, ref, img2); err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, indexFile)); string(after) != string(before) {
		t.Errorf("rewriting a recorded image changed index.json")
	}
}

// 30 goroutines, each in its own batch (all overlapping), on two Layout
// values of one directory, write distinct references and one shared
// one. After the batches end, index.json has exactly every reference
// once, the shared one at the image Has gave last.
func TestBatchConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	lays := []*Layout{NewLayout(dir), NewLayout(dir)}
	const writers, each = 30, 4
	const shared = "gantry.local/models/shared:ck-1"
	outer := lays[0].Batch()
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	want := map[string]string{}
	var mu sync.Mutex
	ready.Add(writers)
	for w := range writers {
		wg.Go(func() {
			lay := lays[w%2]
			end := lay.Batch()
			ready.Done()
			<-start
			defer func() {
				if err := end(ctx); err != nil {
					t.Error(err)
				}
			}()
			for i := range each {
				ref := fmt.Sprintf("gantry.local/models/r%02d-%d:ck-1", w, i)
				if w%3 == 0 && i == 1 {
					ref = shared
				}
				d, err := lay.Write(ctx, ref, mustRandom(t))
				if err != nil {
					t.Error(err)
					return
				}
				if got, ok, err := lay.Has(ctx, ref); err != nil || !ok || (ref != shared && got != d) {
					t.Errorf("right after Write, Has(%s) = %s %v %v, want %s", ref, got, ok, err, d)
				}
				if ref != shared {
					mu.Lock()
					want[ref] = d
					mu.Unlock()
				}
			}
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	d, ok, err := lays[1].Has(ctx, shared)
	if err != nil || !ok {
		t.Fatalf("Has(%s) = %v %v", shared, ok, err)
	}
	want[shared] = d
	if err := outer(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for ref, e := range checkWhole(t, dir) {
		got[ref] = e.Digest.String()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("index.json (-want +got):\n%s", diff)
	}
	if n := len(readIndexFile(t, dir).Manifests); n != len(want) {
		t.Errorf("index.json has %d entries, want %d", n, len(want))
	}
	checkBatchesDone(t, dir)
}

// GC runs over and over in another goroutine while writers in a batch
// push: it must neither wait for the batch to end (the writers would
// wait behind it: a deadlock) nor sweep the blobs of pending entries.
func TestBatchGCWhilePending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "oci")
	const repos = 12
	ref := func(i, v int) string { return fmt.Sprintf("gantry.local/models/r%d:ck-%d", i, v) }
	if _, err := NewLayout(dir).Write(ctx, ref(0, 0), mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	end := NewLayout(dir).Batch()
	stopGC := gcLoop(ctx, t, dir)
	var wg sync.WaitGroup
	digests := make([]string, repos)
	for i := range repos {
		wg.Go(func() {
			lay := NewLayout(dir)
			for v := 1; v <= 3; v++ {
				d, err := lay.Write(ctx, ref(i, v), mustRandom(t))
				if err != nil {
					t.Error(err)
					return
				}
				digests[i] = d
				if got, ok, err := lay.Has(ctx, ref(i, v)); !ok || err != nil || got != d {
					t.Errorf("Has(%s) = %s %v %v, want %s", ref(i, v), got, ok, err, d)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d GCs ran during the pushes", stopGC())
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range repos {
		if d, ok, err := NewLayout(dir).Has(ctx, ref(i, 3)); !ok || err != nil || d != digests[i] {
			t.Errorf("Has(%s) = %s %v %v, want %s", ref(i, 3), d, ok, err, digests[i])
		}
	}
	checkWhole(t, dir)
	checkBatchesDone(t, dir)
}

// A GC in the goroutine that has a batch open, with entries pending,
// flushes them and runs: it does not wait for the batch to end.
func TestBatchGCInsideBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "oci")
	lay := NewLayout(dir)
	old := mustRandom(t)
	if _, err := lay.Write(ctx, "gantry.local/models/a:ck-0", old); err != nil {
		t.Fatal(err)
	}
	end := lay.Batch()
	imgs := map[string]v1.Image{}
	for i := range 5 {
		ref := fmt.Sprintf("gantry.local/models/a:ck-%d", i+1)
		imgs[ref] = mustRandom(t)
		if _, err := lay.Write(ctx, ref, imgs[ref]); err != nil {
			t.Fatal(err)
		}
	}
	if _, pending, holds := batchState(dir); pending != 5 || !holds {
		t.Fatalf("%d entries pending (blob lock held %v), want 5", pending, holds)
	}
	res, err := lay.GC(ctx, GCOptions{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 5 || len(res.Removed) != 1 {
		t.Errorf("GC kept %v and removed %v, want the 5 pending entries kept and ck-0 removed", res.Kept, res.Removed)
	}
	if _, pending, holds := batchState(dir); pending != 0 || holds {
		t.Errorf("after GC, %d entries pending (blob lock held %v)", pending, holds)
	}
	// The batch goes on after the GC.
	imgs["gantry.local/models/a:ck-6"] = mustRandom(t)
	if _, err := lay.Write(ctx, "gantry.local/models/a:ck-6", imgs["gantry.local/models/a:ck-6"]); err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	for ref, img := range imgs {
		want, _ := img.Digest()
		if d, ok, err := lay.Has(ctx, ref); !ok || err != nil || d != want.String() {
			t.Errorf("Has(%s) = %s %v %v, want %s", ref, d, ok, err, want)
		}
	}
	checkWhole(t, dir)
	checkBatchesDone(t, dir)
}

// A process killed (SIGKILL) with entries pending loses those entries and
// nothing else: index.json holds the last flush, whole; the next GC
// sweeps the lost images' blobs, and writing them again works.
func TestBatchKilledWriterLosesOnlyPendingEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	c := child(t, "batch", dir, "GANTRY_LAYOUT_N=40")
	marker := filepath.Join(dir, "pending")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if c.ProcessState != nil || time.Now().After(deadline) {
			t.Fatal("the child did not write its images")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Alive, the child holds the blob lock for its pending entries' blobs:
	// a GC here waits rather than sweep them.
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := NewLayout(dir).GC(short, GCOptions{}); err == nil {
		t.Error("GC ran while another process kept entries pending")
	}
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	os.Remove(marker)

	entries := checkWhole(t, dir)
	// Flushed at the 16th and the 32nd write; the last 8 were pending.
	if len(entries) != 32 {
		t.Errorf("index.json has %d entries, want the 32 flushed", len(entries))
	}
	for i := range 40 {
		ref := fmt.Sprintf("gantry.local/models/k-%d:ck-1", i)
		if _, ok := entries[ref]; ok != (i < 32) {
			t.Errorf("%s in index.json: %v, want %v", ref, ok, i < 32)
		}
	}
	res, err := NewLayout(dir).GC(ctx, GCOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 8*3 || len(res.Removed) != 0 {
		t.Errorf("GC removed %d blobs and entries %v, want the 24 blobs of the 8 lost images and no entry", res.Blobs, res.Removed)
	}
	if _, err := NewLayout(dir).Write(ctx, "gantry.local/models/k-39:ck-1", mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(checkWhole(t, dir)); n != 33 {
		t.Errorf("%d entries after writing a lost one again, want 33", n)
	}
}

// merge gives what replacing entries one write at a time gave (the code
// before batches), for random mixes of names, digests and entries of
// other tools that carry only a tag.
func TestMergeMatchesOneAtATime(t *testing.T) {
	digests := make([]v1.Hash, 3)
	for i := range digests {
		digests[i] = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i+1)}
	}
	names := []string{"gantry.local/models/a:1", "gantry.local/models/a:2", "gantry.local/models/b:1", "other.example/x:2"}
	n := 0
	entry := func(rng *rand.Rand, foreign bool) pendingEntry {
		n++
		tag, _ := name.NewTag(names[rng.IntN(len(names))], name.WeakValidation)
		d := v1.Descriptor{Digest: digests[rng.IntN(len(digests))], Size: int64(n), Annotations: map[string]string{AnnotationRefName: tag.TagStr()}}
		if !foreign {
			d.Annotations[AnnotationImageName] = tag.Name()
		}
		return pendingEntry{tag: tag, desc: d}
	}
	// oneAtATime is Layout.write's index update before batches.
	oneAtATime := func(ds []v1.Descriptor, a pendingEntry) []v1.Descriptor {
		if d := find(&v1.IndexManifest{Manifests: ds}, a.tag); d != nil && d.Digest == a.desc.Digest {
			return ds
		}
		var kept []v1.Descriptor
		for _, d := range ds {
			full := d.Annotations[AnnotationImageName]
			if full != "" && full == a.tag.Name() || full == "" && d.Annotations[AnnotationRefName] == a.tag.TagStr() {
				continue
			}
			kept = append(kept, d)
		}
		return append(kept, a.desc)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var ds []v1.Descriptor
		for range rng.IntN(7) {
			e := entry(rng, rng.IntN(3) == 0)
			if rng.IntN(4) == 0 {
				ds = append(ds, e.desc) // duplicates, as a foreign tool may leave
			} else {
				ds = oneAtATime(ds, e)
			}
		}
		var adds []pendingEntry
		for range 1 + rng.IntN(6) {
			adds = append(adds, entry(rng, false))
		}
		want := slices.Clone(ds)
		for _, a := range adds {
			want = oneAtATime(want, a)
		}
		got, changed := merge(slices.Clone(ds), adds)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("merge of %v into %v (-one at a time +merge):\n%s", adds, ds, diff)
		}
		if !changed && len(got) != len(ds) {
			t.Fatalf("merge changed the entries but reported no change")
		}
	}
}
