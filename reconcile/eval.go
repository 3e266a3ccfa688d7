package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// NoBaseline is why ratio bounds are not checked when no build serves
// the release (a first release).
const NoBaseline = "nothing serves yet"

// CandidateServes is why ratio bounds are not checked when the build that
// serves is the candidate itself.
const CandidateServes = "the candidate's build is the one that serves"

// EvalJobRunner runs an evaluator as a Job outside the daemon (the kube
// target: KubeEvals) and returns its metrics when it has finished. An
// error is a failed run, never a missed bound.
type EvalJobRunner interface {
	RunEval(ctx context.Context, job EvalJob) (map[string]float64, error)
}

// EvalJob is one evaluator run on one build, as a Job.
type EvalJob struct {
	Release   string
	Namespace string
	Eval      *spec.Eval
	// ContentKey is the build evaluated (the candidate's, or the serving
	// build's for a baseline); EvalKey is planner.EvalKey of it and Eval.
	ContentKey string
	EvalKey    string
	// Model is the build's model image by digest (repository:tag@sha256:…),
	// mounted at /models.
	Model string
	// Format is the model's format: "gguf" builds hold /models/model.gguf.
	Format string
	// Baseline says the build is the serving one, not the candidate.
	Baseline bool
}

// evalInput is one gate's run on a candidate build.
type evalInput struct {
	Snap    Snapshot
	Cfg     *spec.Config
	Release *spec.Release
	Key     string // the candidate's content key
	// ModelPath is the candidate on local disk (the .gguf file, or the
	// safetensors directory); "" if it is only in the registry.
	ModelPath   string
	Ref, Digest string // the candidate image, when pushed ("" otherwise)
	// Observed finds the build the release serves now (the baseline).
	Observed planner.Observed
	// Push pushes the candidate under a candidate tag when a Job needs an
	// image to mount, and returns its ref and digest.
	Push func(ctx context.Context) (ref, digest string, err error)
}

// evalSubject is a build an evaluator runs on: the candidate or the
// baseline. Its files and image are found only when a run needs them.
type evalSubject struct {
	key      string
	baseline bool
	path     string // on local disk, when known
	ref      string // the image, repository:tag, when known
	digest   string
}

// evaluate runs every eval of in.Release.Gate on the candidate, and on
// the baseline for evals with max_ratio_to_baseline, using cached results
// where it can, and returns every bound check (planner.CheckEval). An
// error is a failed run (the evaluator crashed, timed out or printed no
// JSON object), not a missed bound: planner.Blocked(checks) says whether
// the bounds were met.
func (e *Engine) evaluate(ctx context.Context, store registry.Store, in evalInput) ([]planner.BoundCheck, error) {
	r := in.Release
	if r.Gate == nil || len(r.Gate.Evals) == 0 {
		return nil, nil
	}
	cand := &evalSubject{key: in.Key, path: in.ModelPath, ref: in.Ref, digest: in.Digest}
	servingKey, noBase := ServingKey(in.Observed, r.Name, in.Key)
	var base *evalSubject
	if servingKey != "" {
		base = &evalSubject{key: servingKey, baseline: true}
	}
	var checks []planner.BoundCheck
	for i := range r.Gate.Evals {
		ev := &r.Gate.Evals[i]
		res, err := e.evalOn(ctx, store, in, ev, cand)
		if err != nil {
			return checks, fmt.Errorf("release %s: eval %s: %w", r.Name, ev.Name, err)
		}
		var baseMetrics map[string]float64
		if len(ev.MaxRatioToBaseline) > 0 && base != nil {
			b, err := e.evalOn(ctx, store, in, ev, base)
			if err != nil {
				return checks, fmt.Errorf("release %s: eval %s on the serving build %s: %w", r.Name, ev.Name, short12(servingKey), err)
			}
			baseMetrics = b.Metrics
			if baseMetrics == nil {
				baseMetrics = map[string]float64{}
			}
		}
		cs := planner.CheckEval(ev, res.Metrics, baseMetrics, noBase)
		for _, c := range cs {
			e.log().Info("eval bound", "release", r.Name, "eval", ev.Name, "check", c.String(), "ok", c.OK)
		}
		checks = append(checks, cs...)
	}
	return checks, nil
}

// ServingKey is the content key of the build release serves now, the
// baseline of its ratio bounds: the key on its live Deployments
// (planner.AnnotationContentKey) other than candidate, the one with the
// most replicas (during a rollout, the stable version's, as the planner
// picks it). "" with why when nothing else serves.
func ServingKey(obs planner.Observed, release, candidate string) (key, why string) {
	replicas := map[string]int{}
	candidateLive := false
	for _, o := range obs.Objects {
		if o.Kind != "Deployment" || o.Label(planner.LabelRelease) != release {
			continue
		}
		k := o.Annotation(planner.AnnotationContentKey)
		if k == "" {
			k = templateAnnotation(o, planner.AnnotationContentKey)
		}
		if k == "" {
			continue
		}
		if k == candidate {
			candidateLive = candidateLive || o.Replicas() > 0
			continue
		}
		replicas[k] += o.Replicas()
	}
	keys := make([]string, 0, len(replicas))
	for k, n := range replicas {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if key == "" || replicas[k] > replicas[key] {
			key = k
		}
	}
	switch {
	case key != "":
		return key, ""
	case candidateLive:
		return "", CandidateServes
	}
	return "", NoBaseline
}

func templateAnnotation(o planner.Object, k string) string {
	sp, _ := o.Manifest["spec"].(map[string]any)
	tpl, _ := sp["template"].(map[string]any)
	md, _ := tpl["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	s, _ := ann[k].(string)
	return s
}

// evalOn returns ev's result on the build s: the cached one, else a run
// (a Job or a local process), cached once it succeeded.
func (e *Engine) evalOn(ctx context.Context, store registry.Store, in evalInput, ev *spec.Eval, s *evalSubject) (planner.EvalResult, error) {
	ek := planner.EvalKey(s.key, ev)
	// Two releases with the same build and evaluator run it once: the
	// second waits, then reads the first's result.
	defer e.builds.lock("eval\x00" + ek)()
	if res, ok := e.cachedEval(ek); ok {
		e.log().Info("eval result cached; nothing runs", "release", in.Release.Name, "eval", ev.Name, "key", short12(s.key), "baseline", s.baseline)
		return res, nil
	}
	timeout := ev.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultEvalTimeout
	}
	start := time.Now()
	var metrics map[string]float64
	var err error
	// A Job mounts the model image from the registry: the local OCI
	// layout (no gantry { registry }) is out of the cluster's reach.
	jobs := e.EvalJobs != nil && in.Cfg.Settings.Registry != ""
	switch {
	case ev.Image != "" && jobs:
		e.log().Info("evaluating in a job", "release", in.Release.Name, "eval", ev.Name, "key", short12(s.key), "baseline", s.baseline)
		metrics, err = e.evalJob(ctx, store, in, ev, s, ek)
	case len(ev.Command) > 0:
		e.log().Info("evaluating", "release", in.Release.Name, "eval", ev.Name, "key", short12(s.key), "baseline", s.baseline)
		var path string
		if path, err = e.subjectPath(ctx, store, in, s); err == nil {
			metrics, err = runLocalEval(ctx, in.Snap.Dir, ev, path, in.Release.Model.Format, timeout)
		}
	case ev.Image != "" && e.EvalJobs != nil:
		return planner.EvalResult{}, fmt.Errorf("it names only an image (%s): it runs as a Kubernetes Job, which mounts the model image from a registry: set gantry { registry }", ev.Image)
	case ev.Image != "":
		return planner.EvalResult{}, fmt.Errorf("it names only an image (%s): it runs as a Kubernetes Job, which needs --target kube", ev.Image)
	default:
		return planner.EvalResult{}, errors.New("it has neither a command nor an image")
	}
	if err != nil {
		return planner.EvalResult{}, err
	}
	res := planner.EvalResult{Metrics: metrics, Seconds: time.Since(start).Seconds()}
	if err := e.storeEval(ek, res); err != nil {
		e.log().Warn("eval result not cached; the next reconcile runs it again", "eval", ev.Name, "err", err)
	}
	return res, nil
}

// evalJob runs ev on s as a Job, with s's image (pushed or pulled) mounted.
func (e *Engine) evalJob(ctx context.Context, store registry.Store, in evalInput, ev *spec.Eval, s *evalSubject, ek string) (map[string]float64, error) {
	ref, digest := s.ref, s.digest
	switch {
	case ref != "" && digest != "":
	case s.baseline:
		ref = planner.ImageRepository(in.Cfg, in.Release.Name) + ":" + planner.ImageTag(s.key)
		d, ok, err := store.Has(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("find the serving build's image: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("the serving build's image %s is not in the registry", ref)
		}
		digest = d
	case in.Push != nil:
		r, d, err := in.Push(ctx)
		if err != nil {
			return nil, fmt.Errorf("push the candidate for the eval job: %w", err)
		}
		ref, digest = r, d
	default:
		return nil, errors.New("the candidate has no image to mount and cannot be pushed")
	}
	s.ref, s.digest = ref, digest
	return e.EvalJobs.RunEval(ctx, EvalJob{
		Release: in.Release.Name, Namespace: in.Cfg.Settings.Namespace, Eval: ev,
		ContentKey: s.key, EvalKey: ek, Model: refRepository(ref) + refTag(ref) + "@" + digest,
		Format: in.Release.Model.Format, Baseline: s.baseline,
	})
}

// refTag is ":tag" of an image reference, "" without one.
func refTag(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i:]
	}
	return ""
}

// subjectPath is the build s on local disk: the path it came with, the
// build cache (WorkDir/builds/KEY/model), else its image pulled from the
// store into WorkDir/sources, once.
func (e *Engine) subjectPath(ctx context.Context, store registry.Store, in evalInput, s *evalSubject) (string, error) {
	if s.path != "" {
		return s.path, nil
	}
	format := in.Release.Model.Format
	if dir := filepath.Join(e.WorkDir, "builds", s.key, "model"); isDir(dir) {
		p, err := modelPath(dir, format)
		if err == nil {
			s.path = p
		}
		return p, err
	}
	ref, digest := s.ref, s.digest
	if ref == "" {
		ref = planner.ImageRepository(in.Cfg, in.Release.Name) + ":" + planner.ImageTag(s.key)
	}
	if digest == "" {
		d, ok, err := store.Has(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("find %s: %w", ref, err)
		}
		if !ok {
			return "", fmt.Errorf("build %s is neither in %s nor in the registry (%s)", short12(s.key), filepath.Join(e.WorkDir, "builds"), ref)
		}
		digest = d
	}
	src, ok := store.(registry.Source)
	if !ok {
		if src = e.images(); src == nil {
			return "", fmt.Errorf("cannot read %s: the store is not readable", ref)
		}
	}
	e.cleanStale()
	dir := filepath.Join(e.WorkDir, "sources", digestDir(digest, ref))
	defer e.builds.lock("source\x00" + dir)()
	if !isDir(dir) {
		e.log().Info("pulling a build to evaluate", "release", in.Release.Name, "ref", ref, "baseline", s.baseline)
		if err := registry.Pull(ctx, src, ref, dir); err != nil {
			return "", err
		}
	}
	p, err := modelPath(dir, format)
	if err == nil {
		s.path = p
	}
	return p, err
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func short12(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return key
}

// evalPath is where the result of eval key ek is cached.
func (e *Engine) evalPath(ek string) string { return filepath.Join(e.WorkDir, "evals", ek+".json") }

// cachedEval reads the cached result of eval key ek.
func (e *Engine) cachedEval(ek string) (planner.EvalResult, bool) {
	data, err := os.ReadFile(e.evalPath(ek))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			e.log().Warn("eval cache unreadable", "path", e.evalPath(ek), "err", err)
		}
		return planner.EvalResult{}, false
	}
	var res planner.EvalResult
	if err := json.Unmarshal(data, &res); err != nil || res.Metrics == nil {
		e.log().Warn("eval cache entry is corrupt; running the eval again", "path", e.evalPath(ek), "err", err)
		return planner.EvalResult{}, false
	}
	return res, true
}

// storeEval caches res as eval key ek's result, atomically (a temporary
// file renamed into place).
func (e *Engine) storeEval(ek string, res planner.EvalResult) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.WorkDir, "evals")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".eval-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), e.evalPath(ek))
}

// cachedEvals returns the cached results for the releases' candidate
// builds (planner.ContentKey of each release), by planner.EvalKey, for
// planner.Observed.Evals, so the plan can show them. Releases whose image
// is among built are skipped: the plan has no eval for them, and a
// reconcile of an unchanged repository reads no result file.
func (e *Engine) cachedEvals(cfg *spec.Config, built map[string]planner.Artifact) map[string]planner.EvalResult {
	out := map[string]planner.EvalResult{}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		if r.Gate == nil || len(r.Gate.Evals) == 0 {
			continue
		}
		if _, ok := built[planner.ImageRef(cfg, r)]; ok {
			continue // no gate runs for an image that exists: nothing to show
		}
		key := planner.ContentKey(r)
		for j := range r.Gate.Evals {
			ek := planner.EvalKey(key, &r.Gate.Evals[j])
			if _, done := out[ek]; done {
				continue
			}
			if res, ok := e.cachedEval(ek); ok {
				out[ek] = res
			}
		}
	}
	return out
}
