package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// BuildJob is one release's quantize → gate → push, run outside the
// daemon (runner = "job") by `gantry build` from the same image.
type BuildJob struct {
	Release    string
	Namespace  string
	Revision   string // the commit the job checks out
	RepoURL    string // the specs repository, without credentials
	ContentKey string
	Ref        string // repository:tag the job pushes
	CPU        string // requests, from the quantize block
	Memory     string
	// Candidate: the release's gate has evals, which the daemon runs; the
	// job pushes its build to Ref = planner.CandidateRef, ungated by them
	// (`gantry build --candidate`).
	Candidate bool
}

// JobRunner runs build jobs and returns when one has finished. An error
// whose text says the gate blocked is reported as a GateError.
type JobRunner interface {
	RunBuild(ctx context.Context, job BuildJob) error
}

// runJob hands the release's build to the JobRunner, then reads the
// pushed image's digest from the store.
func (e *Engine) runJob(ctx context.Context, cfg *spec.Config, r *spec.Release, key, ref string) (string, error) {
	if e.BuildJobs == nil {
		return "", fmt.Errorf("release %s: runner = \"job\" needs a Kubernetes target (--target kube)", r.Name)
	}
	if e.RepoURL == "" || cfg.Revision == "" {
		return "", fmt.Errorf("release %s: runner = \"job\" needs the specs in a Git repository the job can clone", r.Name)
	}
	job := BuildJob{Release: r.Name, Namespace: cfg.Settings.Namespace, Revision: cfg.Revision, RepoURL: e.RepoURL,
		ContentKey: key, Ref: ref, CPU: r.Quantize.CPU, Memory: r.Quantize.Memory, Candidate: hasEvals(r)}
	if job.Candidate {
		job.Ref = planner.CandidateRef(cfg, r)
	}
	e.log().Info("quantizing in a job", "release", r.Name, "key", key[:12])
	if err := e.BuildJobs.RunBuild(ctx, job); err != nil {
		if strings.Contains(err.Error(), "blocked by gate") {
			return "", &GateError{Release: r.Name, Reason: err.Error()}
		}
		return "", fmt.Errorf("release %s: build job: %w", r.Name, err)
	}
	digest, ok, err := e.store(cfg).Has(ctx, job.Ref)
	if err != nil {
		return "", fmt.Errorf("release %s: %w", r.Name, err)
	}
	if !ok {
		return "", fmt.Errorf("release %s: the build job succeeded but %s is not in the registry", r.Name, job.Ref)
	}
	return digest, nil
}

// ErrNoRelease is returned by BuildRelease for a name the specs lack.
var ErrNoRelease = errors.New("no such release")

// hasEvals reports whether release r's gate runs evaluators.
func hasEvals(r *spec.Release) bool { return r.Gate != nil && len(r.Gate.Evals) > 0 }

// BuildRelease runs one release's quantize → gate → push and returns the
// image digest; it is what `gantry build` (the build job) runs. An image
// the store already has is not built again. With candidate, the build is
// pushed to planner.CandidateRef and the gate's evals are left to the
// daemon that started the job (they compare with what serves, which the
// job cannot see); its weight error bound still applies here.
func (e *Engine) BuildRelease(ctx context.Context, name string, candidate bool) (string, error) {
	snap, err := e.Source.Fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch specs: %w", err)
	}
	cfg, diags := spec.Load(ctx, snap.Dir, spec.LoadOptions{Vars: e.Vars})
	cfg.Revision = snap.Revision
	if diags.HasErrors() {
		return "", fmt.Errorf("%w: %s", ErrInvalidSpecs, diags.Error())
	}
	r, ok := cfg.Release(name)
	if !ok {
		return "", fmt.Errorf("%w %q at %s", ErrNoRelease, name, snap.Revision)
	}
	key := planner.ContentKey(r)
	ref := planner.ImageRef(cfg, r)
	if candidate {
		ref = planner.CandidateRef(cfg, r)
	}
	store := e.store(cfg)
	if digest, ok, err := store.Has(ctx, ref); err != nil {
		return "", err
	} else if ok {
		e.log().Info("already built", "release", name, "ref", ref, "digest", digest)
		return digest, nil
	}
	b, err := e.build(ctx, snap, cfg, r, key)
	if err != nil {
		return "", fmt.Errorf("release %s: %w", name, err)
	}
	if err := gate(snap, r, b.Report); err != nil {
		return "", err
	}
	var st ReleaseStatus
	if hasEvals(r) && !candidate {
		// By hand: the evals run here, on absolute bounds (nothing
		// observed says what serves, so ratio bounds are skipped).
		in := evalInput{Snap: snap, Cfg: cfg, Release: r, Key: key, ModelPath: b.Path}
		if err := e.evalGate(ctx, store, in, &st); err != nil {
			return "", err
		}
	}
	digest, err := e.push(ctx, store, cfg, r, key, ref, b)
	if err != nil || candidate {
		// A candidate is attested by the daemon, once it passed.
		return digest, err
	}
	acfg := *cfg
	if k := cfg.Settings.SigningKeyFile; k != "" {
		if _, err := os.Stat(k); err != nil {
			// A build Job has no key mounted: the daemon that
			// started it signs the image when the job is done.
			e.log().Warn("signing_key_file is not on this machine: the image is attested unsigned here", "release", name)
			acfg.Settings.SigningKeyFile = ""
		}
	}
	var weightErr *quality.Tensor
	if b.Report != nil {
		weightErr = &b.Report.Summary
	}
	if err := e.attest(ctx, store, &acfg, r, key, ref, digest, weightErr, st.Evals); err != nil {
		return "", fmt.Errorf("release %s: %w", name, err)
	}
	return digest, nil
}
