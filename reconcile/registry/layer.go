package registry

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
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
}

// fileLayer is an uncompressed, reproducible tar layer that streams its
// content from disk every time it is read. Its digest and size are found
// by one hashing pass over the files, done once, when first needed; the
// content is never held in memory. Uncompressed on purpose: model weights
// barely compress and gzip would cost more CPU than the bytes it saves.
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
	entries = append(entries, tarEntry{name: full, src: src, size: fi.Size()})
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
		n, err := io.Copy(tw, ctxReader{ctx, f})
		f.Close()
		if err != nil {
			return fmt.Errorf("tar %s: %w", e.name, err)
		}
		if n != e.size {
			return fmt.Errorf("tar %s: %s changed size while packaging (%d, now %d bytes)", e.name, e.src, e.size, n)
		}
	}
	return tw.Close()
}

// compute runs the hashing pass once.
func (l *fileLayer) compute(ctx context.Context) error {
	l.once.Do(func() {
		h := sha256.New()
		cw := &countWriter{w: h}
		if err := l.writeTar(ctx, cw); err != nil {
			l.err = err
			return
		}
		l.digest = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
		l.size = cw.n
	})
	return l.err
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
