package registry

import (
	"archive/tar"
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every tar entry, so that the same
// files always give the same bytes whatever their mtime on disk.
var epoch = time.Unix(0, 0).UTC()

// tarEntry is one entry of a reproducible tar: a directory (src == "") or a
// regular file read from src.
type tarEntry struct {
	name string // slash-separated, relative; directories end in "/"
	src  string // absolute path on disk; "" for a directory
	size int64
	// info is what the stat of src found (size is its size), at seen.
	info os.FileInfo
	seen time.Time
}

// fileLayer is an uncompressed, reproducible tar layer that streams its
// content from disk every time it is read. Its digest and size are found
// by one hashing pass over the files, done once, when first needed, and
// kept in layerSums for the next layer over the same versions of the same
// files; the content is never held in memory. Uncompressed on purpose:
// model weights barely compress and gzip would cost more CPU than the
// bytes it saves.
type fileLayer struct {
	entries   []tarEntry
	mediaType types.MediaType

	once   sync.Once
	digest v1.Hash
	size   int64
	err    error
}

// newFileLayer makes a layer holding the file src at name (relative, slash
// separated), below prefix (e.g. "models/", or "" for none). Parent
// directories are added as entries so that extraction never has to guess
// their mode.
func newFileLayer(prefix, name, src string, mt types.MediaType) (*fileLayer, error) {
	seen := time.Now()
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", src)
	}
	full := prefix + name
	var entries []tarEntry
	dirs := strings.Split(full, "/")
	for i := 1; i < len(dirs); i++ {
		entries = append(entries, tarEntry{name: strings.Join(dirs[:i], "/") + "/"})
	}
	entries = append(entries, tarEntry{name: full, src: src, size: fi.Size(), info: fi, seen: seen})
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return &fileLayer{entries: entries, mediaType: mt}, nil
}

// writeTar writes the reproducible tar of l's entries to w.
func (l *fileLayer) writeTar(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range l.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The format is left for archive/tar to choose: USTAR when the
		// header fits, PAX otherwise, the same choice for the same input.
		h := &tar.Header{Name: e.name, ModTime: epoch, Uid: 0, Gid: 0}
		if e.src == "" {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", e.name, err)
		}
		if e.src == "" {
			continue
		}
		f, err := os.Open(e.src)
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, ctxReader{ctx, io.LimitReader(f, e.size)})
		if err == nil && n == e.size {
			if m, _ := f.Read(make([]byte, 1)); m > 0 {
				n++ // more than the header says: the file grew
			}
		}
		now := n
		if st, serr := f.Stat(); serr == nil {
			now = st.Size()
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("tar %s: %w", e.name, err)
		}
		if n != e.size {
			return fmt.Errorf("tar %s: %s changed size while packaging (%d, now %d bytes)", e.name, e.src, e.size, now)
		}
	}
	return tw.Close()
}

// compute finds the digest and size once: from layerSums when it holds
// them for these versions of the files, else by a hashing pass.
func (l *fileLayer) compute(ctx context.Context) error {
	l.once.Do(func() {
		key, versions, ok := l.sumKey()
		if ok {
			if s, hit := layerSums.get(key, versions); hit {
				l.digest, l.size = s.digest, s.size
				return
			}
		}
		layerHashes.Add(1)
		h := sha256.New()
		cw := &countWriter{w: h}
		if err := l.writeTar(ctx, cw); err != nil {
			l.err = err
			return
		}
		l.digest = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
		l.size = cw.n
		if ok && l.unchanged() {
			layerSums.put(key, layerSum{versions: versions, digest: l.digest, size: l.size})
		}
	})
	return l.err
}

// sumKey is what layerSums knows l's sum by: the entries' names and the
// files' paths, with the versions of the files (as newFileLayer found
// them) that the sum holds for. ok is false when a file's version cannot
// vouch for its content: it was modified less than layerSettle before
// newFileLayer looked, so a rewrite within the file system's timestamp
// granularity could keep size and modification time (the reason index
// caches settle too). Such a layer is hashed every time until its files
// settle.
func (l *fileLayer) sumKey() (key string, versions []os.FileInfo, ok bool) {
	var b strings.Builder
	for _, e := range l.entries {
		b.WriteString(e.name)
		b.WriteByte(0)
		if e.src == "" {
			continue
		}
		if e.seen.Sub(e.info.ModTime()) <= layerSettle {
			return "", nil, false
		}
		b.WriteString(e.src)
		b.WriteByte(0)
		versions = append(versions, e.info)
	}
	return b.String(), versions, true
}

// unchanged reports whether every file is still the version newFileLayer
// found: a sum of a file that changed while it was hashed is not kept.
func (l *fileLayer) unchanged() bool {
	for _, e := range l.entries {
		if e.src == "" {
			continue
		}
		if st, err := os.Stat(e.src); err != nil || !sameVersion(e.info, st) {
			return false
		}
	}
	return true
}

// layerSettle is how much older than its stat a file must be for its
// version to vouch for its content (FAT has 2 s timestamps).
const layerSettle = indexSettle

// layerSumsMax bounds layerSums: a few thousand distinct model files per
// process, each a path and a stat (a few hundred bytes).
const layerSumsMax = 4096

var (
	// layerSums are the digests and sizes of file layers, so that 1,000
	// releases of one model file hash it once, not 1,000 times.
	layerSums = newSumCache(layerSumsMax)
	// layerHashes counts, for tests, the hashing passes over layer files.
	layerHashes atomic.Int64
)

// layerSum is the digest and size of a layer over versions of its files.
type layerSum struct {
	versions []os.FileInfo
	digest   v1.Hash
	size     int64
}

// sumCache is a bounded map from a layer's key to its sum, which evicts
// the least recently used.
type sumCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *sumItem, most recently used first
	byKey map[string]*list.Element
}

type sumItem struct {
	key string
	sum layerSum
}

func newSumCache(max int) *sumCache {
	return &sumCache{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the sum under key if it holds for versions: the same files
// (device and inode), sizes and modification times.
func (c *sumCache) get(key string, versions []os.FileInfo) (layerSum, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return layerSum{}, false
	}
	s := el.Value.(*sumItem).sum
	if len(s.versions) != len(versions) {
		return layerSum{}, false
	}
	for i, v := range versions {
		if !sameVersion(s.versions[i], v) {
			return layerSum{}, false
		}
	}
	c.order.MoveToFront(el)
	return s, true
}

// put keeps s under key, replacing the sum of another version.
func (c *sumCache) put(key string, s layerSum) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value.(*sumItem).sum = s
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&sumItem{key, s})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*sumItem).key)
	}
}

// Digest implements v1.Layer.
func (l *fileLayer) Digest() (v1.Hash, error) {
	err := l.compute(context.Background())
	return l.digest, err
}

// DiffID implements v1.Layer; the layer is uncompressed, so it is the digest.
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.Digest() }

// Size implements v1.Layer.
func (l *fileLayer) Size() (int64, error) {
	err := l.compute(context.Background())
	return l.size, err
}

// MediaType implements v1.Layer.
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed implements v1.Layer. It streams through a pipe.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(l.writeTar(context.Background(), pw))
	}()
	return pr, nil
}

// Uncompressed implements v1.Layer.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// cleanRel checks that p is a clean, relative, slash-separated path that
// stays inside its root, and returns it.
func cleanRel(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return "", fmt.Errorf("path %q must be relative and slash-separated", p)
	}
	c := path.Clean(p)
	if c != p || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q must be clean and stay inside the model directory", p)
	}
	return c, nil
}
