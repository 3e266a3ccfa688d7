package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// ErrClusterUnreachable is wrapped by what a fleet does in a cluster it
// could not observe.
var ErrClusterUnreachable = errors.New("cluster unreachable")

// fleetTarget is the Target of specs with cluster blocks: one Target per
// cluster, observed and applied to concurrently (at most jobs at once).
// A cluster that could not be reached (its Target not made, or its
// Observe failed) is left out of the observed state and named in down;
// the planner then plans nothing there. Every action it applies names
// its cluster.
type fleetTarget struct {
	cfg     *spec.Config
	names   []string
	targets map[string]Target
	jobs    int
	log     *slog.Logger

	mu   sync.Mutex
	down map[string]string // cluster -> why it could not be observed
}

// clusterTarget is a made Target and the block it was made from.
type clusterTarget struct {
	block  string // the cluster block, as JSON
	target Target
}

// fleet makes (or reuses) the Target of every cluster block of cfg. A
// block whose Target cannot be made is down for this reconcile.
func (e *Engine) fleet(ctx context.Context, cfg *spec.Config) *fleetTarget {
	f := &fleetTarget{cfg: cfg, targets: map[string]Target{}, jobs: e.ClusterJobs, log: e.log(), down: map[string]string{}}
	if f.jobs <= 0 {
		f.jobs = 4
	}
	for _, c := range cfg.Clusters {
		f.names = append(f.names, c.Name)
		b, _ := json.Marshal(c)
		e.mu.Lock()
		ct, ok := e.clusters[c.Name]
		e.mu.Unlock()
		if ok && ct.block == string(b) {
			f.targets[c.Name] = ct.target
			continue
		}
		if e.ClusterTarget == nil {
			f.down[c.Name] = "no driver for cluster blocks"
			continue
		}
		t, err := e.ClusterTarget(ctx, c)
		if err != nil {
			f.down[c.Name] = err.Error()
			continue
		}
		e.mu.Lock()
		if e.clusters == nil {
			e.clusters = map[string]clusterTarget{}
		}
		e.clusters[c.Name] = clusterTarget{block: string(b), target: t}
		e.mu.Unlock()
		f.targets[c.Name] = t
	}
	return f
}

// clusterConfig is cfg as one cluster's Target sees it: its namespace.
func (f *fleetTarget) clusterConfig(c string) *spec.Config {
	cc := *f.cfg
	cc.Settings.Namespace = f.cfg.ClusterNamespace(c)
	return &cc
}

// Observe observes every cluster at once (at most f.jobs), tagging what
// it returns with the cluster. A failed cluster is down; it is not an
// error of the whole.
func (f *fleetTarget) Observe(ctx context.Context, _ *spec.Config) ([]planner.Object, []schedule.Node, error) {
	type part struct {
		objs  []planner.Object
		nodes []schedule.Node
	}
	parts := make([]part, len(f.names))
	var g errgroup.Group
	g.SetLimit(f.jobs)
	for i, c := range f.names {
		t := f.targets[c]
		if t == nil {
			continue
		}
		g.Go(func() error {
			objs, nodes, err := t.Observe(ctx, f.clusterConfig(c))
			if err != nil {
				f.mu.Lock()
				f.down[c] = err.Error()
				f.mu.Unlock()
				f.log.Warn("cluster unreachable; nothing changes there this round", "cluster", c, "err", err)
				return nil
			}
			for j := range objs {
				objs[j].Cluster = c
			}
			keep := nodes[:0:0]
			for _, n := range nodes {
				if n.Cluster != "" && n.Cluster != c {
					continue // a static node of another cluster
				}
				n.Cluster = c
				keep = append(keep, n)
			}
			parts[i] = part{objs, keep}
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var objs []planner.Object
	var nodes []schedule.Node
	for _, p := range parts {
		objs = append(objs, p.objs...)
		nodes = append(nodes, p.nodes...)
	}
	return objs, nodes, nil
}

// Unreachable is the clusters that could not be observed, with why.
func (f *fleetTarget) Unreachable() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.down) == 0 {
		return nil
	}
	out := make(map[string]string, len(f.down))
	for c, why := range f.down {
		out[c] = why
	}
	return out
}

// Apply applies each cluster's actions in its namespace, the clusters at
// once (at most f.jobs). A cluster's failure does not stop the others;
// the error names every cluster that failed.
func (f *fleetTarget) Apply(ctx context.Context, _ string, actions []planner.Action) error {
	by := map[string][]planner.Action{}
	for _, a := range actions {
		by[a.Cluster] = append(by[a.Cluster], a)
	}
	clusters := make([]string, 0, len(by))
	for c := range by {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	errs := make([]error, len(clusters))
	var g errgroup.Group
	g.SetLimit(f.jobs)
	for i, c := range clusters {
		g.Go(func() error {
			t, err := f.target(c)
			if err == nil {
				err = t.Apply(ctx, f.cfg.ClusterNamespace(c), by[c])
			}
			if err != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", c, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// target is cluster c's Target, or why there is none to act through.
func (f *fleetTarget) target(c string) (Target, error) {
	f.mu.Lock()
	why, down := f.down[c]
	f.mu.Unlock()
	t := f.targets[c]
	switch {
	case c == "":
		return nil, errors.New("an action without a cluster in a fleet's plan")
	case down:
		return nil, fmt.Errorf("%w: %s", ErrClusterUnreachable, why)
	case t == nil:
		return nil, fmt.Errorf("no cluster block %q", c)
	}
	return t, nil
}

// prestager is cluster c's Prestager, if its Target is one.
func (f *fleetTarget) prestager(c string) (Prestager, bool) {
	t, err := f.target(c)
	if err != nil {
		return nil, false
	}
	ps, ok := t.(Prestager)
	return ps, ok
}

// canPrestage reports whether every cluster that answered can prestage.
func (f *fleetTarget) canPrestage() bool {
	any, down := false, f.Unreachable()
	for _, c := range f.names {
		if _, isDown := down[c]; isDown || f.targets[c] == nil {
			continue
		}
		if _, ok := f.targets[c].(Prestager); !ok {
			return false
		}
		any = true
	}
	return any
}

// health is the health of release in cluster c, if its Target knows.
func (f *fleetTarget) health(c, release string) (state, reason string, known bool) {
	t, err := f.target(c)
	if err != nil {
		return "", "", false
	}
	if hr, ok := t.(HealthReporter); ok {
		return hr.ReleaseHealth(release)
	}
	return "", "", false
}

// reportsHealth reports whether cluster c's Target knows its pods'
// health (a cluster does; a directory does not).
func (f *fleetTarget) reportsHealth(c string) bool {
	_, ok := f.targets[c].(HealthReporter)
	return ok
}

// Save saves every cluster's cache worth saving.
func (f *fleetTarget) Save(ctx context.Context) error {
	var errs []error
	for _, c := range f.names {
		if s, ok := f.targets[c].(Saver); ok {
			if err := s.Save(ctx); err != nil {
				errs = append(errs, fmt.Errorf("cluster %s: %w", c, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ClusterReleaseStatus is a release's state in one cluster of a fleet:
// a cell of the status page's cluster × release grid.
type ClusterReleaseStatus struct {
	Cluster string `json:"cluster"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
	// Version is the version the cluster's shards run when one does, or
	// "OLD→NEW" during a rollout there.
	Version   string             `json:"version,omitempty"`
	Image     string             `json:"image,omitempty"`
	Replicas  int                `json:"replicas"`
	Placement schedule.Placement `json:"placement,omitempty"`
	// Wave is the cluster's wave in the release's rollout (0: no waves).
	Wave int `json:"wave,omitempty"`
}

// ClusterStatus is one cluster of a fleet after a reconcile.
type ClusterStatus struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	Reachable bool              `json:"reachable"`
	// Error says why the cluster could not be observed.
	Error string `json:"error,omitempty"`
	Nodes int    `json:"nodes"`
	GPUs  int    `json:"gpus"`
}

// clusterStatuses is the fleet's clusters as the reconcile found them.
func clusterStatuses(cfg *spec.Config, nodes []schedule.Node, down map[string]string) []ClusterStatus {
	out := make([]ClusterStatus, 0, len(cfg.Clusters))
	for _, c := range cfg.Clusters {
		cs := ClusterStatus{Name: c.Name, Namespace: cfg.ClusterNamespace(c.Name), Labels: c.Labels}
		cs.Error, cs.Reachable = down[c.Name], down[c.Name] == ""
		for _, n := range nodes {
			if n.Cluster == c.Name {
				cs.Nodes++
				cs.GPUs += n.GPUs
			}
		}
		out = append(out, cs)
	}
	return out
}

// clusterCells are release rp's cells of the grid, and the release's
// state and reason folded from them: a cluster that did not answer
// degrades the release ("cluster unreachable"), and a cluster whose
// shards are not available degrades or holds it as one cluster does.
func clusterCells(f *fleetTarget, r *spec.Release, rp planner.ReleasePlan, applied map[string]bool) []ClusterReleaseStatus {
	var out []ClusterReleaseStatus
	for _, cp := range rp.Clusters {
		cell := ClusterReleaseStatus{Cluster: cp.Name, Image: cp.Image, Replicas: cp.Replicas, Placement: cp.Placement, Wave: cp.Wave,
			State: StateSynced, Reason: "up to date", Version: planner.Version(r)}
		switch {
		case cp.Unreachable != "":
			cell.State, cell.Reason, cell.Version = StateDegraded, "cluster unreachable: "+cp.Unreachable, ""
			out = append(out, cell)
			continue
		case applied[cp.Name] && f.reportsHealth(cp.Name):
			cell.State, cell.Reason = StateProgressing, "applied; the pods roll out"
		case applied[cp.Name]:
			cell.Reason = "applied"
		default:
			if state, reason, known := f.health(cp.Name, r.Name); known {
				cell.State, cell.Reason = state, reason
			}
		}
		if ro := cp.Rollout; ro != nil {
			switch ro.Phase {
			case planner.RolloutComplete:
				cell.Version = ro.Canary
			case planner.RolloutWaiting:
				cell.Version = ro.Stable
			default:
				cell.Version = ro.Stable + "→" + ro.Canary
			}
			if ro.Phase != planner.RolloutComplete && cell.State == StateSynced {
				cell.State, cell.Reason = StateProgressing, fmt.Sprintf("rollout %s, step %d/%d", ro.Phase, ro.Step, ro.Steps)
			}
		}
		out = append(out, cell)
	}
	return out
}

// foldCells sets st's state from its clusters' when they say worse.
func foldCells(st *ReleaseStatus) {
	if st.State == StateFailed || st.State == StateBlocked {
		return
	}
	var down, degraded []string
	for _, c := range st.Clusters {
		switch {
		case strings.HasPrefix(c.Reason, "cluster unreachable"):
			down = append(down, c.Cluster)
		case c.State == StateDegraded:
			degraded = append(degraded, c.Cluster+": "+c.Reason)
		case c.State == StateProgressing && st.State == StateSynced:
			st.State, st.Reason = StateProgressing, "progressing in "+c.Cluster
		}
	}
	if len(degraded) > 0 {
		st.State, st.Reason = StateDegraded, strings.Join(degraded, "; ")
	}
	if len(down) > 0 {
		st.State = StateDegraded
		st.Reason = fmt.Sprintf("cluster unreachable: %s (left as it is); %s", strings.Join(down, ", "), st.Reason)
	}
}

// mirror copies a model image into a cluster's registry mirror by digest
// (a mirror action), through the store MirrorFor makes for it.
func (e *Engine) mirror(ctx context.Context, store registry.Store, cfg *spec.Config, a planner.Action) error {
	m := a.Mirror
	if m == nil || m.Digest == "" {
		return fmt.Errorf("mirror %s: the image's digest is not known", spec.MaskURLCredentials(a.Subject))
	}
	cl, ok := cfg.Cluster(a.Cluster)
	if !ok || cl.RegistryMirror == "" {
		return fmt.Errorf("mirror: cluster %s has no registry_mirror", a.Cluster)
	}
	src, ok := store.(registry.Source)
	if !ok {
		return fmt.Errorf("mirror: the image store cannot be read from")
	}
	dst := e.mirrorStore(cl.RegistryMirror)
	if _, err := registry.Mirror(ctx, src, m.From, dst, m.To, m.Digest); err != nil {
		return err
	}
	// The signature and attestation go along, so that the cluster's
	// admission controller can verify the copy it pulls.
	if err := registry.CopyAttachments(ctx, src, m.From, dst, m.To, m.Digest); err != nil {
		return fmt.Errorf("mirror %s: %w", spec.MaskURLCredentials(m.To), err)
	}
	e.log().Info("mirrored", "cluster", a.Cluster, "image", spec.MaskURLCredentials(m.To), "digest", m.Digest)
	return nil
}

// mirrorStore is the store of a registry mirror, made once.
func (e *Engine) mirrorStore(mirror string) registry.Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.mirrors[mirror]; ok {
		return s
	}
	var s registry.Store
	if e.MirrorFor != nil {
		s = e.MirrorFor(mirror)
	} else {
		s = registry.NewRemote(registry.Options{})
	}
	if e.mirrors == nil {
		e.mirrors = map[string]registry.Store{}
	}
	e.mirrors[mirror] = s
	return s
}

// observeMirrors adds to artifacts the model images the clusters'
// registry mirrors hold, by reference.
func (e *Engine) observeMirrors(ctx context.Context, cfg *spec.Config, artifacts map[string]planner.Artifact, down map[string]string) {
	refs := map[string][]string{}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		for _, c := range cfg.ClustersOf(r) {
			cl, _ := cfg.Cluster(c)
			if cl.RegistryMirror != "" && down[c] == "" {
				refs[cl.RegistryMirror] = append(refs[cl.RegistryMirror], planner.ClusterImageRef(cfg, c, r))
			}
		}
	}
	mirrors := make([]string, 0, len(refs))
	for m := range refs {
		mirrors = append(mirrors, m)
	}
	slices.Sort(mirrors)
	for _, m := range mirrors {
		got, err := registry.Observe(ctx, e.mirrorStore(m), refs[m])
		if err != nil {
			// The mirror cannot be read: the plan copies into it, and a
			// copy that fails fails its release there, not the fleet.
			e.log().Warn("registry mirror unreadable", "mirror", spec.MaskURLCredentials(m), "err", err)
			continue
		}
		for ref, a := range got {
			artifacts[ref] = a
		}
	}
}

// actionClusters are the clusters actions change objects in.
func actionClusters(actions []planner.Action) map[string]bool {
	out := map[string]bool{}
	for _, a := range actions {
		if a.Cluster != "" && !a.Type.IsBuild() {
			out[a.Cluster] = true
		}
	}
	return out
}

// ObserveFleet observes the clusters of cfg (specs with cluster blocks)
// as a reconcile does, for a plan made outside the daemon (gantry plan):
// through the Targets makeTarget makes, at most jobs clusters at once,
// objects and nodes tagged with their cluster, the clusters that did
// not answer in Unreachable, and the images of the clusters' registry
// mirrors (through mirrorFor's stores) added to artifacts.
func ObserveFleet(ctx context.Context, cfg *spec.Config, makeTarget func(context.Context, spec.Cluster) (Target, error), mirrorFor func(string) registry.Store, artifacts map[string]planner.Artifact) (planner.Observed, error) {
	e := &Engine{ClusterTarget: makeTarget, MirrorFor: mirrorFor, Log: slog.Default()}
	f := e.fleet(ctx, cfg)
	objs, nodes, err := f.Observe(ctx, cfg)
	if err != nil {
		return planner.Observed{}, err
	}
	if artifacts == nil {
		artifacts = map[string]planner.Artifact{}
	}
	obs := planner.Observed{Objects: objs, Nodes: nodes, Artifacts: artifacts, Unreachable: f.Unreachable(), Prestage: f.canPrestage()}
	e.observeMirrors(ctx, cfg, artifacts, obs.Unreachable)
	return obs, nil
}
