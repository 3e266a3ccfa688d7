package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// A layout directory has two locks, each a sync primitive shared by every
// Layout value on that directory in this process and an flock(2) on a
// file in the directory, so that other processes (gantry run, build and
// gc on one state dir) take part:
//
//   - the blob lock (.gantry-blobs.lock) is held shared by every Write for
//     as long as it writes blobs and records its index entry, by a batch
//     (Layout.Batch) for as long as it keeps entries pending, and by Has
//     while it checks an image is whole; it is held exclusively by GC and
//     by the stale temp file cleaner. So a sweep never runs while a blob
//     is being written, and a blob written but not yet in index.json is
//     never swept.
//   - the index lock (.gantry-index.lock) is held exclusively around
//     every read-modify-write of index.json, so no update is lost.
//
// Lock order: blob lock, then index lock. The batch's in-memory state
// (batch.mu) comes last: it is only held for a few memory operations,
// never while waiting for a lock. A batch does not take the blob lock
// again while a Write of it holds it: it takes over the shared hold of
// the Write that makes the first entry pending (sync.RWMutex must not be
// read-locked twice by one holder while a writer may wait). GC flushes
// its own process's pending entries before it waits for the blob lock,
// and while a GC waits every Write flushes its entry at once, so the
// batch's hold never keeps that GC (and, behind it, the writes the batch
// waits for) waiting. Readers of index.json need no lock: it is replaced
// by rename, so a reader sees the old or the new file.
//
// The flock alone would be enough for correctness (two descriptors of one
// file conflict even within a process); the in-process primitives keep
// goroutines from polling the kernel and make the wait cheap.
const (
	blobLockFile  = ".gantry-blobs.lock"
	indexLockFile = ".gantry-index.lock"
)

// dirLock is the in-process half of a layout directory's locks.
type dirLock struct {
	blobs sync.RWMutex
	index sync.Mutex
	// cleaned is set once this process removed the stale temp files.
	cleaned atomic.Bool
	// batch is the state of the batches open on the directory.
	batch batch
}

var (
	dirLocksMu sync.Mutex
	dirLocks   = map[string]*dirLock{}
)

// lockKey is the directory's identity within the process: its absolute,
// cleaned path with the symlinks of its longest existing part resolved,
// so that the key is the same before and after the directory is created
// (a batch may be opened on a layout that does not exist yet).
func lockKey(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = filepath.Clean(dir)
	}
	rest := ""
	for p := abs; ; {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

func locksFor(dir string) *dirLock {
	k := lockKey(dir)
	dirLocksMu.Lock()
	defer dirLocksMu.Unlock()
	l := dirLocks[k]
	if l == nil {
		l = &dirLock{}
		dirLocks[k] = l
	}
	return l
}

// lockBlobsShared takes the blob lock shared. The returned func releases it.
func (d *dirLock) lockBlobsShared(ctx context.Context, dir string) (func(), error) {
	d.blobs.RLock()
	f, err := flockWait(ctx, filepath.Join(dir, blobLockFile), false)
	if err != nil {
		d.blobs.RUnlock()
		return nil, err
	}
	return func() { funlock(f); d.blobs.RUnlock() }, nil
}

// lockBlobsExclusive takes the blob lock exclusively.
func (d *dirLock) lockBlobsExclusive(ctx context.Context, dir string) (func(), error) {
	d.blobs.Lock()
	f, err := flockWait(ctx, filepath.Join(dir, blobLockFile), true)
	if err != nil {
		d.blobs.Unlock()
		return nil, err
	}
	return func() { funlock(f); d.blobs.Unlock() }, nil
}

// tryLockBlobsExclusive takes the blob lock exclusively if nobody, in
// this process or another, holds it now; ok is false otherwise.
func (d *dirLock) tryLockBlobsExclusive(dir string) (release func(), ok bool, err error) {
	if !d.blobs.TryLock() {
		return nil, false, nil
	}
	f, ok, err := flockTry(filepath.Join(dir, blobLockFile), true)
	if err != nil || !ok {
		d.blobs.Unlock()
		return nil, false, err
	}
	return func() { funlock(f); d.blobs.Unlock() }, true, nil
}

// lockIndex takes the index lock.
func (d *dirLock) lockIndex(ctx context.Context, dir string) (func(), error) {
	d.index.Lock()
	f, err := flockWait(ctx, filepath.Join(dir, indexLockFile), true)
	if err != nil {
		d.index.Unlock()
		return nil, err
	}
	return func() { funlock(f); d.index.Unlock() }, nil
}

// flockWait opens (creating) the lock file and flocks it, polling so that
// ctx can end the wait: another process may hold the lock for as long as
// a push of a big model takes. The poll interval grows from 1 ms to 20 ms:
// short, because flock is not fair and a waiter that sleeps long loses
// every race to a process that takes the lock again and again.
func flockWait(ctx context.Context, path string, exclusive bool) (*os.File, error) {
	wait := time.Millisecond
	for {
		f, ok, err := flockTry(path, exclusive)
		if err != nil || ok {
			return f, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// flockTry opens the lock file and tries the flock once. Closing the file
// releases the lock; so does the death of the process, kill -9 included.
func flockTry(path string, exclusive bool) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	ok, err := flock(f, exclusive)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		return nil, false, nil
	}
	return f, true, nil
}

func funlock(f *os.File) {
	if f != nil {
		f.Close() // closing the last descriptor releases the flock
	}
}
