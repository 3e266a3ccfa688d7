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
