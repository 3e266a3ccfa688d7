package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layoutChildEnv makes the test binary a child process that writes into
// a layout (see layoutChild). It is checked in init, before TestMain, so
// a child starts no registry and a SIGKILLed child leaves none behind.
const layoutChildEnv = "GANTRY_LAYOUT_CHILD"

func init() {
	if mode := os.Getenv(layoutChildEnv); mode != "" {
		if err := layoutChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "layout child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// layoutChild runs in a child process. GANTRY_LAYOUT_DIR is the layout.
//
//   - write: wait until GANTRY_LAYOUT_START (unix nanoseconds), then
//     write GANTRY_LAYOUT_N random images as
//     gantry.local/models/<GANTRY_LAYOUT_PREFIX>-<i>:ck-1, each through a
//     new Layout value.
//   - hang: write gantry.local/models/done:ck-1, then start an image whose
//     layer delivers half of its bytes and then never ends: the parent
//     kills the process while the blob is being written.
//   - batch: in a batch, write GANTRY_LAYOUT_N random images as
//     gantry.local/models/k-<i>:ck-1, create the file "pending" in the
//     layout and wait forever with the batch open: the parent kills the
//     process with entries pending.
func layoutChild(mode string) error {
	ctx := context.Background()
	dir := os.Getenv("GANTRY_LAYOUT_DIR")
	switch mode {
	case "write":
		n, _ := strconv.Atoi(os.Getenv("GANTRY_LAYOUT_N"))
		start, _ := strconv.ParseInt(os.Getenv("GANTRY_LAYOUT_START"), 10, 64)
		time.Sleep(time.Until(time.Unix(0, start)))
		for i := range n {
			img, err := random.Image(512, 2)
			if err != nil {
				return err
			}
			ref := fmt.Sprintf("gantry.local/models/%s-%d:ck-1", os.Getenv("GANTRY_LAYOUT_PREFIX"), i)
			if _, err := NewLayout(dir).Write(ctx, ref, img); err != nil {
				return err
			}
		}
		return nil
	case "hang":
		img, _ := random.Image(1024, 1)
		if _, err := NewLayout(dir).Write(ctx, "gantry.local/models/done:ck-1", img); err != nil {
			return err
		}
		data := make([]byte, 2<<20)
		rand.Read(data)
		big, err := mutate.AppendLayers(empty.Image, newHangLayer(data))
		if err != nil {
			return err
		}
		_, err = NewLayout(dir).Write(ctx, "gantry.local/models/big:ck-1", big)
		return err
	case "batch":
		n, _ := strconv.Atoi(os.Getenv("GANTRY_LAYOUT_N"))
		lay := NewLayout(dir)
		lay.Batch() // never ended
		for i := range n {
			img, err := random.Image(256, 1)
			if err != nil {
				return err
			}
			if _, err := lay.Write(ctx, fmt.Sprintf("gantry.local/models/k-%d:ck-1", i), img); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "pending"), nil, 0o644); err != nil {
			return err
		}
		for {
			time.Sleep(time.Hour) // a sleeping goroutine, not a deadlock
		}
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// hangLayer is an uncompressed layer whose reader stops, forever, halfway.
type hangLayer struct {
	data []byte
	h    v1.Hash
}

func newHangLayer(data []byte) hangLayer {
	sum := sha256.Sum256(data)
	return hangLayer{data, v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
}

func (l hangLayer) Digest() (v1.Hash, error)            { return l.h, nil }
func (l hangLayer) DiffID() (v1.Hash, error)            { return l.h, nil }
func (l hangLayer) Size() (int64, error)                { return int64(len(l.data)), nil }
func (l hangLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l hangLayer) Uncompressed() (io.ReadCloser, error) {
	return l.Compressed()
}
func (l hangLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(l.data[:len(l.data)/2]), hangReader{})), nil
}

type hangReader struct{}

func (hangReader) Read([]byte) (int, error) {
	for {
		time.Sleep(time.Hour) // a sleeping goroutine, not a deadlock
	}
}

// child starts the test binary as a layout child.
func child(t *testing.T, mode, dir string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{layoutChildEnv + "=" + mode, "GANTRY_LAYOUT_DIR=" + dir}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() // by the PID this test started
			cmd.Wait()
		}
		if t.Failed() && out.Len() > 0 {
			t.Logf("child %s output:\n%s", mode, out.String())
		}
	})
	return cmd
}

// readIndexFile parses dir/index.json; invalid JSON fails the test.
func readIndexFile(t testing.TB, dir string) v1.IndexManifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		t.Fatalf("index.json: %v\n%s", err, b)
	}
	return im
}

// checkWhole checks that every blob of every index entry is there and
// hashes to its digest, and returns the entries by image name.
func checkWhole(t testing.TB, dir string) map[string]v1.Descriptor {
	t.Helper()
	im := readIndexFile(t, dir)
	out := map[string]v1.Descriptor{}
	blob := func(d v1.Descriptor) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
		if err != nil {
			t.Errorf("blob of %s: %v", d.Digest, err)
			return nil
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Digest.Hex || (d.Size != 0 && int64(len(b)) != d.Size) {
			t.Errorf("blob %s: %d bytes do not match", d.Digest, len(b))
			return nil
		}
		return b
	}
	for _, d := range im.Manifests {
		name := d.Annotations[AnnotationImageName]
		if _, dup := out[name]; dup {
			t.Errorf("two entries for %s", name)
		}
		out[name] = d
		raw := blob(d)
		if raw == nil {
			continue
		}
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			t.Errorf("manifest of %s: %v", name, err)
			continue
		}
		blob(m.Config)
		for _, l := range m.Layers {
			blob(l)
		}
	}
	return out
}

// tempFiles lists what in the layout is not a blob named by its digest
// or a known file: the leftovers of interrupted writes.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !isHexName(e.Name()) {
			out = append(out, "blobs/sha256/"+e.Name())
		}
	}
	root, _ := os.ReadDir(dir)
	for _, e := range root {
		switch e.Name() {
		case "blobs", "index.json", "oci-layout", ".gantry-blobs.lock", ".gantry-index.lock":
		default:
			out = append(out, e.Name())
		}
	}
	return out
}

func isHexName(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Many goroutines, each with its own Layout value on one directory (what
// stores.store did per call), push distinct images. Every image must be
// in index.json, whole, and found by Has. Before the per-directory lock
// and the atomic index, updates were lost and readers failed with
// "unexpected end of JSON input".
func TestLayoutConcurrentWritersSeparateValues(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	const writers, each = 32, 2
	type pushed struct{ ref, digest string }
	got := make([]pushed, writers*each)
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				img, err := random.Image(256, 2)
				if err != nil {
					errs <- err
					return
				}
				ref := fmt.Sprintf("gantry.local/models/r%d-%d:ck-1", w, i)
				d, err := NewLayout(dir).Write(ctx, ref, img)
				if err != nil {
					errs <- err
					return
				}
				got[w*each+i] = pushed{ref, d}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	entries := checkWhole(t, dir)
	if len(entries) != writers*each {
		t.Errorf("index.json has %d entries, want %d", len(entries), writers*each)
	}
	for _, p := range got {
		if p.ref == "" {
			continue
		}
		d, ok, err := NewLayout(dir).Has(ctx, p.ref)
		if err != nil || !ok || d != p.digest {
			t.Errorf("Has(%s) = %s %v %v, want %s", p.ref, d, ok, err, p.digest)
			continue
		}
		img, err := NewLayout(dir).Image(ctx, p.ref)
		if err != nil {
			t.Errorf("Image(%s): %v", p.ref, err)
			continue
		}
		if d, _ := img.Digest(); d.String() != p.digest {
			t.Errorf("Image(%s) has digest %s, want %s", p.ref, d, p.digest)
		}
	}
}

// A reader that reads index.json while writers rewrite it never sees a
// half-written file.
func TestLayoutIndexReadsAreAtomic(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	if _, err := NewLayout(dir).Write(ctx, "gantry.local/models/seed:ck-1", mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var reads, bad int
	var firstBad string
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(dir, "index.json"))
			if err != nil {
				bad++
				firstBad = err.Error()
				continue
			}
			reads++
			if !json.Valid(b) {
				bad++
				if firstBad == "" {
					firstBad = fmt.Sprintf("%d bytes: %.80q", len(b), b)
				}
			}
		}
	})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 8 {
				ref := fmt.Sprintf("gantry.local/models/a%d-%d:ck-1", w, i)
				if _, err := NewLayout(dir).Write(ctx, ref, mustRandom(t)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d reads of index.json saw a broken file, first: %s", bad, reads, firstBad)
	}
	t.Logf("%d reads", reads)
	if n := len(checkWhole(t, dir)); n != 65 {
		t.Errorf("%d entries, want 65", n)
	}
}

func mustRandom(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Two OS processes write into one layout at once: gantry run and gantry
// build on one state dir. Every image of both must be there and whole.
func TestLayoutTwoProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	const n = 25
	start := strconv.FormatInt(time.Now().Add(300*time.Millisecond).UnixNano(), 10)
	a := child(t, "write", dir, "GANTRY_LAYOUT_PREFIX=a", "GANTRY_LAYOUT_N="+strconv.Itoa(n), "GANTRY_LAYOUT_START="+start)
	b := child(t, "write", dir, "GANTRY_LAYOUT_PREFIX=b", "GANTRY_LAYOUT_N="+strconv.Itoa(n), "GANTRY_LAYOUT_START="+start)
	errA, errB := a.Wait(), b.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("children: %v, %v", errA, errB)
	}
	entries := checkWhole(t, dir)
	for _, p := range []string{"a", "b"} {
		for i := range n {
			ref := fmt.Sprintf("gantry.local/models/%s-%d:ck-1", p, i)
			if _, ok := entries[ref]; !ok {
				t.Errorf("%s is missing from index.json", ref)
			} else if _, ok, err := NewLayout(dir).Has(context.Background(), ref); !ok || err != nil {
				t.Errorf("Has(%s) = %v %v", ref, ok, err)
			}
		}
	}
	if len(entries) != 2*n {
		t.Errorf("%d entries, want %d", len(entries), 2*n)
	}
}

// A process killed (SIGKILL) while it writes a blob leaves a partial temp
// file. The next process that opens the layout for writing removes it,
// and the layout is whole.
func TestLayoutKilledWriterLeavesNoPartialBlob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	c := child(t, "hang", dir)
	partial := waitPartial(t, dir)
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	t.Logf("killed the writer with %s half written", partial)
	if left := tempFiles(t, dir); len(left) == 0 {
		t.Fatal("the killed writer left nothing behind: the test did not kill mid-write")
	}

	ctx := context.Background()
	lay := NewLayout(dir)
	if _, err := lay.Write(ctx, "gantry.local/models/next:ck-1", mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("partial files left after the layout was opened for writing: %v", left)
	}
	entries := checkWhole(t, dir)
	for _, ref := range []string{"gantry.local/models/done:ck-1", "gantry.local/models/next:ck-1"} {
		if _, ok := entries[ref]; !ok {
			t.Errorf("%s is missing", ref)
		}
	}
	if _, ok := entries["gantry.local/models/big:ck-1"]; ok {
		t.Error("the interrupted image is in index.json")
	}
	if _, ok, _ := lay.Has(ctx, "gantry.local/models/big:ck-1"); ok {
		t.Error("Has finds the interrupted image")
	}
}

// A writer that is alive keeps its temp file: another process opening
// the layout must not remove a blob being written right now.
func TestLayoutCleanerSparesLiveWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	c := child(t, "hang", dir)
	partial := waitPartial(t, dir)
	if _, err := NewLayout(dir).Write(context.Background(), "gantry.local/models/other:ck-1", mustRandom(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", partial)); err != nil {
		t.Errorf("the live writer's temp file was removed: %v", err)
	}
	if c.ProcessState != nil {
		t.Errorf("the writer exited: %v", c.ProcessState)
	}
}

// waitPartial waits until a hang child has written half of its big layer
// into a temp file, and returns the file's name.
func waitPartial(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
		for _, e := range entries {
			// The big layer's, not a temp file of the small image before it.
			if info, err := e.Info(); err == nil && !isHexName(e.Name()) && info.Size() >= 1<<20 {
				return e.Name()
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no partial blob appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
