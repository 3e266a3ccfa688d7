package registry

import (
	"context"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/planner"
)

// Store is where model images live: a registry (Remote) or an OCI image
// layout directory (Layout).
type Store interface {
	// Has reports whether ref (repo:tag) exists, and its manifest digest.
	Has(ctx context.Context, ref string) (digest string, ok bool, err error)
	// Write stores img as ref (repo:tag) and returns its digest. It is
	// idempotent: what the store already has is not written again.
	Write(ctx context.Context, ref string, img v1.Image) (digest string, err error)
}

// Batcher is a Store that can record many writes in one update. Layout is
// one: its records are the entries of index.json, which every Write would
// otherwise rewrite whole, so that N pushes into one layout would write
// O(N²) bytes. Remote is not: a registry records each tag on its own.
//
// Batch opens a batch and returns the func that ends it. While a batch is
// open, Write writes and verifies an image's content as always, but may
// keep its record in memory and return before it is written; Has and
// Image in this process see it at once (read-your-writes). The records
// kept are written when the last open batch ends, and on the way
// whenever enough are waiting, so that the bytes written grow linearly
// with the writes. Batches may overlap and nest, in one goroutine or
// many, on one Store value or several on the same place: the records wait
// until every batch open there has ended.
//
// end returns what failed to be written (a Write that writes records on
// the way returns its failure itself). Each end must be called exactly
// once, also on error paths; later calls do nothing and return nil. A
// record lost (end failed, or the process died before it) costs only the
// record: the next Write of that image finds the content there and writes
// the record without writing the content again. end waits for locks with
// ctx; a caller that is shutting down and wants what it pushed recorded
// passes context.WithoutCancel(ctx).
//
//	if b, ok := store.(registry.Batcher); ok {
//		end := b.Batch()
//		defer func() { err = errors.Join(err, end(context.WithoutCancel(ctx))) }()
//	}
type Batcher interface {
	Batch() (end func(ctx context.Context) error)
}

// Source is where Pull reads images from. Remote and Layout are both one.
type Source interface {
	Image(ctx context.Context, ref string) (v1.Image, error)
}

// observeJobs bounds the registry look-ups Observe runs at once.
const observeJobs = 8

// Observe asks s which of refs (repo:tag, as planner.ImageRef derives
// them) exist, and returns them as the planner's Observed.Artifacts, keyed
// by reference. A missing image is simply absent from the map; any other
// failure is an error, because a plan built on a registry it could not
// read would rebuild everything.
func Observe(ctx context.Context, s Store, refs []string) (map[string]planner.Artifact, error) {
	refs = slices.Clone(refs)
	slices.Sort(refs)
	refs = slices.Compact(refs)
	if m, ok := s.(multiHas); ok {
		digests, err := m.hasAll(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("observe: %w", err)
		}
		return artifacts(refs, digests), nil
	}
	digests := make([]string, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(observeJobs)
	for i, ref := range refs {
		g.Go(func() error {
			d, ok, err := s.Has(gctx, ref)
			if err != nil {
				return fmt.Errorf("observe %s: %w", ref, err)
			}
			if ok {
				digests[i] = d
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return artifacts(refs, digests), nil
}

// artifacts pairs refs with the digests found for them ("" for none).
func artifacts(refs, digests []string) map[string]planner.Artifact {
	out := make(map[string]planner.Artifact, len(refs))
	for i, ref := range refs {
		if digests[i] != "" {
			out[ref] = planner.Artifact{Ref: ref, Digest: digests[i]}
		}
	}
	return out
}
