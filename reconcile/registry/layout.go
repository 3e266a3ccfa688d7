package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
)

// DefaultLayoutDir is where images go when no registry is configured,
// relative to the target directory's parent (".gantry/oci" next to
// ".gantry/objects").
const DefaultLayoutDir = ".gantry/oci"

// Layout is an OCI image layout directory: the embedded default when no
// registry is configured. Each image is recorded in index.json with its
// tag as org.opencontainers.image.ref.name (what skopeo's oci:DIR:TAG and
// ORAS read) and its full reference as io.containerd.image.name (so two
// repositories may share a tag). Writes are idempotent and safe between
// goroutines of one process; the directory is not locked against other
// processes.
type Layout struct {
	Dir string

	mu sync.Mutex
}

// NewLayout returns the layout store in dir. The directory is created on
// first write.
func NewLayout(dir string) *Layout { return &Layout{Dir: dir} }

var _ Store = (*Layout)(nil)

// path opens the layout, creating an empty one if create is set.
func (l *Layout) path(create bool) (layout.Path, bool, error) {
	p, err := layout.FromPath(l.Dir)
	if err == nil {
		return p, true, nil
	}
	if _, statErr := os.Stat(filepath.Join(l.Dir, "index.json")); !errors.Is(statErr, fs.ErrNotExist) {
		return "", false, err
	}
	if !create {
		return "", false, nil
	}
	p, err = layout.Write(l.Dir, empty.Index)
	return p, err == nil, err
}

// find returns the descriptor recorded for ref.
func (l *Layout) find(ref string) (*v1.Descriptor, layout.Path, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, "", fmt.Errorf("reference %q: %w", ref, err)
	}
	p, ok, err := l.path(false)
	if err != nil || !ok {
		return nil, p, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, p, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, p, err
	}
	want := r.Name()
	dig, byDigest := r.(name.Digest)
	for i := len(im.Manifests) - 1; i >= 0; i-- { // the newest entry wins
		d := im.Manifests[i]
		if byDigest {
			if d.Digest.String() == dig.DigestStr() && (d.Annotations[AnnotationImageName] == "" || sameRepo(d.Annotations[AnnotationImageName], r)) {
				return &d, p, nil
			}
			continue
		}
		if full := d.Annotations[AnnotationImageName]; full != "" {
			if full == want {
				return &d, p, nil
			}
			continue
		}
		if d.Annotations[AnnotationRefName] == r.Identifier() {
			return &d, p, nil
		}
	}
	return nil, p, nil
}

func sameRepo(full string, r name.Reference) bool {
	o, err := name.ParseReference(full, name.WeakValidation)
	return err == nil && o.Context().Name() == r.Context().Name()
}

// Has reports whether the layout holds ref (repo:tag or repo@digest) and
// the manifest blob it points to is present.
func (l *Layout) Has(ctx context.Context, ref string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d, p, err := l.find(ref)
	if err != nil {
		return "", false, fmt.Errorf("layout %s: look up %s: %w", l.Dir, ref, err)
	}
	if d == nil {
		return "", false, nil
	}
	// The digest check: the manifest blob must be there and match.
	if _, err := os.Stat(filepath.Join(string(p), "blobs", d.Digest.Algorithm, d.Digest.Hex)); err != nil {
		return "", false, nil
	}
	return d.Digest.String(), true, nil
}

// Write stores img under ref (repo:tag). Blobs already in the layout are
// not written again, and an entry that already points at the same digest is
// left as it is; an entry for ref with another digest is replaced.
func (l *Layout) Write(ctx context.Context, ref string, img v1.Image) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("layout %s: write %s: want repo:tag: %w", l.Dir, ref, err)
	}
	dig, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("layout %s: write %s: %w", l.Dir, ref, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, _, err := l.find(ref); err == nil && d != nil && d.Digest == dig {
		return dig.String(), nil
	}
	p, _, err := l.path(true)
	if err != nil {
		return "", fmt.Errorf("layout %s: write %s: %w", l.Dir, ref, err)
	}
	anns := map[string]string{AnnotationRefName: r.TagStr(), AnnotationImageName: r.Name()}
	// ReplaceImage writes the blobs (skipping those present), drops the
	// entries the matcher selects and appends the new one.
	sameName := func(d v1.Descriptor) bool {
		if full := d.Annotations[AnnotationImageName]; full != "" {
			return full == r.Name()
		}
		return d.Annotations[AnnotationRefName] == r.TagStr()
	}
	if err := p.ReplaceImage(img, match.Matcher(sameName), layout.WithAnnotations(anns)); err != nil {
		return "", fmt.Errorf("layout %s: write %s: %w", l.Dir, ref, err)
	}
	return dig.String(), nil
}

// Image reads ref from the layout.
func (l *Layout) Image(ctx context.Context, ref string) (v1.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d, p, err := l.find(ref)
	if err != nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, err)
	}
	if d == nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, ErrNotFound)
	}
	img, err := p.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("layout %s: read %s: %w", l.Dir, ref, err)
	}
	return img, nil
}
