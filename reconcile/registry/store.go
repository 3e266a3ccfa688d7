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
	out := make(map[string]planner.Artifact, len(refs))
	for i, ref := range refs {
		if digests[i] != "" {
			out[ref] = planner.Artifact{Ref: ref, Digest: digests[i]}
		}
	}
	return out, nil
}
