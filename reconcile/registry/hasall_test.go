package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/google/go-cmp/cmp"
)

// distinctImage is testImage with its own manifest (and digest), per i.
func distinctImage(t testing.TB, base v1.Image, i int) v1.Image {
	t.Helper()
	img, ok := mutate.Annotations(base, map[string]string{AnnotationRelease: fmt.Sprintf("r%04d", i)}).(v1.Image)
	if !ok {
		t.Fatal("mutate.Annotations did not return an image")
	}
	return img
}

// TestObserveReadsTheIndexOnce: Observe of N references on a layout reads
// index.json once, not once per reference, even right after it was
// written (when every single look-up reads it whole), and finds what Has
// finds one by one: the newest image of a re-tagged reference, nothing
// for a broken image or a missing reference, pending entries of a batch.
func TestObserveReadsTheIndexOnce(t *testing.T) {
	ctx := context.Background()
	base := testImage(t)
	lay := NewLayout(filepath.Join(t.TempDir(), "oci"))
	const n = 40
	var refs []string
	for i := range n {
		ref := fmt.Sprintf("gantry.local/models/r%04d:ck-0123456789abcdef0123456789abcdef", i)
		if _, err := lay.Write(ctx, ref, distinctImage(t, base, i)); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	// r0003 re-tagged to another image; r0007's manifest gone (broken).
	if _, err := lay.Write(ctx, refs[3], distinctImage(t, base, 1000)); err != nil {
		t.Fatal(err)
	}
	broken, err := distinctImage(t, base, 7).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(lay.blobPath(broken)); err != nil {
		t.Fatal(err)
	}
	// One reference by digest, one that does not exist, one pending in a
	// batch.
	d5, _ := distinctImage(t, base, 5).Digest()
	refs = append(refs, "gantry.local/models/r0005@"+d5.String(), "gantry.local/models/none:ck-0")
	end := lay.Batch()
	defer func() {
		if err := end(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	pendingRef := "gantry.local/models/pending:ck-1"
	if _, err := lay.Write(ctx, pendingRef, distinctImage(t, base, 2000)); err != nil {
		t.Fatal(err)
	}
	refs = append(refs, pendingRef)

	want := map[string]string{}
	for _, ref := range refs {
		d, ok, err := lay.Has(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			want[ref] = d
		}
	}
	if _, ok := want[refs[7]]; ok || len(want) != n+1 {
		t.Fatalf("Has found %d of %d (the broken one: %v); the test expects %d", len(want), len(refs), ok, n+1)
	}
	reads := indexReads.Load()
	got, err := Observe(ctx, lay, refs)
	if err != nil {
		t.Fatal(err)
	}
	if r := indexReads.Load() - reads; r > 1 {
		t.Errorf("Observe of %d references read index.json %d times, want at most 1", len(refs), r)
	}
	gotDigests := map[string]string{}
	for ref, a := range got {
		gotDigests[ref] = a.Digest
	}
	if d := cmp.Diff(want, gotDigests); d != "" {
		t.Errorf("Observe differs from Has one by one (-Has +Observe):\n%s", d)
	}
}
