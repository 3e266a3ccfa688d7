package registry

import (
	"context"
	"fmt"
	"sort"

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

// Observe asks s which of refs (content key -> repo:tag, as the planner
// derives them with planner.ImageRepository and planner.ImageTag) exist,
// and returns them as the planner's Observed.Artifacts. A missing image is
// simply absent from the map; any other failure is an error, because a
// plan built on a registry it could not read would rebuild everything.
func Observe(ctx context.Context, s Store, refs map[string]string) (map[string]planner.Artifact, error) {
	keys := make([]string, 0, len(refs))
	for k := range refs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	digests := make([]string, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(observeJobs)
	for i, k := range keys {
		g.Go(func() error {
			d, ok, err := s.Has(gctx, refs[k])
			if err != nil {
				return fmt.Errorf("observe content key %.12s: %w", k, err)
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
	out := make(map[string]planner.Artifact, len(keys))
	for i, k := range keys {
		if digests[i] != "" {
			out[k] = planner.Artifact{Ref: refs[k], Digest: digests[i]}
		}
	}
	return out, nil
}
