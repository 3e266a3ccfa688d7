package reconcile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// ErrStalePlan is returned when a saved plan no longer matches the world
// or the specs; nothing is executed.
var ErrStalePlan = errors.New("the saved plan is stale")

// ErrInvalidSpecs is returned when the specs do not validate; nothing is
// executed and Status.Diagnostics says why.
var ErrInvalidSpecs = errors.New("the specs are invalid")

// Engine runs reconciles. Its fields are set once, before the first call.
type Engine struct {
	Source Source
	Target Target
	// Store holds model images: a registry or the local OCI layout.
	Store registry.Store
	// StoreFor, if set, chooses the store from the specs of each
	// reconcile instead, so that changing gantry { registry } in Git takes
	// effect without a restart. It is called once per distinct registry
	// setting and the store is kept: every reconcile, build and push of
	// the engine goes through that one value (and its lock).
	StoreFor func(cfg *spec.Config) registry.Store
	// Images reads oci:// model sources and modelcar base images; nil
	// means Store when it can (registry.Remote and registry.Layout can).
	Images registry.Source
	// WorkDir caches sources and quantized builds, keyed by content.
	WorkDir string
	// Jobs is how many releases run at once; default 2.
	Jobs int
	// Vars are -var values for the specs.
	Vars map[string]string
	Log  *slog.Logger
	// Quantize is compress.Quantize unless a test replaces it.
	Quantize func(ctx context.Context, in, out string, opts compress.Options) (quality.Report, error)
	// Observer, if set, hears about work done (metrics).
	Observer Observer
	// Resolver, if set, pins runtime images to their digests.
	Resolver Resolver
	// BuildJobs runs builds of releases with quantize { runner = "job" }.
	BuildJobs JobRunner
	// EvalJobs, if set (the kube target), runs gate evals that name an
	// image as Kubernetes Jobs; nil runs every eval as a local process.
	EvalJobs EvalJobRunner
	// RepoURL is the specs repository as a build job clones it (no
	// credentials); set for Git sources.
	RepoURL string
	// Expect, if set, is a saved plan: the reconcile executes only if the
	// observed state has the same digest and the specs give the same
	// actions, else it fails with ErrStalePlan.
	Expect *planner.Plan
	// Connections, if set, returns the live connections per node name
	// (from Prometheus); they replace the observed nodes' Connections, so
	// that placement of new replicas follows live load. An error keeps
	// the observed values and is logged.
	Connections func(ctx context.Context) (map[string]float64, error)
	// Shard, if set, makes the engine one of a fleet (gantry run --shard):
	// it plans, applies and prunes only the releases Shard owns, and
	// counts other shards' GPUs as used. See Shard.
	Shard *Shard
	// ClusterTarget, for specs with cluster blocks (a fleet), makes the
	// Target of one cluster. It is called once per distinct cluster block
	// and its Target kept while the block stays the same; an error makes
	// that cluster unreachable for the reconcile (and it is called again
	// on the next). Target is then unused.
	ClusterTarget func(ctx context.Context, c spec.Cluster) (Target, error)
	// ClusterJobs bounds how many clusters are observed, and applied to,
	// at once; default 4.
	ClusterJobs int
	// MirrorFor makes the store of a cluster's registry_mirror (a
	// repository prefix), which model images are copied into by digest;
	// nil: a registry.Remote. Called once per mirror; the store is kept.
	MirrorFor func(mirror string) registry.Store

	mu        sync.Mutex
	status    Status
	failures  map[string]failure
	stores    map[string]registry.Store  // StoreFor's, by gantry.registry
	errors    map[string]*quality.Tensor // quantization error by image digest
	reports   map[string]*quality.Tensor // the build cache's error summary by content key (nil: none)
	models    []string                   // local model paths the last specs read
	builds    keyedMutex                 // one quantize per content key at a time
	memo      planner.Memo               // releases found in sync, by inputs and live versions
	analyses  map[string]*Analysis       // the monitor's last rollout analysis, by release (under mu)
	prestaged map[string][2]string       // release -> the version last prestaged and how it went (under mu)
	primed    *primed                    // what Prime loaded, for the next reconcile
	clusters  map[string]clusterTarget   // ClusterTarget's, by cluster name (under mu)
	mirrors   map[string]registry.Store  // MirrorFor's, by registry mirror (under mu)
	cleanOnce sync.Once
}

// Observer is told what an engine does, for metrics. Implementations
// must be safe for concurrent use.
type Observer interface {
	Reconciled(result string, d time.Duration, revision string)
	Quantized(release string, bytes int64)
	Pushed(release string, bytes int64)
}

type failure struct {
	count int
	next  time.Time
	hash  string // the release's spec when it failed; a new spec retries at once
}

// Result says what one reconcile did.
type Result struct {
	Revision string
	Plan     *planner.Plan
	// Executed counts the actions carried out (builds and object changes).
	Executed int
	Releases []ReleaseStatus
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

// Reconcile runs one pass: fetch, load, observe, plan, execute.
func (e *Engine) Reconcile(ctx context.Context) (Result, error) {
	start := time.Now()
	res, err := e.reconcile(ctx)
	outcome := "success"
	switch {
	case errors.Is(err, ErrInvalidSpecs):
		outcome = "invalid"
	case err != nil:
		outcome = "error"
	}
	if e.Observer != nil {
		e.Observer.Reconciled(outcome, time.Since(start), res.Revision)
	}
	e.mu.Lock()
	e.status.Time = start
	e.status.Duration = time.Since(start)
	e.status.Phase = outcome
	e.status.Error = ""
	if err != nil {
		e.status.Error = err.Error()
	}
	e.mu.Unlock()
	return res, err
}

// primed is a snapshot and its specs, loaded before the first reconcile.
type primed struct {
	snap  Snapshot
	cfg   *spec.Config
	diags hcl.Diagnostics
}

// Prime hands the engine the specs of snap, fetched and loaded (with the
// engine's Vars) by its caller: the next reconcile uses them instead of
// fetching and loading again. gantry run reads the specs once to pick
// its drivers; a run --once of 1,000 releases would otherwise load them
// twice. Only the next reconcile uses them; later ones fetch as usual.
func (e *Engine) Prime(snap Snapshot, cfg *spec.Config, diags hcl.Diagnostics) {
	e.mu.Lock()
	e.primed = &primed{snap: snap, cfg: cfg, diags: diags}
	e.mu.Unlock()
}

// load fetches and loads the specs, or takes what Prime left.
func (e *Engine) load(ctx context.Context) (Snapshot, *spec.Config, hcl.Diagnostics, error) {
	e.mu.Lock()
	p := e.primed
	e.primed = nil
	e.mu.Unlock()
	if p != nil {
		return p.snap, p.cfg, p.diags, nil
	}
	snap, err := e.Source.Fetch(ctx)
	if err != nil {
		return Snapshot{}, nil, nil, fmt.Errorf("fetch specs: %w", err)
	}
	cfg, diags := spec.Load(ctx, snap.Dir, spec.LoadOptions{Vars: e.Vars})
	return snap, cfg, diags, nil
}

func (e *Engine) reconcile(ctx context.Context) (_ Result, err error) {
	snap, cfg, diags, err := e.load(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Revision: snap.Revision}
	cfg.Revision, cfg.Uncommitted = snap.Revision, snap.Uncommitted
	var text bytes.Buffer
	if len(diags) > 0 { // printing masks every file first, diagnostics or not
		_ = spec.WriteDiagnostics(&text, cfg.Files, diags, 0, false)
	}
	e.mu.Lock()
	e.status.Revision, e.status.Diagnostics = snap.Revision, text.String()
	e.mu.Unlock()
	if diags.HasErrors() {
		e.log().Error("specs are invalid; nothing executed", "revision", snap.Revision, "errors", len(diags.Errs()))
		return res, ErrInvalidSpecs
	}
	cfg, others := e.Shard.own(cfg)
	e.rememberModels(snap.Dir, cfg)

	target := e.Target
	var fleet *fleetTarget
	if cfg.Fleet() {
		fleet = e.fleet(ctx, cfg)
		target = fleet
	}
	objs, nodes, err := target.Observe(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("observe target: %w", err)
	}
	if s, ok := target.(Saver); ok {
		defer func() {
			if err := s.Save(context.WithoutCancel(ctx)); err != nil {
				e.log().Warn("target cache not saved; the next process decodes more", "err", err)
			}
		}()
	}
	objs, nodes, notPruned := e.Shard.split(cfg, objs, nodes, e.log())
	if e.Connections != nil {
		nodes = e.overlayConnections(ctx, nodes)
	}
	store := e.store(cfg)
	if b, ok := store.(registry.Batcher); ok {
		// The pushes of one reconcile record their index entries together
		// (one index.json rewrite per push would make a first run of N
		// releases O(N²)). They are recorded even if ctx ends: what was
		// pushed is kept.
		end := b.Batch()
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if endErr := end(ctx); endErr != nil && err == nil {
				err = fmt.Errorf("record pushed images: %w", endErr)
			}
		}()
	}
	artifacts, err := ObserveArtifacts(ctx, cfg, store)
	if err != nil {
		return res, err
	}
	observed := planner.Observed{Objects: objs, Nodes: nodes, Artifacts: artifacts, Evals: e.cachedEvals(cfg, artifacts)}
	_, observed.Prestage = target.(Prestager)
	if fleet != nil {
		observed.Unreachable = fleet.Unreachable()
		observed.Prestage = fleet.canPrestage()
		e.observeMirrors(ctx, cfg, artifacts, observed.Unreachable)
	}
	if e.Resolver != nil {
		observed.Images = ResolveImages(ctx, cfg, e.Resolver, e.log())
	}
	prepared := planner.Prepare(cfg, observed)
	prepared.Memo = &e.memo
	plan, err := prepared.Build()
	if err != nil {
		return res, fmt.Errorf("plan: %w", err)
	}
	res.Plan = &plan
	if e.Expect != nil {
		if err := sameAsSaved(e.Expect, &plan); err != nil {
			return res, err
		}
	}
	e.mu.Lock()
	e.status.Plan = &plan
	e.status.Shard = e.Shard.status(cfg, others, notPruned)
	e.mu.Unlock()

	byRelease := map[string][]planner.Action{}
	inSpecs := make(map[string]bool, len(cfg.Releases))
	for i := range cfg.Releases {
		inSpecs[cfg.Releases[i].Name] = true
	}
	var prune []planner.Action
	for _, a := range plan.Actions {
		if inSpecs[a.Release] {
			byRelease[a.Release] = append(byRelease[a.Release], a)
		} else {
			prune = append(prune, a)
		}
	}

	statuses := make([]ReleaseStatus, len(cfg.Releases))
	executed := make([]int, len(cfg.Releases))
	g, gctx := errgroup.WithContext(ctx)
	jobs := e.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	g.SetLimit(jobs)
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		rp := plan.Releases[i]
		st := ReleaseStatus{Name: r.Name, Image: rp.Image, Digest: rp.Digest, Replicas: rp.Replicas,
			Placement: rp.Placement, GPUsPerReplica: r.GPUCount(), State: StateSynced, Reason: "up to date"}
		unplaced := unplacedReason(rp)
		if rp.Rollout != nil {
			st.Rollout = &RolloutStatus{RolloutState: *rp.Rollout, Analysis: e.analysis(r.Name), Prestage: e.lastPrestage(r.Name, rp.Rollout.Canary)}
		}
		if _, built := observed.Artifacts[rp.Image]; built {
			st.Error = e.quantError(ctx, store, rp.ContentKey, rp.Image, rp.Digest)
		}
		actions := byRelease[r.Name]
		if len(actions) == 0 {
			e.clearFailure(r.Name)
			if hr, ok := target.(HealthReporter); ok {
				if state, reason, known := hr.ReleaseHealth(r.Name); known {
					st.State, st.Reason = state, reason
				}
			}
			if fleet != nil {
				st.Clusters = clusterCells(fleet, r, rp, nil)
				foldCells(&st)
			}
			markUnplaced(&st, rp, unplaced)
			statuses[i] = st
			continue
		}
		if wait, ok := e.backingOff(r); ok {
			st.State, st.Reason, st.NextRetry = StateFailed, e.lastReason(r.Name), &wait
			if fleet != nil {
				st.Clusters = clusterCells(fleet, r, rp, nil)
			}
			statuses[i] = st
			continue
		}
		g.Go(func() error {
			n, err := e.runRelease(gctx, store, target, cfg, snap, r, observed, prepared, actions, &st)
			executed[i] = n
			if err != nil {
				var gate *GateError
				if errors.As(err, &gate) {
					st.State, st.Reason = StateBlocked, err.Error()
				} else {
					st.State, st.Reason = StateFailed, err.Error()
				}
				if ctx.Err() == nil {
					next := e.recordFailure(r, st.Reason)
					st.NextRetry = &next
				}
				e.log().Error("release failed", "release", r.Name, "state", st.State, "err", err)
			} else {
				e.clearFailure(r.Name)
				st.State = StateSynced
				if _, ok := target.(HealthReporter); ok && n > 0 {
					st.State = StateProgressing // the pods roll out now; the next resync says how it went
				}
			}
			if fleet != nil {
				st.Clusters = clusterCells(fleet, r, rp, actionClusters(actions))
				foldCells(&st)
			}
			markUnplaced(&st, rp, unplaced)
			statuses[i] = st
			return nil // one release failing does not stop the others
		})
	}
	_ = g.Wait()
	for _, n := range executed {
		res.Executed += n
	}
	res.Releases = statuses
	e.mu.Lock()
	e.status.Releases = statuses
	e.status.Nodes = nodeUse(nodes, plan.Releases, cfg)
	e.status.Clusters = nil
	if fleet != nil {
		e.status.Clusters = clusterStatuses(cfg, nodes, observed.Unreachable)
	}
	e.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if len(prune) > 0 {
		if err := target.Apply(ctx, cfg.Settings.Namespace, prune); err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
		res.Executed += len(prune)
		e.log().Info("pruned", "objects", len(prune))
	}
	return res, nil
}

// rememberModels keeps the local model paths cfg reads, for ModelPaths.
func (e *Engine) rememberModels(dir string, cfg *spec.Config) {
	var paths []string
	for i := range cfg.Releases {
		if m := &cfg.Releases[i].Model; m.Kind() == spec.SourcePath {
			paths = append(paths, filepath.Join(dir, filepath.FromSlash(m.Source)))
		}
	}
	e.mu.Lock()
	e.models = paths
	e.mu.Unlock()
}

// ModelPaths returns the local model files and directories the specs of
// the last reconcile read: with the *.hcl files, all a directory watcher
// needs to watch.
func (e *Engine) ModelPaths() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.models)
}

// unplacedReason says, scheduler-style, why some of rp's replicas fit
// nowhere, and what was held back because of it; "" when all fit.
func unplacedReason(rp planner.ReleasePlan) string {
	if rp.Unplaced == nil {
		return ""
	}
	s := fmt.Sprintf("%d of %d replicas cannot be placed: %s", rp.Unplaced.Count, rp.Replicas, rp.Unplaced.String())
	if rp.Held > 0 {
		s += fmt.Sprintf("; %d object changes held, the live shards keep serving", rp.Held)
	}
	return s
}

// markUnplaced turns a release that is short of replicas into
// unplaceable (none placed) or pending (some placed): never synced, since
// the target does not have what the specs ask. A failure or a gate block
// says more and stays.
func markUnplaced(st *ReleaseStatus, rp planner.ReleasePlan, reason string) {
	if reason == "" {
		markMoving(st, rp)
		return
	}
	if st.State == StateFailed || st.State == StateBlocked {
		if !strings.Contains(st.Reason, reason) {
			st.Reason += "; " + reason
		}
		return
	}
	placed := 0
	for _, n := range rp.Placement {
		placed += n
	}
	st.State = StatePending
	if placed == 0 {
		st.State = StateUnplaceable
	}
	st.Reason = reason
}

// markMoving says, of a release that is fully placed and well, which
// shards stay until the replicas replacing them are available (make
// before break): it is progressing, not synced.
func markMoving(st *ReleaseStatus, rp planner.ReleasePlan) {
	if len(rp.Moving) == 0 || (st.State != StateSynced && st.State != StateProgressing) {
		return
	}
	st.State = StateProgressing
	st.Reason = fmt.Sprintf("moving: the shards on %s stay until the replicas replacing them are available; %s",
		strings.Join(rp.Moving, ", "), st.Reason)
}

// runRelease builds, gates and pushes the release's model when the
// registry lacks it, then applies the release's objects rendered with the
// pushed digest.
func (e *Engine) runRelease(ctx context.Context, store registry.Store, target Target, cfg *spec.Config, snap Snapshot, r *spec.Release, observed planner.Observed, prepared *planner.Prepared, actions []planner.Action, st *ReleaseStatus) (n int, err error) {
	defer func() {
		// No input may crash the daemon: a panic in one release's build is
		// that release's failure, with the stack in the log.
		if p := recover(); p != nil {
			e.log().Error("release panicked", "release", r.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("release %s: internal error: %v", r.Name, p)
		}
	}()
	key := planner.ContentKey(r)
	ref := planner.ImageRef(cfg, r)
	executed := 0
	if _, ok := observed.Artifacts[ref]; !ok {
		var digest string
		if r.Quantize != nil && r.Quantize.Runner == "job" {
			d, err := e.runJob(ctx, cfg, r, key, ref)
			if err != nil {
				return executed, err
			}
			executed += 2
			if hasEvals(r) {
				// The job pushed its build as the candidate: it is
				// evaluated here, where what serves is known, and
				// tagged as the release's image only if it passes.
				cref := planner.CandidateRef(cfg, r)
				in := evalInput{Snap: snap, Cfg: cfg, Release: r, Key: key, Ref: cref, Digest: d, Observed: observed}
				if err := e.evalGate(ctx, store, in, st); err != nil {
					return executed, err
				}
				executed += len(r.Gate.Evals)
				if d, err = e.promoteCandidate(ctx, store, cref, ref, d); err != nil {
					return executed, fmt.Errorf("release %s: %w", r.Name, err)
				}
			}
			if err := e.attest(ctx, store, cfg, r, key, ref, d, e.quantError(ctx, store, key, ref, d), st.Evals); err != nil {
				return executed, fmt.Errorf("release %s: %w", r.Name, err)
			}
			digest = d
		} else {
			b, err := e.build(ctx, snap, cfg, r, key)
			if err != nil {
				return executed, fmt.Errorf("release %s: %w", r.Name, err)
			}
			executed++
			if b.Report != nil {
				st.Error = &b.Report.Summary
			}
			if err := gate(snap, r, b.Report); err != nil {
				return executed, err
			}
			if hasEvals(r) {
				in := evalInput{Snap: snap, Cfg: cfg, Release: r, Key: key, ModelPath: b.Path, Observed: observed,
					Push: e.candidatePusher(store, cfg, r, key, b)}
				if err := e.evalGate(ctx, store, in, st); err != nil {
					return executed, err
				}
				executed += len(r.Gate.Evals)
			}
			d, err := e.push(ctx, store, cfg, r, key, ref, b)
			if err != nil {
				return executed, fmt.Errorf("release %s: push %s: %w", r.Name, ref, err)
			}
			// The provenance travels with the image: an attestation
			// (signed, with a signing key) and the image's signature.
			if err := e.attest(ctx, store, cfg, r, key, ref, d, st.Error, st.Evals); err != nil {
				return executed, fmt.Errorf("release %s: %w", r.Name, err)
			}
			digest = d
			executed++
		}
		st.Digest = digest
		// Plan this release again with the digest known: the objects
		// reference it. The placement and the live objects are those of
		// the plan; only this release is rendered and diffed again.
		actions, err = prepared.ReleaseActions(r.Name, digest)
		if err != nil {
			return executed, err
		}
	}
	var objects []planner.Action
	var mirrorErrs []error
	failed := map[string]bool{} // clusters whose mirror copy failed: nothing is applied there
	for _, a := range actions {
		if a.Type == planner.Mirror {
			if err := e.mirror(ctx, store, cfg, a); err != nil {
				mirrorErrs = append(mirrorErrs, fmt.Errorf("cluster %s: %w", a.Cluster, err))
				failed[a.Cluster] = true
				continue
			}
			executed++
		}
	}
	for _, a := range actions {
		if failed[a.Cluster] {
			continue
		}
		if a.Type == planner.Prestage && a.Prestage != nil {
			ns, ps := cfg.Settings.Namespace, Prestager(nil)
			if f, ok := target.(*fleetTarget); ok {
				ns = cfg.ClusterNamespace(a.Cluster)
				ps, _ = f.prestager(a.Cluster)
			} else {
				ps, _ = target.(Prestager)
			}
			note, err := e.prestage(ctx, ps, ns, r.Name, *a.Prestage)
			if err != nil {
				return executed, fmt.Errorf("release %s: prestage: %w", r.Name, err)
			}
			executed++
			if st.Rollout != nil {
				ro := *st.Rollout
				ro.Prestage = note
				st.Rollout = &ro
			}
		}
		if !a.Type.IsBuild() {
			objects = append(objects, a)
		}
	}
	if executed > 0 {
		st.Reason = "built and pushed the model"
	}
	mirrorErr := errors.Join(mirrorErrs...)
	if len(objects) == 0 {
		if mirrorErr != nil {
			return executed, fmt.Errorf("release %s: %w", r.Name, mirrorErr)
		}
		return executed, nil
	}
	if cfg.Settings.VerifyKeyFile != "" {
		// Nothing runs an image that does not verify: what serves
		// stays, and the status says why.
		digest := st.Digest
		if digest == "" {
			digest = observed.Artifacts[ref].Digest
		}
		src, _ := store.(registry.Source)
		if src == nil {
			return executed, fmt.Errorf("release %s: verify_key_file: the image store cannot be read back to check signatures", r.Name)
		}
		if err := e.verifyImage(ctx, cfg, src, ref, digest); err != nil {
			return executed, fmt.Errorf("release %s: refused to apply: %w", r.Name, err)
		}
	}
	if err := target.Apply(ctx, cfg.Settings.Namespace, e.Shard.label(objects)); err != nil {
		return executed, fmt.Errorf("release %s: apply: %w", r.Name, errors.Join(err, mirrorErr))
	}
	if mirrorErr != nil {
		return executed + len(objects), fmt.Errorf("release %s: %w", r.Name, mirrorErr)
	}
	e.log().Info("applied", "release", r.Name, "changes", len(objects), "revision", cfg.Revision)
	if executed > 0 {
		st.Reason = fmt.Sprintf("built and pushed the model; applied %d object changes", len(objects))
	} else {
		st.Reason = fmt.Sprintf("applied %d object changes", len(objects))
	}
	return executed + len(objects), nil
}

// overlayConnections sets each node's Connections from e.Connections,
// on a copy: the target's slice is not the engine's to change.
func (e *Engine) overlayConnections(ctx context.Context, nodes []schedule.Node) []schedule.Node {
	conns, err := e.Connections(ctx)
	if err != nil {
		e.log().Warn("live connections unavailable; placing by the observed values", "err", err)
		return nodes
	}
	out := append([]schedule.Node(nil), nodes...)
	for i := range out {
		if c, ok := conns[out[i].ID()]; ok {
			out[i].Connections = c
		} else if c, ok := conns[out[i].Name]; ok {
			out[i].Connections = c
		}
	}
	return out
}

// backingOff reports whether r failed recently and must wait, unless its
// spec changed since.
func (e *Engine) backingOff(r *spec.Release) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.failures[r.Name]
	if !ok || f.hash != failureHash(r) || !time.Now().Before(f.next) {
		return time.Time{}, false
	}
	return f.next, true
}

// failureHash fingerprints the whole release block: any edit to it (a new
// gate threshold, say) is worth an immediate retry.
func failureHash(r *spec.Release) string {
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordFailure schedules the next attempt: 10s doubling to 5m, with 20%
// jitter so that many failing releases do not retry in lockstep.
func (e *Engine) recordFailure(r *spec.Release, reason string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures == nil {
		e.failures = map[string]failure{}
	}
	f := e.failures[r.Name]
	if f.hash != failureHash(r) {
		f = failure{hash: failureHash(r)}
	}
	f.count++
	d := min(5*time.Minute, 10*time.Second<<min(f.count-1, 10))
	d += time.Duration(rand.Int64N(int64(d) / 5))
	f.next = time.Now().Add(d)
	e.failures[r.Name] = f
	if e.status.reasons == nil {
		e.status.reasons = map[string]string{}
	}
	e.status.reasons[r.Name] = reason
	return f.next
}

func (e *Engine) clearFailure(name string) {
	e.mu.Lock()
	delete(e.failures, name)
	e.mu.Unlock()
}

func (e *Engine) lastReason(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.status.reasons[name]; r != "" {
		return r + " (waiting to retry)"
	}
	return "waiting to retry"
}

// sameAsSaved checks a fresh plan against a saved one. A saved plan holds
// what every rendering holds, credentials masked, so the fresh plan is
// compared masked too.
func sameAsSaved(saved, fresh *planner.Plan) error {
	fresh = planner.Masked(fresh)
	if saved.ObservedDigest != fresh.ObservedDigest {
		return fmt.Errorf("%w: the target or the registry changed since it was made; plan again", ErrStalePlan)
	}
	if len(saved.Actions) != len(fresh.Actions) {
		return fmt.Errorf("%w: the specs changed since it was made (%d actions then, %d now); plan again", ErrStalePlan, len(saved.Actions), len(fresh.Actions))
	}
	for i, a := range saved.Actions {
		b := fresh.Actions[i]
		if a.Type != b.Type || a.Subject != b.Subject || a.ContentKey != b.ContentKey || a.Reason != b.Reason {
			return fmt.Errorf("%w: action %d was %q, is now %q; plan again", ErrStalePlan, i+1, string(a.Type)+" "+a.Subject, string(b.Type)+" "+b.Subject)
		}
	}
	return nil
}

// ObserveArtifacts asks the store which releases' model images exist, by
// image reference: what planner.Observed.Artifacts holds.
func ObserveArtifacts(ctx context.Context, cfg *spec.Config, store registry.Store) (map[string]planner.Artifact, error) {
	refs := make([]string, 0, len(cfg.Releases))
	for i := range cfg.Releases {
		refs = append(refs, planner.ImageRef(cfg, &cfg.Releases[i]))
	}
	artifacts, err := registry.Observe(ctx, store, refs)
	if err != nil {
		return nil, fmt.Errorf("observe registry: %w", err)
	}
	return artifacts, nil
}

// store is the image store for the specs cfg: Store, or the one StoreFor
// made for cfg's registry setting. A store is made once and kept, so that
// concurrent pushes share its lock and its connections.
func (e *Engine) store(cfg *spec.Config) registry.Store {
	if e.StoreFor == nil {
		return e.Store
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := cfg.Settings.Registry
	if s, ok := e.stores[k]; ok {
		return s
	}
	if e.stores == nil {
		e.stores = map[string]registry.Store{}
	}
	s := e.StoreFor(cfg)
	e.stores[k] = s
	return s
}

// keyedMutex serialises work per key (a content key): two releases with
// the same model quantize it once, the second reusing the first's build.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

// lock takes key's lock and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// MemoSkips is how many times this engine's plans left a release
// unrendered and undiffed because nothing it is made from had changed
// since it was found in sync (see planner.Memo).
func (e *Engine) MemoSkips() int64 { return e.memo.Skips() }
