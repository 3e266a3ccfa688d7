package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// DefaultLayoutDir is where images go when no registry is configured,
// relative to the target directory's parent (".gantry/oci" next to
// ".gantry/objects").
const DefaultLayoutDir = ".gantry/oci"

// AnnotationCreated on an index entry is when the layout recorded it
// (RFC 3339, UTC). GC keeps the newest entries of each repository by it;
// the image's own digest does not change.
const AnnotationCreated = "org.opencontainers.image.created"

// Layout is an OCI image layout directory: the embedded default when no
// registry is configured. Each image is recorded in index.json with its
// tag as org.opencontainers.image.ref.name (what skopeo's oci:DIR:TAG and
// ORAS read), its full reference as io.containerd.image.name (so two
// repositories may share a tag) and the time it was recorded as
// org.opencontainers.image.created.
//
// Any number of Layout values, in any number of processes, may use one
// directory at once (see lock.go): index.json is updated under a lock and
// replaced atomically (temp file, fsync, rename), so no update is lost
// and a reader never sees half a file; blobs are written to a temp file,
// verified against their digest, fsynced and renamed, so a blob under its
// digest's name is always whole. Temp files that a killed process left
// behind are removed on the first write of a process (and by GC).
//
// Without a batch each Write rewrites index.json, which grows with the
// images: N writes would write O(N²) bytes. In a batch (Batch) a Write
// writes its blobs as always but keeps its entry pending in memory, and
// the pending entries are flushed in one rewrite when enough wait (a
// quarter of the index, at least 16) and when the last batch ends, so N
// writes write O(N) bytes in O(log N) rewrites. A process killed with
// entries pending (kill -9, power loss) loses those entries and nothing
// else: index.json is still only ever replaced whole, so it holds the
// last flush; the blobs of the lost entries are whole and unreferenced,
// reused by the next Write of those images (writeBlob skips a blob that
// is there) or swept by the next GC. Other processes see pending entries
// only once flushed.
type Layout struct {
	Dir string
}

// NewLayout returns the layout store in dir. The directory is created on
// first write.
func NewLayout(dir string) *Layout { return &Layout{Dir: dir} }

var _ Store = (*Layout)(nil)

const (
	indexFile     = "index.json"
	ociLayoutFile = "oci-layout"
	// tmpPrefix starts the names of temp files in the layout's root.
	tmpPrefix = ".tmp-"
	// blobTmpInfix is in the names of blob temp files, "<hex>.tmp-<random>".
	blobTmpInfix = ".tmp-"
	// maxManifestSize bounds what is read into memory as a manifest.
	maxManifestSize = 8 << 20
)

// readIndex reads index.json. ok is false when there is none. It takes no
// lock: writers replace the file by rename. The result is the caller's to
// change.
func (l *Layout) readIndex() (im *v1.IndexManifest, ok bool, err error) {
	shared, ok, err := l.index()
	if err != nil || !ok {
		return shared, ok, err
	}
	cp := *shared
	cp.Manifests = slices.Clone(shared.Manifests)
	return &cp, true, nil
}

// index is index.json as parsed, shared: callers only read it. It is
// parsed again only when the file is another one than last time (see
// indexCache); a look-up per release would otherwise parse an index that
// grows with the releases, once per release.
func (l *Layout) index() (*v1.IndexManifest, bool, error) {
	path := filepath.Join(l.Dir, indexFile)
	c := indexCacheFor(path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.im != nil && c.settled {
		if st, err := os.Stat(path); err == nil && sameVersion(c.info, st) {
			indexCacheHits.Add(1)
			return c.im, true, nil
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.im, c.raw, c.info = nil, nil, nil
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	// The identity and the bytes come from the same open file, so they
	// belong together even if a writer renames a new index in meanwhile.
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, false, err
	}
	indexReads.Add(1)
	now := time.Now()
	if c.im != nil && bytes.Equal(b, c.raw) {
		c.info, c.settled = st, now.Sub(st.ModTime()) > indexSettle
		return c.im, true, nil
	}
	indexParses.Add(1)
	im := &v1.IndexManifest{}
	if err := json.Unmarshal(b, im); err != nil {
		c.im, c.raw, c.info = nil, nil, nil
		return nil, false, fmt.Errorf("%s: %w", indexFile, err)
	}
	c.im, c.raw, c.info, c.settled = im, b, st, now.Sub(st.ModTime()) > indexSettle
	return im, true, nil
}

// indexCache is the last index.json a process parsed in one directory,
// with the identity of the file it came from. An entry is trusted by
// identity alone (same file by device and inode, same size, same
// modification time) only once it is settled: its modification time was
// more than indexSettle older than the moment it was read, so that a
// rewrite within the file system's timestamp granularity cannot look
// like the same version. Until then every read compares the bytes. Every
// writer replaces index.json by rename, so each version is a new file.
type indexCache struct {
	mu      sync.Mutex
	info    os.FileInfo
	raw     []byte
	im      *v1.IndexManifest
	settled bool
}

// indexSettle is how much older than its read a version of index.json
// must be to be trusted by its identity (FAT has 2 s timestamps).
const indexSettle = 3 * time.Second

var (
	indexCaches sync.Map // index.json path -> *indexCache
	// indexParses and indexCacheHits count, for tests, the times
	// index.json was parsed and the times it was not even read;
	// indexWrites and indexBytesWritten the times it was written and the
	// bytes.
	indexParses, indexCacheHits    atomic.Int64
	indexReads                     atomic.Int64 // times the file was read
	indexWrites, indexBytesWritten atomic.Int64
)

func indexCacheFor(path string) *indexCache {
	if c, ok := indexCaches.Load(path); ok {
		return c.(*indexCache)
	}
	c, _ := indexCaches.LoadOrStore(path, &indexCache{})
	return c.(*indexCache)
}

// sameVersion reports whether a and b describe the same version of a file.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// writeIndex replaces index.json atomically. The caller holds the index
// lock.
func (l *Layout) writeIndex(im *v1.IndexManifest) error {
	if im.SchemaVersion == 0 {
		im.SchemaVersion = 2
	}
	if im.MediaType == "" {
		im.MediaType = types.OCIImageIndex
	}
	b, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.Dir, indexFile, b); err != nil {
		return err
	}
	indexWrites.Add(1)
	indexBytesWritten.Add(int64(len(b)))
	// The writer knows what it wrote: the next read compares bytes (the
	// version is not settled yet) and parses nothing.
	path := filepath.Join(l.Dir, indexFile)
	if st, err := os.Stat(path); err == nil {
		cp := *im
		cp.Manifests = slices.Clone(im.Manifests)
		c := indexCacheFor(path)
		c.mu.Lock()
		c.im, c.raw, c.info, c.settled = &cp, b, st, false
		c.mu.Unlock()
	}
	return nil
}

// writeFileAtomic writes dir/name through a temp file in dir: write, fsync,
// rename, fsync the directory.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// find returns the entry recorded for ref in im, nil if there is none.
func find(im *v1.IndexManifest, r name.Reference) *v1.Descriptor {
	want := r.Name()
	dig, byDigest := r.(name.Digest)
	for i := len(im.Manifests) - 1; i >= 0; i-- { // the newest entry wins
		d := im.Manifests[i]
		if byDigest {
			if d.Digest.String() == dig.DigestStr() && (d.Annotations[AnnotationImageName] == "" || sameRepo(d.Annotations[AnnotationImageName], r)) {
				return &d
			}
			continue
		}
		if full := d.Annotations[AnnotationImageName]; full != "" {
			if full == want {
				return &d
			}
			continue
		}
		if d.Annotations[AnnotationRefName] == r.Identifier() {
			return &d
		}
	}
	return nil
}

// lookup parses ref and finds its entry: pending in a batch of this
// process (those are newer), else in index.json. Pending entries are
// looked at first: a flush writes index.json before it drops them, so an
// entry is always in one of the two.
func (l *Layout) lookup(ref string) (*v1.Descriptor, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	if d := locksFor(l.Dir).batch.find(r); d != nil {
		return d, nil
	}
	im, ok, err := l.index()
	if err != nil || !ok {
		return nil, err
	}
	return find(im, r), nil
}

func sameRepo(full string, r name.Reference) bool {
	o, err := name.ParseReference(full, name.WeakValidation)
	return err == nil && o.Context().Name() == r.Context().Name()
}

// blobPath is where a blob with digest h lives.
func (l *Layout) blobPath(h v1.Hash) string {
	return filepath.Join(l.Dir, "blobs", h.Algorithm, h.Hex)
}

// errBroken says an image's blobs are missing or do not match.
var errBroken = errors.New("image is not whole")

// readManifest reads the blob of a manifest or index descriptor and checks
// it against the digest. A missing or mismatching blob is errBroken.
func (l *Layout) readManifest(d v1.Descriptor) ([]byte, error) {
	f, err := os.Open(l.blobPath(d.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, errBroken)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("manifest %s: larger than %d bytes", d.Digest, maxManifestSize)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(b)); d.Digest.Algorithm == "sha256" && got != d.Digest {
		return nil, fmt.Errorf("manifest %s: content has digest %s: %w", d.Digest, got, errBroken)
	}
	return b, nil
}

// children returns the descriptors a manifest or index blob refers to:
// config and layers of an image, manifests of an index.
func children(d v1.Descriptor, raw []byte) ([]v1.Descriptor, error) {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	mt := d.MediaType
	if mt == "" {
		mt = probe.MediaType
	}
	if mt.IsIndex() || (mt == "" && probe.Manifests != nil) {
		var im v1.IndexManifest
		if err := json.Unmarshal(raw, &im); err != nil {
			return nil, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		return im.Manifests, nil
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...), nil
}

func isManifest(d v1.Descriptor) bool {
	return d.MediaType.IsImage() || d.MediaType.IsIndex()
}

// whole checks that every blob of the image (or index) d is present: the
// manifests verified by digest (they are small), config and layers by
// size (hashing gigabytes on every look-up would cost a read of the model).
func (l *Layout) whole(d v1.Descriptor, depth int) error {
	if depth > 8 {
		return fmt.Errorf("index %s: nested too deep", d.Digest)
	}
	raw, err := l.readManifest(d)
	if err != nil {
		return err
	}
	kids, err := children(d, raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errBroken, err)
	}
	for _, c := range kids {
		if isManifest(c) {
			if err := l.whole(c, depth+1); err != nil {
				return err
			}
			continue
		}
		st, err := os.Stat(l.blobPath(c.Digest))
		if errors.Is(err, fs.ErrNotExist) || (err == nil && (!st.Mode().IsRegular() || st.Size() != c.Size)) {
			return fmt.Errorf("blob %s: %w", c.Digest, errBroken)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Has reports whether the layout holds ref (repo:tag or repo@digest) and
// the image is whole: its manifest is there and matches the digest, and
// its config and layers are there with their sizes. A broken image is
// reported as absent, so the next reconcile writes it again. Entries a
// batch of this process keeps pending count (see Batch).
func (l *Layout) Has(ctx context.Context, ref string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if _, err := os.Stat(filepath.Join(l.Dir, indexFile)); errors.Is(err, fs.ErrNotExist) && !locksFor(l.Dir).batch.any() {
		return "", false, nil
	}
	release, err := l.readLock(ctx)
	if err != nil {
		return "", false, fmt.Errorf("layout %s: look up %s: %w", l.Dir, ref, err)
	}
	defer release()
	d, err := l.lookup(ref)
	if err != nil {
		return "", false, fmt.Errorf("layout %s: look up %s: %w", l.Dir, ref, err)
	}
	if d == nil {
		return "", false, nil
	}
	if err := l.whole(*d, 0); errors.Is(err, errBroken) {
		return "", false, nil
	} else if err != nil {
		return "", false, fmt.Errorf("layout %s: look up %s: %w", l.Dir, ref, err)
	}
	return d.Digest.String(), true, nil
}

// readLock takes the blob lock shared, so that GC does not sweep an image
// while it is checked. On a layout this process may not write to (a
// read-only mount) it reads without the lock: nobody can sweep it either.
func (l *Layout) readLock(ctx context.Context) (func(), error) {
	release, err := locksFor(l.Dir).lockBlobsShared(ctx, l.Dir)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, errReadOnly) {
		return func() {}, nil
	}
	return release, err
}

// Write stores img under ref (repo:tag). Blobs already in the layout are
// not written again, and an entry that already points at the same digest
// (with the image whole) is left as it is; an entry for ref with another
// digest is replaced. Without a batch, the entry is in index.json when
// Write returns; in a batch (see Batch), the blobs are, and the entry may
// be pending, seen by Has and Image of this process. A Write in a batch
// that flushes the pending entries returns the flush's failure.
func (l *Layout) Write(ctx context.Context, ref string, img v1.Image) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("layout %s: write %s: want repo:tag: %w", l.Dir, ref, err)
	}
	dig, err := l.write(ctx, r, img)
	if err != nil {
		return "", fmt.Errorf("layout %s: write %s: %w", l.Dir, ref, err)
	}
	return dig.String(), nil
}

func (l *Layout) write(ctx context.Context, r name.Tag, img v1.Image) (v1.Hash, error) {
	dig, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return v1.Hash{}, err
	}
	locks := locksFor(l.Dir)
	l.cleanStale(locks)

	// The blob lock is held shared from the first blob to the index entry:
	// until the entry exists, nothing but this lock keeps GC from
	// sweeping the blobs. In a batch, the batch takes the lock over (or
	// holds one already) until the entry is flushed.
	release, err := locks.lockBlobsShared(ctx, l.Dir)
	if err != nil {
		return v1.Hash{}, err
	}
	defer func() { release() }()
	// In a batch only the pending entries are looked at: reading
	// index.json, which grows with the writes, on every one would cost
	// O(N²) again. Writing an image that index.json has already costs a
	// stat of each blob (a hash of the small ones), and the flush leaves
	// its entry as it is.
	var d *v1.Descriptor
	if locks.batch.isOpen() {
		d = locks.batch.find(r)
	} else if d, err = l.lookup(r.Name()); err != nil {
		d = nil
	}
	if d != nil && d.Digest == dig && l.whole(*d, 0) == nil {
		return dig, nil
	}
	if err := l.writeImageBlobs(ctx, img); err != nil {
		return v1.Hash{}, err
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return v1.Hash{}, err
	}
	desc.Annotations = map[string]string{
		AnnotationRefName:   r.TagStr(),
		AnnotationImageName: r.Name(),
		AnnotationCreated:   time.Now().UTC().Format(time.RFC3339Nano),
	}
	e := pendingEntry{tag: r, desc: *desc}
	batched, flush, release := locks.batch.record(e, release)
	if !batched {
		return dig, l.commit(ctx, locks, &e)
	}
	if flush {
		if err := l.commit(ctx, locks, nil); err != nil {
			return v1.Hash{}, fmt.Errorf("flush index: %w", err)
		}
	}
	return dig, nil
}

// writeImageBlobs writes the layers (at most four at once), then the
// config, then the manifest: a manifest is never there before its blobs.
func (l *Layout) writeImageBlobs(ctx context.Context, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, layer := range layers {
		g.Go(func() error {
			h, err := layer.Digest()
			if err != nil {
				return fmt.Errorf("layer: %w", err)
			}
			size, err := layer.Size()
			if err != nil {
				return fmt.Errorf("layer %s: %w", h, err)
			}
			if err := l.writeBlob(gctx, h, size, false, layer.Compressed); err != nil {
				return fmt.Errorf("layer %s: %w", h, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := l.writeBlob(ctx, cfgName, int64(len(cfg)), true, bytesBlob(cfg)); err != nil {
		return fmt.Errorf("config %s: %w", cfgName, err)
	}
	dig, err := img.Digest()
	if err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if err := l.writeBlob(ctx, dig, int64(len(raw)), true, bytesBlob(raw)); err != nil {
		return fmt.Errorf("manifest %s: %w", dig, err)
	}
	return nil
}

func bytesBlob(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// writeBlob writes the blob h unless it is there with its size (and, if
// verify is set, its digest: cheap for configs and manifests). It streams
// into blobs/<alg>/<hex>.tmp-<random>, checks size and digest, fsyncs and
// renames, so the final name only ever holds the whole, verified blob.
// The caller holds the blob lock shared, which is what keeps the cleaner
// from removing the temp file while it grows.
func (l *Layout) writeBlob(ctx context.Context, h v1.Hash, size int64, verify bool, open func() (io.ReadCloser, error)) error {
	final := l.blobPath(h)
	if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() && st.Size() == size {
		if !verify || fileHasDigest(final, h) {
			return nil
		}
	}
	hasher, err := newHasher(h.Algorithm)
	if err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.CreateTemp(dir, h.Hex+blobTmpInfix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	n, err := io.Copy(io.MultiWriter(f, hasher), ctxReader{ctx, rc})
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if got := hex.EncodeToString(hasher.Sum(nil)); got != h.Hex {
		return fmt.Errorf("content has digest %s:%s", h.Algorithm, got)
	}
	return os.Rename(tmp, final)
}

func newHasher(alg string) (hash.Hash, error) {
	if alg != "sha256" {
		return nil, fmt.Errorf("digest algorithm %q: only sha256 is supported", alg)
	}
	return sha256.New(), nil
}

// fileHasDigest reports whether the file at path hashes to h.
func fileHasDigest(path string, h v1.Hash) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	got, _, err := v1.SHA256(f)
	return err == nil && got == h
}

// cleanStale removes temp files that dead writers left behind, once per
// process and directory, if it can take the blob lock exclusively right
// now. Every writer holds that lock shared for as long as its temp files
// exist (writeBlob, writeFileAtomic under Write), so holding it
// exclusively proves that no temp file is being written by anyone: each
// one is a leftover of a process that died (kill -9, power loss; the
// kernel dropped its lock). When the lock is busy, a live writer may be
// writing; the clean is left to the next write or to GC, rather than
// waiting or guessing from file ages, which a slow push of a big model
// would defeat.
func (l *Layout) cleanStale(locks *dirLock) {
	if locks.cleaned.Load() {
		return
	}
	release, ok, err := locks.tryLockBlobsExclusive(l.Dir)
	if err != nil || !ok {
		return
	}
	defer release()
	if _, _, err := l.removeTemps(false); err != nil {
		slog.Warn("layout: remove stale temp files", "dir", l.Dir, "err", err)
		return
	}
	locks.cleaned.Store(true)
}

// removeTemps removes (or with dryRun only counts) the temp files in the
// layout: blobs/<alg>/ entries that are not named by a digest, and root
// files with tmpPrefix. The caller holds the blob lock exclusively.
func (l *Layout) removeTemps(dryRun bool) (n int, bytes int64, err error) {
	root, err := os.ReadDir(l.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	var errs []error
	for _, e := range root {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			size, err := removeRegular(filepath.Join(l.Dir, e.Name()), dryRun)
			if err != nil {
				errs = append(errs, err)
			} else if size >= 0 {
				n++
				bytes += size
			}
		}
	}
	bn, bb, err := l.removeBlobFiles(dryRun, func(_, name string, hexLen int) bool { return !isHex(name, hexLen) })
	return n + bn, bytes + bb, errors.Join(append(errs, err)...)
}

// removeBlobFiles removes (or with dryRun only counts) the regular files
// in blobs/<alg>/ that sel picks, given their name and the hex length of
// the algorithm's digests. Directories of unknown algorithms are left
// alone.
func (l *Layout) removeBlobFiles(dryRun bool, sel func(alg, name string, hexLen int) bool) (n int, bytes int64, err error) {
	algs, err := os.ReadDir(filepath.Join(l.Dir, "blobs"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, a := range algs {
		want, known := hexLen[a.Name()]
		if !a.IsDir() || !known {
			continue
		}
		dir := filepath.Join(l.Dir, "blobs", a.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !sel(a.Name(), e.Name(), want) {
				continue
			}
			size, err := removeRegular(filepath.Join(dir, e.Name()), dryRun)
			if err != nil {
				errs = append(errs, err)
			} else if size >= 0 {
				n++
				bytes += size
			}
		}
	}
	return n, bytes, errors.Join(errs...)
}

// removeRegular removes path if it is a regular file (only stats it with
// dryRun) and returns its size; -1 when it is not a regular file or is
// gone already.
func removeRegular(path string, dryRun bool) (int64, error) {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		return -1, nil
	}
	if !dryRun {
		if err := os.Remove(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return -1, nil
			}
			return -1, err
		}
	}
	return st.Size(), nil
}

// hexLen is the length of a digest's hex, by algorithm. A file in
// blobs/<alg>/ with any other name is a temp file: ours
// ("<hex>.tmp-<random>") or go-containerregistry's ("<hex><random digits>").
var hexLen = map[string]int{"sha256": 64, "sha512": 128}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Image reads ref from the layout: an entry of index.json or one a batch
// of this process keeps pending. The manifest is read and checked
// against its digest now; the config and layers when used, without a
// lock: an image that GC drops meanwhile (it is neither referenced nor
// among the newest) fails to read.
func (l *Layout) Image(ctx context.Context, ref string) (v1.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := l.lookup(ref)
	if err != nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, err)
	}
	if d == nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, ErrNotFound)
	}
	img, err := l.image(*d)
	if err != nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, err)
	}
	return img, nil
}

// image is the image of the entry d, read from its blobs: index.json
// plays no part, so pending entries read like recorded ones, and a read
// does not parse an index that grows with the releases.
func (l *Layout) image(d v1.Descriptor) (v1.Image, error) {
	if d.MediaType.IsIndex() {
		return nil, fmt.Errorf("%s is an index (%s), not an image", d.Digest, d.MediaType)
	}
	raw, err := l.readManifest(d)
	if err != nil {
		return nil, err
	}
	man, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return partial.CompressedToImage(&layoutImage{l: l, desc: d, raw: raw, man: man})
}

// layoutImage is an image whose manifest is read (raw, parsed as man) and
// whose config and layers are blobs of the layout, read when used.
type layoutImage struct {
	l    *Layout
	desc v1.Descriptor
	raw  []byte
	man  *v1.Manifest
}

func (i *layoutImage) MediaType() (types.MediaType, error) {
	if i.desc.MediaType != "" {
		return i.desc.MediaType, nil
	}
	return i.man.MediaType, nil
}

func (i *layoutImage) RawManifest() ([]byte, error) { return i.raw, nil }

func (i *layoutImage) RawConfigFile() ([]byte, error) {
	b, err := os.ReadFile(i.l.blobPath(i.man.Config.Digest))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", i.man.Config.Digest, err)
	}
	return b, nil
}

func (i *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.man.Config.Digest {
		return &layoutBlob{i.l, i.man.Config}, nil
	}
	for _, d := range i.man.Layers {
		if h == d.Digest {
			return &layoutBlob{i.l, d}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in image %s", h, i.desc.Digest)
}

// layoutBlob is a config or layer blob of the layout.
type layoutBlob struct {
	l    *Layout
	desc v1.Descriptor
}

func (b *layoutBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *layoutBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *layoutBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }

// Descriptor gives the layer's annotations to partial.Descriptor.
func (b *layoutBlob) Descriptor() (*v1.Descriptor, error) { return &b.desc, nil }

func (b *layoutBlob) Compressed() (io.ReadCloser, error) {
	return os.Open(b.l.blobPath(b.desc.Digest))
}
