package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// multiHas is a store that answers many Has look-ups at once for less
// than one by one: Observe uses it when the store has it.
type multiHas interface {
	// hasAll returns, for each of refs, the digest of the whole image the
	// store has under it, "" for none.
	hasAll(ctx context.Context, refs []string) ([]string, error)
}

var _ multiHas = (*Layout)(nil)

// hasAll is Has for many references at once: one read of index.json and
// one index of its entries by name, however many references (Has reads
// and scans the index once per reference; for the references of N
// releases that is O(N²), and an index.json just written is read whole
// per look-up). Each image found is checked whole, as Has checks it.
func (l *Layout) hasAll(ctx context.Context, refs []string) ([]string, error) {
	out := make([]string, len(refs))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	locks := locksFor(l.Dir)
	if _, err := os.Stat(filepath.Join(l.Dir, indexFile)); errors.Is(err, fs.ErrNotExist) && !locks.batch.any() {
		return out, nil
	}
	release, err := l.readLock(ctx)
	if err != nil {
		return nil, fmt.Errorf("layout %s: look up: %w", l.Dir, err)
	}
	defer release()
	im, _, err := l.index()
	if err != nil {
		return nil, fmt.Errorf("layout %s: look up: %w", l.Dir, err)
	}
	byName := indexByName(im)
	found := make([]*v1.Descriptor, len(refs))
	for i, ref := range refs {
		r, err := name.ParseReference(ref, name.WeakValidation)
		if err != nil {
			return nil, fmt.Errorf("layout %s: look up %s: reference %q: %w", l.Dir, ref, ref, err)
		}
		if d := locks.batch.find(r); d != nil {
			found[i] = d
		} else if _, byDigest := r.(name.Digest); byDigest {
			found[i] = find(im, r)
		} else {
			found[i] = byName.find(im, r)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(observeJobs)
	for i, d := range found {
		if d == nil {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			if err := l.whole(*d, 0); errors.Is(err, errBroken) {
				return nil // reported absent: the next reconcile writes it again
			} else if err != nil {
				return fmt.Errorf("layout %s: look up %s: %w", l.Dir, refs[i], err)
			}
			out[i] = d.Digest.String()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// nameIndex locates index entries by name, as find does for a tag: the
// newest entry whose full image name matches, or else the newest entry
// without a full name whose ref name is the tag.
type nameIndex struct {
	byFull map[string]int // io.containerd.image.name -> newest entry
	byTag  map[string]int // org.opencontainers.image.ref.name of entries without a full name -> newest entry
}

func indexByName(im *v1.IndexManifest) nameIndex {
	x := nameIndex{byFull: map[string]int{}, byTag: map[string]int{}}
	for i, d := range im.Manifests { // later entries are newer: they win
		if full := d.Annotations[AnnotationImageName]; full != "" {
			x.byFull[full] = i
		} else if tag := d.Annotations[AnnotationRefName]; tag != "" {
			x.byTag[tag] = i
		}
	}
	return x
}

// find is find(im, r) for a tag reference r.
func (x nameIndex) find(im *v1.IndexManifest, r name.Reference) *v1.Descriptor {
	best := -1
	if i, ok := x.byFull[r.Name()]; ok {
		best = i
	}
	if i, ok := x.byTag[r.Identifier()]; ok && i > best {
		best = i
	}
	if best < 0 {
		return nil
	}
	d := im.Manifests[best]
	return &d
}
