package gguf_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
)

// writeAtTensors has odd sizes, so every tensor but the last is followed by
// padding, and an empty tensor.
func writeAtTensors() []gguf.TensorInfo {
	return []gguf.TensorInfo{
		{Name: "a", Shape: []int64{5}, Type: ggml.F32},
		{Name: "empty", Shape: []int64{0}, Type: ggml.F32},
		{Name: "b", Shape: []int64{32, 3}, Type: ggml.Q8_0},
		{Name: "c", Shape: []int64{7}, Type: ggml.F16},
	}
}

// TestWriteTensorAtMatchesWrite writes every tensor in pieces, in random
// order, from several goroutines, and expects the very bytes a sequential
// Write produces, padding included.
func TestWriteTensorAtMatchesWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kvs := []gguf.KV{{Key: "general.architecture", Value: "llama"}}
	ts := writeAtTensors()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([][]byte, len(ts))
	for i := range ts {
		data[i] = make([]byte, ts[i].Bytes())
		for k := range data[i] {
			data[i][k] = byte(rng.IntN(255) + 1)
		}
	}
	seq := filepath.Join(dir, "seq.gguf")
	fw, err := gguf.Create(ctx, seq, kvs, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		if _, err := fw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	type piece struct {
		i   int
		off int64
		b   []byte
	}
	var pieces []piece
	for i, d := range data {
		for off := 0; off < len(d); off += 3 {
			pieces = append(pieces, piece{i, int64(off), d[off:min(off+3, len(d))]})
		}
	}
	rng.Shuffle(len(pieces), func(a, b int) { pieces[a], pieces[b] = pieces[b], pieces[a] })
	at := filepath.Join(dir, "at.gguf")
	fw, err = gguf.Create(ctx, at, kvs, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	// Nudge the background sync every few bytes, so that it runs while
	// the writers write (and -race sees them together).
	gguf.SetFlushEvery(fw, 8)
	var wg sync.WaitGroup
	errs := make(chan error, len(pieces))
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for k := w; k < len(pieces); k += 4 {
				p := pieces[k]
				if err := fw.WriteTensorAt(p.i, p.off, p.b); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := fw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gguf.BackgroundSyncs(fw); n == 0 {
		t.Error("no background sync ran while the data was written")
	}
	want, _ := os.ReadFile(seq)
	got, _ := os.ReadFile(at)
	if !bytes.Equal(got, want) {
		t.Fatalf("WriteTensorAt wrote %d bytes that differ from Write's %d", len(got), len(want))
	}
}

// TestWriteTensorAtRefuses checks the bounds, the mix with Write, and that
// a file missing data is not committed and leaves nothing behind.
func TestWriteTensorAtRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gguf")
	fw, err := gguf.Create(ctx, path, nil, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		i   int
		off int64
		n   int
	}{{-1, 0, 1}, {4, 0, 1}, {0, 0, 21}, {0, 19, 2}, {0, -1, 1}, {1, 0, 1}} {
		if err := fw.WriteTensorAt(c.i, c.off, make([]byte, c.n)); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("WriteTensorAt(%d, %d, %d bytes) = %v, want an out-of-bounds error", c.i, c.off, c.n, err)
		}
	}
	if err := fw.WriteTensorAt(0, 0, make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if err := fw.Commit(ctx); err == nil || !strings.Contains(err.Error(), "of tensor data written") {
		t.Errorf("commit with missing data: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d files", len(ents))
	}

	fw, err = gguf.Create(ctx, path, nil, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Abort()
	fw.Write(make([]byte, 4))
	if err := fw.WriteTensorAt(0, 4, make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "after Write") {
		t.Errorf("WriteTensorAt after Write = %v", err)
	}
}

// TestCreateSweepsDeadWritersTemps: a temporary file left by a writer that
// died (kill -9: no lock) is removed by the next Create of the same path;
// one a live writer holds (locked) is not, nor are other files.
func TestCreateSweepsDeadWritersTemps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gguf")
	dead := filepath.Join(dir, ".x.gguf.tmp-111")
	os.WriteFile(dead, []byte("half a model"), 0o644)
	other := filepath.Join(dir, ".y.gguf.tmp-222")
	os.WriteFile(other, []byte("another output's"), 0o644)
	live, err := gguf.Create(ctx, path, nil, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead writer's temporary file survived Create: %v", err)
	}
	fw, err := gguf.Create(ctx, path, nil, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range writeAtTensors() {
		if err := fw.WriteTensorAt(i, 0, make([]byte, ti.Bytes())); err != nil && ti.Bytes() > 0 {
			t.Fatal(err)
		}
	}
	if err := fw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	// The live writer's file, the other output's, and the committed one.
	if len(names) != 3 || !strings.HasPrefix(names[0], ".x.gguf.tmp-") || names[1] != ".y.gguf.tmp-222" || names[2] != "x.gguf" {
		t.Errorf("directory holds %v", names)
	}
}

// TestAbortStopsBackgroundSync aborts a random-access writer whose
// background sync has been nudged: Abort returns, the temporary file is
// gone, and a later WriteTensorAt fails instead of nudging a stopped
// flusher.
func TestAbortStopsBackgroundSync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	fw, err := gguf.Create(ctx, out, []gguf.KV{{Key: "general.architecture", Value: "llama"}}, writeAtTensors())
	if err != nil {
		t.Fatal(err)
	}
	gguf.SetFlushEvery(fw, 2)
	for off := int64(0); off < 20; off += 4 {
		if err := fw.WriteTensorAt(0, off, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	fw.Abort()
	if err := fw.WriteTensorAt(2, 0, make([]byte, 4)); err == nil {
		t.Error("WriteTensorAt after Abort succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Abort left %d files", len(ents))
	}
}
