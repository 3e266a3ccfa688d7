package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var _ Batcher = (*Layout)(nil)

// minFlush is the fewest pending entries a Write flushes into index.json
// on its own; it flushes when len(index)/4 are pending if that is more.
// So each flush writes at most about five times the entries it adds, and
// N writes in a batch write O(N) bytes of index.json in O(log N) flushes.
const minFlush = 16

// batch is the state of the batches open on one layout directory in this
// process, shared by every Layout value on it (it lives in the
// directory's dirLock). mu is only ever held for a few memory operations,
// never while waiting for a lock or doing I/O.
type batch struct {
	mu   sync.Mutex
	open int // batches open
	// pending are the entries written but not in index.json yet, oldest
	// first, with consecutive seq numbers.
	pending []pendingEntry
	// byName is the seq of the newest pending entry of each image name.
	byName map[string]uint64
	seq    uint64 // of the last entry made pending
	// hold releases the blob lock, held shared for the pending entries'
	// blobs for as long as there are any: until their entries are in
	// index.json it is all that keeps GC from sweeping them. It is nil
	// exactly when pending is empty.
	hold func()
	// indexLen is how many entries index.json had when this process last
	// wrote it: the measure of when a Write flushes.
	indexLen int
	// gcs counts this process's GCs of the directory that are running or
	// waiting for the blob lock. While there are any, a Write flushes its
	// entry at once, so that the batch never holds the blob lock that GC
	// waits for (and, GC waiting, new writes wait behind it).
	gcs atomic.Int32
}

// pendingEntry is an index entry a batch keeps in memory.
type pendingEntry struct {
	tag  name.Tag
	desc v1.Descriptor
	seq  uint64
}

// Batch implements Batcher. Batches are counted per directory in this
// process: Layout values on one directory share their pending entries,
// and those are written when the last batch on the directory ends. While
// an entry is pending, the blob lock is held shared, so GC in any process
// waits for the batch to flush it; Layout.GC in this process flushes this
// process's pending entries first. See Layout for what a crash loses.
func (l *Layout) Batch() (end func(ctx context.Context) error) {
	locks := locksFor(l.Dir)
	b := &locks.batch
	b.mu.Lock()
	b.open++
	b.mu.Unlock()
	var once sync.Once
	return func(ctx context.Context) error {
		err := error(nil)
		once.Do(func() { err = l.endBatch(ctx, locks) })
		return err
	}
}

// endBatch ends one batch and, when it was the last one open, writes the
// pending entries. If that fails and still no batch is open, the entries
// are dropped (their blobs stay, for the next Write to reuse or GC to
// sweep) and the blob lock is released: nobody is left to retry.
func (l *Layout) endBatch(ctx context.Context, locks *dirLock) error {
	b := &locks.batch
	b.mu.Lock()
	b.open--
	last := b.open == 0
	b.mu.Unlock()
	if !last {
		return nil
	}
	err := l.commit(ctx, locks, nil)
	if err == nil {
		return nil
	}
	b.mu.Lock()
	n := 0
	var hold func()
	if b.open == 0 {
		n, hold = len(b.pending), b.hold
		b.pending, b.byName, b.hold = nil, nil, nil
	}
	b.mu.Unlock()
	if hold != nil {
		hold()
	}
	return fmt.Errorf("layout %s: end batch: %d entries not recorded: %w", l.Dir, n, err)
}

// record makes e pending if a batch is open on the directory, and reports
// whether it did. release is the Write's shared blob lock; if the batch
// holds none, it takes this one over, and record returns a no-op in its
// place. flush says the Write should flush now: enough entries are
// pending, or a GC of this process waits for the blob lock.
func (b *batch) record(e pendingEntry, release func()) (batched, flush bool, newRelease func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open == 0 {
		return false, false, release
	}
	b.seq++
	e.seq = b.seq
	b.pending = append(b.pending, e)
	if b.byName == nil {
		b.byName = map[string]uint64{}
	}
	b.byName[e.tag.Name()] = e.seq
	if b.hold == nil {
		b.hold, release = release, func() {}
	}
	flush = b.gcs.Load() > 0 || len(b.pending) >= max(minFlush, b.indexLen/4)
	return true, flush, release
}

// find returns the newest pending entry for r, nil if there is none.
func (b *batch) find(r name.Reference) *v1.Descriptor {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return nil
	}
	if _, byDigest := r.(name.Digest); byDigest {
		im := v1.IndexManifest{Manifests: make([]v1.Descriptor, len(b.pending))}
		for i, e := range b.pending {
			im.Manifests[i] = e.desc
		}
		return find(&im, r)
	}
	seq, ok := b.byName[r.Name()]
	if !ok || seq < b.pending[0].seq {
		return nil
	}
	d := b.pending[seq-b.pending[0].seq].desc
	return &d
}

// isOpen reports whether a batch is open.
func (b *batch) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open > 0
}

// any reports whether entries are pending.
func (b *batch) any() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) > 0
}

// commit records the pending entries and then extra (if not nil) in
// index.json, in one read-modify-write under the index lock, and releases
// the batch's blob lock if no entry is left pending. The caller holds the
// blob lock shared, or needs no more than the batch's hold (what is
// pending is covered by it, and extra is nil). Entries made pending while
// it runs wait for the next commit.
func (l *Layout) commit(ctx context.Context, locks *dirLock, extra *pendingEntry) error {
	unlock, err := locks.lockIndex(ctx, l.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	b := &locks.batch
	b.mu.Lock()
	adds := slices.Clone(b.pending)
	b.mu.Unlock()
	var upTo uint64 // the last pending entry this commit records
	if len(adds) > 0 {
		upTo = adds[len(adds)-1].seq
	}
	if extra != nil {
		adds = append(adds, *extra)
	}
	if len(adds) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(l.Dir, ociLayoutFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(l.Dir, ociLayoutFile, []byte(`{"imageLayoutVersion": "1.0.0"}`)); err != nil {
			return err
		}
	}
	im, _, err := l.readIndex()
	if err != nil {
		return err
	}
	if merged, changed := merge(im.Manifests, adds); changed {
		im.Manifests = merged
		if err := l.writeIndex(im); err != nil {
			return err
		}
	}

	b.mu.Lock()
	i := 0
	for i < len(b.pending) && b.pending[i].seq <= upTo {
		if e := b.pending[i]; b.byName[e.tag.Name()] == e.seq {
			delete(b.byName, e.tag.Name())
		}
		i++
	}
	b.pending = slices.Clone(b.pending[i:])
	b.indexLen = len(im.Manifests)
	var hold func()
	if len(b.pending) == 0 {
		hold, b.hold = b.hold, nil
	}
	b.mu.Unlock()
	if hold != nil {
		hold()
	}
	return nil
}

// merge returns ds with adds recorded in their order, as if one at a
// time: an add is left out when the entry find would return for its name
// has its digest already (that entry stays as it is), and otherwise
// replaces every entry of its name and goes at the end. An entry's name
// is its full image name; entries of other tools that carry only a tag
// are the tag's for every repository. changed is false when nothing was
// added. It takes time linear in len(ds)+len(adds), where adding one at a
// time would scan ds once per add.
func merge(ds []v1.Descriptor, adds []pendingEntry) (out []v1.Descriptor, changed bool) {
	// Positions: ds[i] is i, added[k] is len(ds)+k.
	byFull := map[string]int{} // the newest live entry of each full name
	byTag := map[string]int{}  // the newest entry without a full name, by tag
	for i, d := range ds {
		if full := d.Annotations[AnnotationImageName]; full != "" {
			byFull[full] = i
		} else {
			byTag[d.Annotations[AnnotationRefName]] = i
		}
	}
	// deadFull and deadTag name the entries of ds that an add replaced;
	// deadAdd the adds that a later one replaced.
	deadFull, deadTag := map[string]bool{}, map[string]bool{}
	var added []v1.Descriptor
	var deadAdd []bool
	digestAt := func(p int) v1.Hash {
		if p < len(ds) {
			return ds[p].Digest
		}
		return added[p-len(ds)].Digest
	}
	for _, a := range adds {
		full, tag := a.tag.Name(), a.tag.TagStr()
		cur := -1
		if p, ok := byFull[full]; ok {
			cur = p
		}
		if p, ok := byTag[tag]; ok && !deadTag[tag] && p > cur {
			cur = p
		}
		if cur >= 0 && digestAt(cur) == a.desc.Digest {
			continue // recorded already, by this process or another
		}
		if p, ok := byFull[full]; ok && p >= len(ds) {
			deadAdd[p-len(ds)] = true
		}
		deadFull[full], deadTag[tag] = true, true
		added, deadAdd = append(added, a.desc), append(deadAdd, false)
		byFull[full] = len(ds) + len(added) - 1
	}
	if len(added) == 0 {
		return ds, false
	}
	out = make([]v1.Descriptor, 0, len(ds)+len(added))
	for _, d := range ds {
		if full := d.Annotations[AnnotationImageName]; full != "" {
			if deadFull[full] {
				continue
			}
		} else if deadTag[d.Annotations[AnnotationRefName]] {
			continue
		}
		out = append(out, d)
	}
	for k, d := range added {
		if !deadAdd[k] {
			out = append(out, d)
		}
	}
	return out, true
}
