package reconcile

import (
	"context"
	"fmt"
	"sync"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// evalGate runs release r's evals on the candidate in and records their
// checks in st; a missed bound is a GateError that says which metric and
// by how much.
func (e *Engine) evalGate(ctx context.Context, store registry.Store, in evalInput, st *ReleaseStatus) error {
	checks, err := e.evaluate(ctx, store, in)
	st.Evals = checks
	if err != nil {
		return err
	}
	if why := planner.Blocked(checks); why != "" {
		return &GateError{Release: in.Release.Name, Reason: why}
	}
	return nil
}

// candidatePusher pushes build b once, to planner.CandidateRef, when an
// evaluator needs it in the registry (an eval Job mounts the image).
func (e *Engine) candidatePusher(store registry.Store, cfg *spec.Config, r *spec.Release, key string, b built) func(ctx context.Context) (string, string, error) {
	var (
		once   sync.Mutex
		ref    string
		digest string
	)
	return func(ctx context.Context) (string, string, error) {
		once.Lock()
		defer once.Unlock()
		if ref != "" {
			return ref, digest, nil
		}
		cref := planner.CandidateRef(cfg, r)
		d, err := e.push(ctx, store, cfg, r, key, cref, b)
		if err != nil {
			return "", "", fmt.Errorf("push the candidate %s: %w", cref, err)
		}
		ref, digest = cref, d
		return ref, digest, nil
	}
}

// promoteCandidate tags the candidate image (planner.CandidateRef), which
// passed its gate, as the release's image ref. The content is in the
// store already: only the tag is written, and the digest is the same.
func (e *Engine) promoteCandidate(ctx context.Context, store registry.Store, candidate, ref, digest string) (string, error) {
	src, ok := store.(registry.Source)
	if !ok {
		return "", fmt.Errorf("promote %s: the image store cannot be read back", candidate)
	}
	img, err := src.Image(ctx, candidate)
	if err != nil {
		return "", fmt.Errorf("promote %s: %w", candidate, err)
	}
	d, err := store.Write(ctx, ref, img)
	if err != nil {
		return "", fmt.Errorf("promote %s to %s: %w", candidate, ref, err)
	}
	if digest != "" && d != digest {
		return "", fmt.Errorf("promote %s: the store holds %s, not the evaluated %s", candidate, d, digest)
	}
	e.log().Info("the candidate passed its gate", "ref", ref, "digest", d)
	return d, nil
}

// CachedEvals is what the engine with work directory workDir has cached
// of the eval results of cfg's candidate builds (planner.Observed.Evals),
// for gantry plan; releases whose image is among built have none to show.
func CachedEvals(workDir string, cfg *spec.Config, built map[string]planner.Artifact) map[string]planner.EvalResult {
	return (&Engine{WorkDir: workDir}).cachedEvals(cfg, built)
}
