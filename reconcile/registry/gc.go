package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GCOptions say what Layout.GC keeps.
type GCOptions struct {
	// Referenced are the images current objects use, as digests
	// ("sha256:…") or references with a digest ("repo@sha256:…"). Every
	// index entry with one of these digests is kept, whatever its age.
	Referenced []string
	// Keep is how many of the newest entries of each repository are kept
	// besides the referenced ones (newest by AnnotationCreated; entries
	// without it count as the oldest, in index order). 0 keeps only the
	// referenced images.
	Keep int
	// DryRun reports what would go and removes nothing.
	DryRun bool
}

// GCResult is what GC removed, or with DryRun would remove.
type GCResult struct {
	// Kept and Removed are the index entries, as "repo:tag@digest".
	Kept, Removed []string
	// Blobs counts the blobs removed that no kept image refers to; Temps
	// the stale temp files of writers that died.
	Blobs, Temps int
	// Bytes is what blobs and temp files took on disk.
	Bytes  int64
	DryRun bool
}

// GC drops the index entries that are neither referenced nor among the
// Keep newest of their repository (gantry.local/models/<release>), then
// removes the blobs that no kept entry reaches (manifests, configs,
// layers, nested indexes and what they list) and the stale temp files.
//
// It is safe while other goroutines and processes push: it holds the blob
// lock exclusively, and every Write holds it shared from its first blob to
// its index entry (a batch, until the entry is flushed), so an image is
// either wholly written and in index.json (and then newest in its
// repository) or not started when GC marks. The entries a batch of this
// process keeps pending are flushed first, so GC in a batch, or beside
// one, does not wait for the batch to end; another process's batch makes
// GC wait until it flushes. The index is rewritten before any blob goes,
// so a crash in between leaves unreachable blobs for the next GC, never
// an entry without its blobs.
func (l *Layout) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	res := GCResult{DryRun: opts.DryRun}
	if opts.Keep < 0 {
		return res, fmt.Errorf("layout %s: gc: keep %d: want 0 or more", l.Dir, opts.Keep)
	}
	if _, err := os.Stat(filepath.Join(l.Dir, indexFile)); errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	referenced := map[v1.Hash]bool{}
	for _, s := range opts.Referenced {
		if _, d, ok := strings.Cut(s, "@"); ok {
			s = d
		}
		h, err := v1.NewHash(s)
		if err != nil {
			return res, fmt.Errorf("layout %s: gc: referenced digest %q: %w", l.Dir, s, err)
		}
		referenced[h] = true
	}
	locks := locksFor(l.Dir)
	// First this process's pending entries (see Batch): their batch holds
	// the blob lock shared until they are flushed, and would keep GC
	// waiting, and every new Write behind it, until the batch ends. While
	// GC runs, a Write in a batch flushes its entry at once. (With DryRun
	// too: the flush records what was written, it removes nothing.)
	locks.batch.gcs.Add(1)
	defer locks.batch.gcs.Add(-1)
	if err := l.commit(ctx, locks, nil); err != nil {
		return res, fmt.Errorf("layout %s: gc: flush pending entries: %w", l.Dir, err)
	}
	release, err := locks.lockBlobsExclusive(ctx, l.Dir)
	if err != nil {
		return res, fmt.Errorf("layout %s: gc: %w", l.Dir, err)
	}
	defer release()
	unlock, err := locks.lockIndex(ctx, l.Dir)
	if err != nil {
		return res, fmt.Errorf("layout %s: gc: %w", l.Dir, err)
	}
	defer unlock()
	if err := l.gc(ctx, referenced, opts, &res); err != nil {
		return res, fmt.Errorf("layout %s: gc: %w", l.Dir, err)
	}
	if !opts.DryRun {
		locks.cleaned.Store(true)
	}
	return res, nil
}

func (l *Layout) gc(ctx context.Context, referenced map[v1.Hash]bool, opts GCOptions, res *GCResult) error {
	im, _, err := l.readIndex()
	if err != nil {
		return err
	}
	keep := keepEntries(im.Manifests, referenced, opts.Keep)
	var kept []v1.Descriptor
	for i, d := range im.Manifests {
		if keep[i] {
			kept = append(kept, d)
			res.Kept = append(res.Kept, entryName(d))
		} else {
			res.Removed = append(res.Removed, entryName(d))
		}
	}

	// Mark: every blob a kept entry reaches, and every referenced digest
	// whose blob is there (an object may use an image no entry names).
	marked := map[v1.Hash]bool{}
	var roots []v1.Descriptor
	roots = append(roots, kept...)
	for h := range referenced {
		roots = append(roots, v1.Descriptor{Digest: h})
	}
	for _, d := range roots {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := l.mark(d, marked, 0); err != nil {
			return err
		}
	}

	if !opts.DryRun && len(kept) != len(im.Manifests) {
		im.Manifests = kept
		if err := l.writeIndex(im); err != nil {
			return err
		}
	}

	// Sweep.
	n, b, err := l.removeTemps(opts.DryRun)
	res.Temps, res.Bytes = n, b
	if err != nil {
		return err
	}
	res.Blobs, b, err = l.removeBlobFiles(opts.DryRun, func(alg, name string, hexLen int) bool {
		return isHex(name, hexLen) && !marked[v1.Hash{Algorithm: alg, Hex: name}]
	})
	res.Bytes += b
	return err
}

// mark marks d and, if it is a manifest or an index whose blob is there,
// what it refers to. A manifest that is missing or does not match its
// digest marks nothing more (the image is broken; Has reports it absent,
// and the next write brings every blob back).
func (l *Layout) mark(d v1.Descriptor, marked map[v1.Hash]bool, depth int) error {
	if d.Digest.Hex == "" || marked[d.Digest] {
		return nil
	}
	marked[d.Digest] = true
	if depth > 8 || (d.MediaType != "" && !isManifest(d)) {
		return nil
	}
	raw, err := l.readManifest(d)
	if d.MediaType == "" && err != nil {
		return nil // a referenced digest that is not a manifest, or absent
	}
	if errors.Is(err, errBroken) {
		return nil
	}
	if err != nil {
		return err
	}
	kids, err := children(d, raw)
	if err != nil {
		return nil // an unparsable manifest: broken, as above
	}
	for _, c := range kids {
		if err := l.mark(c, marked, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// keepEntries says which index entries GC keeps: the referenced ones and
// the keep newest of each repository.
func keepEntries(ds []v1.Descriptor, referenced map[v1.Hash]bool, keep int) []bool {
	out := make([]bool, len(ds))
	byRepo := map[string][]int{}
	var attached []int // signatures and attestations: kept with their image
	for i, d := range ds {
		if referenced[d.Digest] {
			out[i] = true
		}
		if _, ok := attachedTo(d); ok {
			attached = append(attached, i)
			continue
		}
		r := repoOf(d)
		byRepo[r] = append(byRepo[r], i)
	}
	for _, idx := range byRepo {
		// Newest first: by the created time, then by position (a later
		// entry was appended later). Missing or unparsable times are the
		// zero time, the oldest.
		slices.SortFunc(idx, func(a, b int) int {
			if c := createdAt(ds[b]).Compare(createdAt(ds[a])); c != 0 {
				return c
			}
			return cmp.Compare(b, a)
		})
		for _, i := range idx[:min(keep, len(idx))] {
			out[i] = true
		}
	}
	// An attachment goes with its image.
	keptImages := map[string]bool{}
	for i, d := range ds {
		if out[i] {
			keptImages[repoOf(d)+"@"+d.Digest.String()] = true
		}
	}
	for _, i := range attached {
		if sub, _ := attachedTo(ds[i]); keptImages[repoOf(ds[i])+"@"+sub] {
			out[i] = true
		}
	}
	return out
}

// attachedTo is the digest of the image an entry is the signature or
// attestation of (tagged "sha256-<hex>.sig" or ".att", see attest.go).
func attachedTo(d v1.Descriptor) (string, bool) {
	tag := d.Annotations[AnnotationRefName]
	hex, ok := strings.CutPrefix(tag, "sha256-")
	if !ok || len(hex) < 64 || !isHex(hex[:64], 64) || (len(hex) > 64 && hex[64] != '.') {
		return "", false
	}
	return "sha256:" + hex[:64], true
}

func createdAt(d v1.Descriptor) time.Time {
	t, err := time.Parse(time.RFC3339Nano, d.Annotations[AnnotationCreated])
	if err != nil {
		return time.Time{}
	}
	return t
}

// repoOf is the repository of an entry: of its full image name, else
// (entries written by other tools) "" for all that carry only a tag.
func repoOf(d v1.Descriptor) string {
	full := d.Annotations[AnnotationImageName]
	if full == "" {
		return ""
	}
	r, err := name.ParseReference(full, name.WeakValidation)
	if err != nil {
		return full
	}
	return r.Context().Name()
}

// entryName names an entry in a GCResult.
func entryName(d v1.Descriptor) string {
	n := d.Annotations[AnnotationImageName]
	if n == "" {
		n = d.Annotations[AnnotationRefName]
	}
	if n == "" {
		return d.Digest.String()
	}
	return n + "@" + d.Digest.String()
}
