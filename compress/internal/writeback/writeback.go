package writeback

import (
	"os"
	"sync"
	"sync/atomic"
)

// Every is how many bytes are written between two nudges to the
// background sync by default.
const Every = 64 << 20

// A Syncer syncs one file in the background as it is written. Its methods
// are safe for concurrent use; Wrote after Stop does nothing.
type Syncer struct {
	f     *os.File
	every int64

	written atomic.Int64
	nudged  atomic.Int64 // written, rounded down to every, when last nudged
	syncs   atomic.Int64

	mu    sync.RWMutex // guards nudge against Stop
	nudge chan struct{}
	done  sync.WaitGroup
	err   error // the first sync error; read after done.Wait
}

// Start starts the background sync of f, nudged every every bytes
// (Every if every ≤ 0).
func Start(f *os.File, every int64) *Syncer {
	if every <= 0 {
		every = Every
	}
	s := &Syncer{f: f, every: every, nudge: make(chan struct{}, 1)}
	s.done.Add(1)
	go s.run(s.nudge)
	return s
}

// Wrote records that n more bytes were written to the file and nudges
// the sync when they complete another Every bytes.
func (s *Syncer) Wrote(n int64) {
	m := s.written.Add(n) / s.every * s.every
	for {
		v := s.nudged.Load()
		if m <= v {
			return
		}
		if s.nudged.CompareAndSwap(v, m) {
			break
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	select {
	case s.nudge <- struct{}{}: // a nil channel (stopped) is never ready
	default: // a sync is pending; it will cover these bytes too
	}
}

func (s *Syncer) run(nudge <-chan struct{}) {
	defer s.done.Done()
	for range nudge {
		if err := s.f.Sync(); err != nil && s.err == nil {
			s.err = err
		}
		s.syncs.Add(1)
	}
}

// Stop waits for a sync in progress, ends the goroutine and returns the
// first error a background sync had. It does not sync the file itself.
// Calling it again returns nil.
func (s *Syncer) Stop() error {
	s.mu.Lock()
	ch := s.nudge
	s.nudge = nil
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	close(ch)
	s.done.Wait()
	return s.err
}

// Syncs is how many background syncs have completed.
func (s *Syncer) Syncs() int64 { return s.syncs.Load() }
