package reconcile

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// Resolver turns an image reference into its manifest digest.
type Resolver interface {
	Has(ctx context.Context, ref string) (digest string, ok bool, err error)
}

// NewResolver resolves runtime images in registries: one try each (a
// registry that is down must not stall the loop), plain HTTP to hosts
// other than localhost with insecure.
func NewResolver(insecure bool) Resolver {
	return registry.NewRemote(registry.Options{Insecure: insecure, Retry: registry.Retry{Attempts: 1}})
}

// ResolveImages resolves the releases' runtime images that are not pinned
// by digest yet, for planner.Observed.Images. An image that cannot be
// resolved is left out (the objects then use the tag) and logged.
func ResolveImages(ctx context.Context, cfg *spec.Config, r Resolver, log *slog.Logger) map[string]string {
	seen := map[string]bool{}
	var refs []string
	for _, rel := range cfg.Releases {
		img := rel.Runtime.Image
		if img != "" && !strings.Contains(img, "@") && !seen[img] {
			seen[img] = true
			refs = append(refs, img)
		}
	}
	sort.Strings(refs)
	out := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, ref := range refs {
		g.Go(func() error {
			cctx, cancel := context.WithTimeout(gctx, 10*time.Second)
			defer cancel()
			digest, ok, err := r.Has(cctx, ref)
			switch {
			case err != nil:
				log.Warn("runtime image not resolved to a digest; using the tag", "image", ref, "err", err)
			case !ok:
				log.Warn("runtime image not found; using the tag", "image", ref)
			default:
				mu.Lock()
				out[ref] = digest
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return out
}
