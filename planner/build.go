package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// Observed is what the world has, as drivers saw it.
type Observed struct {
	// Objects are the managed Kubernetes objects (those labelled
	// app.kubernetes.io/managed-by=gantry).
	Objects []Object `json:"objects"`
	// Nodes are the GPU nodes placement may use.
	Nodes []schedule.Node `json:"nodes"`
	// Artifacts are the model images that already exist, by image
	// reference (repository:tag, as ImageRef derives it). Not by content
	// key alone: two releases with the same model share a key but not a
	// repository, and each must get the image of its own repository.
	Artifacts map[string]Artifact `json:"artifacts"`
	// Images are runtime images resolved to digests: reference as written
	// in the spec -> sha256 digest. A runtime image found here is
	// referenced by digest; one that is not (pinned already, or not
	// resolved) is used as written.
	Images map[string]string `json:"images,omitempty"`
	// Prestage says the target can pull a model image on named nodes
	// before their shards change (a cluster): rollouts plan prestage
	// actions.
	Prestage bool `json:"prestage,omitempty"`
	// Unreachable, in a fleet, are the clusters that could not be
	// observed, with why: Objects and Nodes hold nothing of them, and the
	// plan changes nothing there.
	Unreachable map[string]string `json:"unreachable,omitempty"`
	// Evals are the evaluation results the engine has cached, by EvalKey
	// (content key and evaluator): a plan shows a cached candidate's
	// values against their bounds. Not part of Digest: a result changes
	// what the plan says, never what it does.
	Evals map[string]EvalResult `json:"evals,omitempty"`
}

// Artifact is a model image the registry has.
type Artifact struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// Digest fingerprints the observed state for a saved plan's staleness check.
func (o Observed) Digest() string {
	objs := append([]Object(nil), o.Objects...)
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].Cluster != objs[j].Cluster {
			return objs[i].Cluster < objs[j].Cluster
		}
		return objs[i].ID() < objs[j].ID()
	})
	nodes := append([]schedule.Node(nil), o.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID() < nodes[j].ID() })
	b, err := json.Marshal(Observed{Objects: objs, Nodes: nodes, Artifacts: o.Artifacts, Images: o.Images, Prestage: o.Prestage, Unreachable: o.Unreachable})
	if err != nil {
		panic("planner: marshal observed: " + err.Error()) // plain data; cannot fail
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// StaticNodes turns the config's node blocks into the nodes placement sees,
// for local mode where there is no cluster to observe.
func StaticNodes(cfg *spec.Config) []schedule.Node {
	out := make([]schedule.Node, 0, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		out = append(out, schedule.Node{
			Name: n.Name, Cluster: n.Cluster, Pool: n.Pool, GPUs: n.GPUs, GPUMemory: n.GPUMemory,
			Product: n.GPUProduct, Connections: n.Connections,
		})
	}
	return out
}

// ContentKey is the hex sha256 over everything that determines a release's
// model image: the source digest, the adapters (digest and scale, in
// order, with FuserVersion), the quantize parameters, the packaging and
// QuantizerVersion.
func ContentKey(r *spec.Release) string {
	v := struct {
		Source    string   `json:"source_digest"`
		Format    string   `json:"format"`
		Method    string   `json:"method"`
		GroupSize int      `json:"group_size,omitempty"`
		Skip      []string `json:"skip,omitempty"`
		Packaging string   `json:"packaging"`
		Base      string   `json:"base_image,omitempty"`
		Version   string   `json:"quantizer"`
		// Adapters, in order; absent without any, so that the keys of
		// releases without adapters did not change when they came.
		Adapters []adapterKey `json:"adapters,omitempty"`
	}{Source: r.Model.Digest, Format: r.Model.Format, Method: "none", Packaging: r.Model.Packaging, Base: r.Model.BaseImage, Version: QuantizerVersion}
	if q := r.Quantize; q != nil {
		v.Method, v.GroupSize, v.Skip = q.Method, q.GroupSize, q.Skip
	}
	for _, a := range r.Model.Adapters {
		v.Adapters = append(v.Adapters, adapterKey{Digest: a.Digest, Scale: a.ScaleOrDefault(), Version: FuserVersion})
	}
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ImageRepository is where a release's model images live: under the
// configured registry, or under gantry.local for the local OCI layout.
func ImageRepository(cfg *spec.Config, release string) string {
	reg := strings.TrimSuffix(cfg.Settings.Registry, "/")
	if reg == "" {
		reg = "gantry.local/models"
	}
	return reg + "/" + release
}

// ImageTag derives the tag from the content key.
func ImageTag(key string) string { return "ck-" + key[:32] }

// ImageRef is the one place a release's model image reference
// (repository:tag) is derived: its repository and the tag of its content
// key. Observed.Artifacts is keyed by it.
func ImageRef(cfg *spec.Config, r *spec.Release) string {
	return ImageRepository(cfg, r.Name) + ":" + ImageTag(ContentKey(r))
}

// CandidateRef is where a build waits for its gate's evals when an
// evaluator needs it in the registry (an eval Job mounts it, or a build
// Job pushed it): the image's repository, its content key's tag with
// "-candidate". Only a build that passed is tagged ImageRef, so that an
// image under ImageRef has always passed its gate.
func CandidateRef(cfg *spec.Config, r *spec.Release) string {
	return ImageRef(cfg, r) + "-candidate"
}

// ClusterImageRef is the model image reference release r's pods use in
// the named cluster: its copy in the cluster's registry_mirror (the same
// tag under the mirror's prefix), else ImageRef.
func ClusterImageRef(cfg *spec.Config, cluster string, r *spec.Release) string {
	if cl, ok := cfg.Cluster(cluster); ok && cl.RegistryMirror != "" {
		return strings.TrimSuffix(cl.RegistryMirror, "/") + "/" + r.Name + ":" + ImageTag(ContentKey(r))
	}
	return ImageRef(cfg, r)
}

// Build compares desired with observed and returns the plan.
func Build(desired spec.Config, observed Observed) (Plan, error) {
	return Prepare(&desired, observed).Build()
}

// ImageLocality is how much placement prefers nodes that hold a
// release's model image already (schedule.Problem.ImageLocality): up to
// a fifth off their load score, so a node with the image takes a new
// replica over one without while its load is at most 1.25 times higher.
const ImageLocality = 0.2

// Prepared is what Build works from, computed once: the live objects
// indexed by ID and by release, and the placement of every release. Its
// methods only read it, so they may run concurrently. The executor keeps
// it to plan one release again once a push made its model digest known,
// without planning the whole fleet again.
type Prepared struct {
	cfg       *spec.Config
	observed  Observed
	live      map[string]Object   // managed objects by ID
	liveIDs   []string            // the keys of live, sorted
	byRelease map[string][]string // sorted IDs of live objects, by gantry.dev/release
	placed    schedule.Result
	unplaced  map[string]schedule.Unplaced
	hostnames map[string]string
	// owner is, for each object ID some release renders, the index of the
	// first release that renders it: Build lets a release delete its live
	// object only if no earlier release wants that ID.
	owner map[string]int
	index map[string]int // release name -> index in cfg.Releases
	// rollouts are the rollout plans of the releases with a rollout block.
	rollouts map[string]*rolloutPlan
	// waves and restoring are set on a fleet's per-cluster plans: where
	// the cluster's wave stands in each release's rollout, and the
	// releases whose rollout restores the stable version in every
	// cluster (an abort seen in any one of them).
	waves     map[string]waveMode
	restoring map[string]bool
	// held are the releases whose changes hold what serves (see
	// holdServing) although this plan places them fully: in a fleet, the
	// releases the fleet's placement cannot place fully.
	held map[string]bool
	// memoKey prefixes the release names the memo is keyed by: a fleet's
	// per-cluster plans share its memo, each under its cluster's name.
	memoKey string
	// fleet is set on the plan of a fleet (specs with cluster blocks).
	fleet *fleetPlan

	// Memo, if set, lets Build skip rendering and diffing the releases
	// it vouches for, and learns from every release Build plans. Set it
	// before the first Build.
	Memo *Memo
}

// Prepare indexes observed and places the replicas of desired. desired
// is read, never changed, and must not change while the result is used.
func Prepare(desired *spec.Config, observed Observed) *Prepared {
	if desired.Fleet() {
		return prepareFleet(desired, observed)
	}
	p := newPrepared(desired, observed)
	p.placed = schedule.Place(p.problem(p.current()))
	p.finish()
	return p
}

// newPrepared indexes the live objects of observed.
func newPrepared(cfg *spec.Config, observed Observed) *Prepared {
	p := &Prepared{cfg: cfg, observed: observed, live: map[string]Object{}, byRelease: map[string][]string{},
		unplaced: map[string]schedule.Unplaced{}, hostnames: map[string]string{}, owner: map[string]int{}, index: map[string]int{}, rollouts: map[string]*rolloutPlan{}}
	for _, o := range observed.Objects {
		if o.Label(LabelManagedBy) != ManagedBy {
			continue // never plan against objects Gantry does not manage
		}
		id := o.ID()
		if _, dup := p.live[id]; !dup {
			p.liveIDs = append(p.liveIDs, id)
		}
		p.live[id] = o
	}
	sort.Strings(p.liveIDs)
	for _, id := range p.liveIDs {
		rel := p.live[id].Label(LabelRelease)
		p.byRelease[rel] = append(p.byRelease[rel], id)
	}
	return p
}

// current is where replicas run now, from the live shard Deployments:
// release -> node -> replicas.
func (p *Prepared) current() map[string]schedule.Placement {
	current := map[string]schedule.Placement{}
	for _, id := range p.liveIDs {
		o := p.live[id]
		rel, node := o.Label(LabelRelease), shardNode(o)
		if o.Kind == "Deployment" && rel != "" && node != "" {
			if current[rel] == nil {
				current[rel] = schedule.Placement{}
			}
			current[rel][node] += o.Replicas()
		}
	}
	return current
}

// problem is the placement problem of the specs' releases over the
// observed nodes, given where replicas run now.
func (p *Prepared) problem(current map[string]schedule.Placement) schedule.Problem {
	cfg, observed := p.cfg, p.observed
	problem := schedule.Problem{Nodes: observed.Nodes, Pools: map[string]schedule.Pool{}, Current: current, ImageLocality: ImageLocality}
	for _, pool := range cfg.Pools {
		w := 1.0
		if pool.Weight != nil {
			w = *pool.Weight
		}
		problem.Pools[pool.Name] = schedule.Pool{Weight: w, Reserve: pool.Reserve}
	}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		req := schedule.Request{Release: r.Name, Replicas: r.ReplicaCount(), GPUs: r.GPUCount(), GPUMemory: r.GPUMemory()}
		if pl := r.Placement; pl != nil {
			req.Pools, req.MaxPerNode, req.Spread = pl.Pools, pl.MaxPerNode, pl.Spread
		}
		if a, ok := observed.Artifacts[ImageRef(cfg, r)]; ok {
			req.Image = a.Digest // nodes holding the model image start its replicas without a pull
		}
		problem.Requests = append(problem.Requests, req)
	}
	return problem
}

// finish derives, once p.placed is set, the unplaced replicas, the
// nodes' hostnames, the rollouts and which release owns each object ID.
func (p *Prepared) finish() {
	cfg, observed := p.cfg, p.observed
	for _, u := range p.placed.Unplaced {
		p.unplaced[u.Release] = u
	}
	for _, n := range observed.Nodes {
		if n.Hostname != "" && n.Hostname != n.Name {
			p.hostnames[n.Name] = n.Hostname
		}
	}
	// A shard kept on a node placement no longer sees (not ready, say)
	// stays pinned as it is.
	for _, id := range p.liveIDs {
		o := p.live[id]
		node := shardNode(o)
		if o.Kind != "Deployment" || node == "" {
			continue
		}
		if _, ok := p.hostnames[node]; ok {
			continue
		}
		if h := liveHostname(o); h != "" && h != node && !slices.ContainsFunc(observed.Nodes, func(n schedule.Node) bool { return n.Name == node }) {
			p.hostnames[node] = h
		}
	}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		p.index[r.Name] = i
		ids := renderedIDs(r.Name, cfg.Settings.Namespace, p.placement(r.Name))
		if r.Rollout != nil {
			ro := p.planRollout(r, p.placement(r.Name))
			p.rollouts[r.Name] = ro
			ids = p.rolloutIDs(r, ro)
		}
		for _, id := range ids {
			if _, ok := p.owner[id]; !ok {
				p.owner[id] = i
			}
		}
	}
}

// placement is where Place put release's replicas; never nil.
func (p *Prepared) placement(release string) schedule.Placement {
	if pl := p.placed.Placements[release]; pl != nil {
		return pl
	}
	return schedule.Placement{}
}

// Build returns the plan: for each release in order its build actions
// (when the registry lacks its image) and object changes, then the
// prunes of objects of releases that left the repository.
func (p *Prepared) Build() (Plan, error) {
	if p.fleet != nil {
		return p.buildFleet()
	}
	cfg := p.cfg
	plan := Plan{FormatVersion: FormatVersion, Revision: cfg.Revision, Uncommitted: cfg.Uncommitted, ObservedDigest: p.observed.Digest(), Releases: []ReleasePlan{}, Actions: []Action{}}
	if err := p.planReleases(&plan, p.release); err != nil {
		return Plan{}, err
	}
	p.Memo.keep(p.index)
	// Prune: managed objects of releases that left the repository.
	for _, id := range p.liveIDs {
		if p.wantedBy(id) {
			continue
		}
		o := p.live[id]
		rel := o.Label(LabelRelease)
		plan.Actions = append(plan.Actions, Action{Type: Delete, Release: rel, Subject: subject(o), Object: ptr(o),
			Reason: fmt.Sprintf("release %s was removed from the repository", rel)})
	}
	return plan, nil
}

// planReleases adds to plan, release by release in order, the build
// actions of each release whose model image the registry lacks, then
// what planRelease plans for it with that image.
func (p *Prepared) planReleases(plan *Plan, planRelease func(i int, m Model) (ReleasePlan, []Action, []string, error)) error {
	cfg := p.cfg
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		model := Model{Ref: ImageRef(cfg, r), Digest: UnknownDigest, Key: ContentKey(r)}
		if a, ok := p.observed.Artifacts[model.Ref]; ok && a.Digest != "" {
			model.Digest = a.Digest
		} else {
			plan.Actions = append(plan.Actions, buildActions(r, model, p.observed.Evals, cfg.Settings.SigningKeyFile != "")...)
		}
		rp, changes, warnings, err := planRelease(i, model)
		if err != nil {
			return err
		}
		plan.Warnings = append(plan.Warnings, warnings...)
		plan.Actions = append(plan.Actions, changes...)
		plan.Releases = append(plan.Releases, rp)
	}
	return nil
}

// wantedBy reports whether a release of the specs renders id, or deletes
// it as a shard it no longer uses: whether the prune leaves it alone.
func (p *Prepared) wantedBy(id string) bool {
	if _, ok := p.owner[id]; ok {
		return true
	}
	_, ok := p.index[p.live[id].Label(LabelRelease)]
	return ok
}

// ReleaseActions returns the object changes of the named release, as
// Build gives them, with its model image known to have digest: what the
// executor applies after it pushed the image. Build actions are not
// included.
func (p *Prepared) ReleaseActions(name, digest string) ([]Action, error) {
	i, ok := p.index[name]
	if !ok {
		return nil, fmt.Errorf("release %s is not in the specs", name)
	}
	if p.fleet != nil {
		return p.fleetReleaseActions(i, digest)
	}
	r := &p.cfg.Releases[i]
	model := Model{Ref: ImageRef(p.cfg, r), Digest: digest, Key: ContentKey(r)}
	_, changes, _, err := p.release(i, model)
	return changes, err
}

// release plans the objects of release i with model: its ReleasePlan, its
// object changes (creates and updates, then deletes of shards on nodes
// it no longer uses, minus what holdServing holds) and its warnings.
func (p *Prepared) release(i int, model Model) (ReleasePlan, []Action, []string, error) {
	cfg := p.cfg
	r := &cfg.Releases[i]
	var warnings []string
	rp := ReleasePlan{Name: r.Name, ContentKey: model.Key, Image: model.Ref, Replicas: r.ReplicaCount(), Placement: p.placement(r.Name),
		ImageLocal: p.placed.ImageLocal[r.Name]}
	if model.Digest != UnknownDigest {
		rp.Digest = model.Digest
	}
	if u, ok := p.unplaced[r.Name]; ok {
		u := u
		rp.Unplaced = &u
		warnings = append(warnings, fmt.Sprintf("release %s: %d of %d replicas cannot be placed: %s", r.Name, u.Count, r.ReplicaCount(), u.String()))
	}

	in := RenderInput{Release: r, Namespace: cfg.Settings.Namespace, Revision: cfg.Revision, Model: model,
		Placement: rp.Placement, RuntimeDigest: p.observed.Images[r.Runtime.Image], Hostnames: p.hostnames}
	if r.Rollout != nil {
		// Rollouts are few, and their state moves with the shards'
		// availability: planned in full, never memoised.
		ro := p.rollouts[r.Name]
		objs, prestage, err := p.renderRollout(in, ro)
		if err != nil {
			return rp, nil, nil, err
		}
		state := ro.state
		rp.Rollout = &state
		changes, warnings := p.objectChanges(i, &rp, objs, warnings, func(o Object) string {
			switch {
			case o.Kind == "Deployment" && versionOf(o) != ro.version:
				return fmt.Sprintf("version %s of %s gave its last replicas on node %s to version %s", versionOf(o), r.Name, shardNode(o), ro.version)
			case o.Kind == "Deployment":
				return p.leaveReason(o, r.Name)
			}
			return fmt.Sprintf("%s no longer wants %s %s", r.Name, o.Kind, o.Name)
		})
		if prestage != nil && len(changes) > 0 {
			changes = append([]Action{*prestage}, changes...)
		}
		return rp, changes, warnings, nil
	}
	in.Placement, rp.Moving = p.keepWhileMoving(r.Name, rp.Placement)
	if len(rp.Moving) > 0 {
		warnings = append(warnings, fmt.Sprintf("release %s: the shards on %s stay until the replicas replacing them are available",
			r.Name, strings.Join(rp.Moving, ", ")))
	}
	var (
		inputs string
		live   []idVersion
	)
	if p.Memo != nil {
		inputs, live = inputsHash(in), p.liveVersions(r.Name, renderedIDs(r.Name, cfg.Settings.Namespace, rp.Placement))
		if rp.Unplaced == nil && !p.held[r.Name] && p.Memo.inSync(p.memoKey+r.Name, inputs, live) {
			return rp, nil, warnings, nil
		}
	}
	objs, err := Render(in)
	if err != nil {
		return rp, nil, nil, err
	}
	changes, warnings := p.objectChanges(i, &rp, objs, warnings, func(o Object) string {
		return p.leaveReason(o, r.Name)
	})
	p.Memo.remember(p.memoKey+r.Name, inputs, live, len(changes) == 0 && rp.Unplaced == nil && !p.held[r.Name])
	return rp, changes, warnings, nil
}

// objectChanges are the creates and updates that bring release i's live
// objects to objs, then the deletes of its live objects objs leaves out
// (unless an earlier release renders the same ID), minus what
// holdServing holds when the release cannot be fully placed. why says
// why a live object goes.
func (p *Prepared) objectChanges(i int, rp *ReleasePlan, objs []Object, warnings []string, why func(Object) string) ([]Action, []string) {
	r := &p.cfg.Releases[i]
	var changes, deletes []Action
	mine := make(map[string]bool, len(objs))
	for _, o := range objs {
		mine[o.ID()] = true
		if a, ok := objectAction(o, p.live); ok {
			changes = append(changes, a)
		}
	}
	ids := p.byRelease[r.Name]
	hasLive := len(ids) > 0
	for _, id := range ids {
		if mine[id] {
			continue
		}
		if first, ok := p.owner[id]; ok && first < i {
			continue
		}
		o := p.live[id]
		deletes = append(deletes, Action{Type: Delete, Release: r.Name, Subject: subject(o), Object: ptr(o), Reason: why(o)})
	}
	changes = append(changes, deletes...)
	if (rp.Unplaced != nil || p.held[r.Name]) && hasLive {
		var held []Action
		changes, held = holdServing(changes)
		rp.Held = len(held)
		if len(held) > 0 {
			warnings = append(warnings, fmt.Sprintf("release %s: %s held, so that what serves stays as it is until every replica can be placed",
				r.Name, plural(len(held), "object change")))
		}
	}
	return changes, warnings
}

// holdServing splits the object changes of a release that cannot be fully
// placed, and that serves already, into those that only add capacity and
// those that would lower it. Gantry must never make production worse: an
// impossible request (more GPUs than any node has, more replicas than fit)
// must not delete, shrink or roll the shards that serve now. Held are
// deletes, updates that lower replicas, and every change at all when the
// pods' template changes (a rollout to a spec that does not fit would mix
// versions and then stall). What is kept is a create of a new shard or an
// update that only raises replicas, with the template unchanged.
func holdServing(changes []Action) (keep, held []Action) {
	rollout := false
	for _, a := range changes {
		if a.Type == Update && !onlyReplicas(a) {
			rollout = true
		}
	}
	for _, a := range changes {
		switch {
		case rollout, a.Type == Delete:
			held = append(held, a)
		case a.Type == Update && lowersReplicas(a):
			held = append(held, a)
		default:
			keep = append(keep, a)
		}
	}
	return keep, held
}

func onlyReplicas(a Action) bool {
	for _, c := range a.Changes {
		if c.Path != "spec.replicas" {
			return false
		}
	}
	return true
}

func lowersReplicas(a Action) bool {
	for _, c := range a.Changes {
		if c.Path == "spec.replicas" && toInt(c.New) < toInt(c.Old) {
			return true
		}
	}
	return false
}

func toInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

func buildActions(r *spec.Release, m Model, evals map[string]EvalResult, signed bool) []Action {
	out := fuseActions(r, m.Key)
	method := "none"
	if r.Quantize != nil {
		method = r.Quantize.Method
	}
	if method != "none" {
		out = append(out, Action{Type: Quantize, Release: r.Name, Subject: r.Model.Source, ContentKey: m.Key,
			Reason: fmt.Sprintf("no %s build of %s (%s) exists yet", method, r.Model.Source, short(r.Model.Digest))})
	}
	if g := r.Gate; g != nil {
		var bars []string
		if g.MaxError != nil {
			bars = append(bars, fmt.Sprintf("relative RMSE <= %g", *g.MaxError))
		}
		for _, k := range sortedKeys(g.Min) {
			bars = append(bars, fmt.Sprintf("%s >= %g", k, g.Min[k]))
		}
		if len(bars) > 0 {
			out = append(out, Action{Type: Gate, Release: r.Name, Subject: r.Name, ContentKey: m.Key,
				Reason: "the new build must meet " + strings.Join(bars, ", ")})
		}
		out = append(out, evalActions(r, m.Key, evals)...)
	}
	reason := fmt.Sprintf("the registry has no image for content key %s", m.Key[:12])
	if signed {
		reason += "; it is signed, with its provenance attestation, by signing_key_file"
	}
	out = append(out, Action{Type: Push, Release: r.Name, Subject: m.Ref, ContentKey: m.Key, Reason: reason})
	return out
}

// objectAction returns the create or update that brings live to o, if any.
func objectAction(o Object, live map[string]Object) (Action, bool) {
	l, ok := live[o.ID()]
	if !ok {
		reason := "new Service for " + o.Label(LabelRelease)
		if o.Kind == "Deployment" {
			reason = fmt.Sprintf("place %s on node %s", plural(o.Replicas(), "replica"), shardNode(o))
		}
		return Action{Type: Create, Release: o.Label(LabelRelease), Subject: subject(o), Object: ptr(o), Reason: reason}, true
	}
	changes := Diff(o.Manifest, l.Manifest)
	if len(changes) == 0 {
		return Action{}, false
	}
	return Action{Type: Update, Release: o.Label(LabelRelease), Subject: subject(o), Object: ptr(o), Changes: changes, Reason: updateReason(changes, l)}, true
}

func updateReason(changes []FieldChange, live Object) string {
	var parts []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	for _, c := range changes {
		switch {
		case c.Path == "spec.replicas":
			add(fmt.Sprintf("replicas %v -> %v", fmtValue(c.Old, false), fmtValue(c.New, false)))
		case strings.Contains(c.Path, AnnotationContentKey), strings.Contains(c.Path, "volumes"), strings.Contains(c.Path, "modelcar"):
			add("new model image")
		case strings.Contains(c.Path, AnnotationSpecHash):
			add("release spec changed")
		case strings.Contains(c.Path, "containers"):
			add("runtime changed")
		default:
			add(c.Path + " changed")
		}
	}
	if live.Annotation(AnnotationRevision) == "" && live.Annotation(AnnotationSpecHash) == "" {
		add("drift: the live object lacks Gantry's annotations")
	}
	return strings.Join(parts, "; ")
}

func subject(o Object) string { return o.Kind + " " + o.Namespace + "/" + o.Name }

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return "sha256:" + d[:12]
	}
	return d
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// shardNode is the node a shard Deployment pins.
func shardNode(o Object) string {
	if n := o.Annotation(AnnotationNode); n != "" {
		return n
	}
	return o.Label(LabelNode)
}
