package writeback

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestSyncerSyncsWhileWriting writes a file from several goroutines with
// a nudge every few bytes: the background syncs run among the writes (and
// -race watches them), the file holds every byte, and Stop is final.
func TestSyncerSyncsWhileWriting(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := Start(f, 16)
	want := make([]byte, 64<<10)
	for i := range want {
		want[i] = byte(i*7 + 1)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for off := w * 64; off < len(want); off += 4 * 64 {
				if _, err := f.WriteAt(want[off:off+64], int64(off)); err != nil {
					t.Error(err)
				}
				s.Wrote(64)
			}
		})
	}
	wg.Wait()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Syncs() == 0 {
		t.Error("no background sync ran")
	}
	s.Wrote(1 << 20) // after Stop: no panic, no sync
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, want) {
		t.Error("the file differs from what was written")
	}
}

// TestSyncerNudgesEveryEvery checks the arithmetic: below Every bytes
// nothing is synced; the sync error of a closed file reaches Stop.
func TestSyncerNudgesEveryEvery(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	s := Start(f, 100)
	s.Wrote(99)
	if err := s.Stop(); err != nil || s.Syncs() != 0 {
		t.Fatalf("99 of 100 bytes: %d syncs, err %v", s.Syncs(), err)
	}
	f.Close()
	s = Start(f, 100)
	s.Wrote(100)
	if err := s.Stop(); err == nil {
		t.Error("the sync of a closed file reported no error")
	}
}

// TestSize checks that Size makes a file exactly size bytes long, keeps
// what was written before it, reads zeros after, and shrinks a longer
// file, in the test's temporary directory and, where there is one, in
// /dev/shm (tmpfs).
func TestSize(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "writeback-test")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	for _, dir := range dirs {
		f, err := os.Create(filepath.Join(dir, "out"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("header")); err != nil {
			t.Fatal(err)
		}
		if err := Size(f, 1<<20+3); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if _, err := f.WriteAt([]byte("tail"), 1<<20-1); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 1<<20+3)
		copy(want, "header")
		copy(want[1<<20-1:], "tail")
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, not the header, zeros and the tail", dir, len(got))
		}
		if err := Size(f, 100); err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() != 100 {
			t.Errorf("%s: %d bytes after Size(100)", dir, st.Size())
		}
		if err := Size(f, 0); err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() != 0 {
			t.Errorf("%s: %d bytes after Size(0)", dir, st.Size())
		}
		f.Close()
	}
}
