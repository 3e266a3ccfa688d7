package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// waveMode is where one cluster's wave stands in a release's rollout.
type waveMode int

const (
	waveCurrent waveMode = iota // the wave the rollout is in (or no waves)
	waveDone                    // an earlier wave: the new version has every replica
	waveLater                   // a later wave: the old version keeps serving
)

// ClusterPlan is one cluster's part of a release in a fleet.
type ClusterPlan struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Image is the model image reference the cluster's pods use: the
	// release's, or its copy in the cluster's registry mirror.
	Image    string `json:"image,omitempty"`
	Replicas int    `json:"replicas"`
	// Placement is node name -> replicas, within the cluster.
	Placement schedule.Placement `json:"placement"`
	Held      int                `json:"held,omitempty"`
	Moving    []string           `json:"moving,omitempty"`
	Rollout   *RolloutState      `json:"rollout,omitempty"`
	// Unreachable says why the cluster could not be observed: nothing
	// is planned there (no apply, no prune) until it answers again.
	Unreachable string `json:"unreachable,omitempty"`
	// Wave is the cluster's wave (1-based) in the release's rollout; 0
	// without waves.
	Wave int `json:"wave,omitempty"`
}

// MirrorSpec is what a mirror action copies: the model image From
// (repository:tag of the registry the specs name), with manifest digest
// Digest, to To (repository:tag in a cluster's registry mirror).
type MirrorSpec struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Digest string `json:"digest,omitempty"`
}

// fleet is the plan of specs with cluster blocks: one placement over the
// nodes of every cluster that answered, then one plan per cluster, made
// by the single-cluster planner from that cluster's share.
type fleetPlan struct {
	clusters    []string             // every cluster block, sorted
	sub         map[string]*Prepared // the plan of each cluster that answered
	unreachable map[string]string    // cluster -> why it could not be observed
	// present are, per release, the clusters it runs in or has live
	// objects in, sorted.
	present map[string][]string
	// waves are, per release with waves, its waves (cluster names) and
	// the one (1-based) it is in.
	waves map[string]releaseWaves
}

type releaseWaves struct {
	list [][]string
	wave int
}

// of is the wave (1-based) cluster c is in; 0 if none.
func (w releaseWaves) of(c string) int {
	for i, cs := range w.list {
		if slices.Contains(cs, c) {
			return i + 1
		}
	}
	return 0
}

// prepareFleet places every release over the nodes of all the clusters
// it runs in (node identity is (cluster, node)), then prepares one
// single-cluster plan per cluster that answered, from the cluster's
// share of each release, its live objects and its nodes.
func prepareFleet(cfg *spec.Config, observed Observed) *Prepared {
	f := &fleetPlan{sub: map[string]*Prepared{}, unreachable: map[string]string{}, present: map[string][]string{}, waves: map[string]releaseWaves{}}
	known := map[string]bool{}
	for _, c := range cfg.Clusters {
		f.clusters = append(f.clusters, c.Name)
		known[c.Name] = true
		if why, down := observed.Unreachable[c.Name]; down {
			f.unreachable[c.Name] = why
		}
	}
	objs := map[string][]Object{}
	for _, o := range observed.Objects {
		if known[o.Cluster] {
			objs[o.Cluster] = append(objs[o.Cluster], o)
		}
	}
	nodes := map[string][]schedule.Node{}
	var all []schedule.Node
	for _, n := range observed.Nodes {
		if known[n.Cluster] && f.unreachable[n.Cluster] == "" {
			nodes[n.Cluster] = append(nodes[n.Cluster], n)
			all = append(all, n)
		}
	}
	// One Prepared per cluster that answered, indexing its live objects.
	for _, c := range f.clusters {
		if f.unreachable[c] != "" {
			continue
		}
		f.sub[c] = newPrepared(nil, Observed{Objects: objs[c], Nodes: nodes[c], Artifacts: observed.Artifacts,
			Images: observed.Images, Prestage: observed.Prestage})
	}

	// The placement over the fleet: current replicas keyed by node ID.
	p := &Prepared{cfg: cfg, observed: observed, unplaced: map[string]schedule.Unplaced{}, index: map[string]int{}, fleet: f}
	current := map[string]schedule.Placement{}
	for c, sub := range f.sub {
		for rel, pl := range sub.current() {
			if current[rel] == nil {
				current[rel] = schedule.Placement{}
			}
			for n, k := range pl {
				current[rel][c+"/"+n] += k
			}
		}
	}
	shadow := *p
	shadow.observed.Nodes = all
	problem := shadow.problem(current)
	problem.ClusterWeights = map[string]float64{}
	for i := range cfg.Clusters {
		problem.ClusterWeights[cfg.Clusters[i].Name] = cfg.Clusters[i].WeightOrDefault()
	}
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		p.index[r.Name] = i
		in := cfg.ClustersOf(r)
		var reach []string
		for _, c := range in {
			if f.unreachable[c] == "" {
				reach = append(reach, c)
			}
		}
		req := &problem.Requests[i]
		req.MinPerCluster, req.MaxPerCluster = r.PerCluster()
		req.Clusters = reach
		if r.ReplicasPerCluster != nil {
			// Each cluster holds its own share: an unreachable one keeps
			// what it runs, and the others do not take it over.
			req.Replicas = *r.ReplicasPerCluster * len(reach)
		}
		if len(reach) == 0 {
			req.Replicas, req.Clusters = 0, in
		}
		present := slices.Clone(in)
		for c, sub := range f.sub {
			if len(sub.byRelease[r.Name]) > 0 && !slices.Contains(present, c) {
				present = append(present, c)
			}
		}
		for c := range f.unreachable {
			if !slices.Contains(present, c) && slices.Contains(in, c) {
				present = append(present, c)
			}
		}
		sort.Strings(present)
		f.present[r.Name] = present
		if ro := r.Rollout; ro != nil && len(ro.Waves) > 0 {
			w := releaseWaves{list: ro.WaveList(in), wave: 1}
			if ro.Version == Version(r) && ro.Wave != nil {
				w.wave = min(max(*ro.Wave, 1), len(w.list))
			}
			f.waves[r.Name] = w
		}
	}
	p.placed = schedule.Place(problem)
	for _, u := range p.placed.Unplaced {
		p.unplaced[u.Release] = u
	}

	// Each cluster's plan: its share of every release that runs there or
	// has objects there, placed where the fleet's placement put it.
	for _, c := range f.clusters {
		sub := f.sub[c]
		if sub == nil {
			continue
		}
		cc := &spec.Config{Root: cfg.Root, Revision: cfg.Revision, Uncommitted: cfg.Uncommitted, Settings: cfg.Settings, Pools: cfg.Pools, Files: cfg.Files}
		cc.Settings.Namespace = cfg.ClusterNamespace(c)
		sub.cfg = cc
		sub.placed = schedule.Result{Placements: map[string]schedule.Placement{}, ImageLocal: map[string][]string{}}
		sub.waves, sub.restoring, sub.held = map[string]waveMode{}, map[string]bool{}, map[string]bool{}
		for i := range cfg.Releases {
			r := &cfg.Releases[i]
			if !slices.Contains(f.present[r.Name], c) {
				continue
			}
			pl := schedule.Placement{}
			for id, k := range p.placed.Placements[r.Name] {
				if cl, n := schedule.SplitID(id); cl == c {
					pl[n] = k
				}
			}
			for _, id := range p.placed.ImageLocal[r.Name] {
				if cl, n := schedule.SplitID(id); cl == c {
					sub.placed.ImageLocal[r.Name] = append(sub.placed.ImageLocal[r.Name], n)
				}
			}
			rc := *r
			n := pl.Total()
			rc.Replicas, rc.ReplicasPerCluster, rc.MinPerCluster, rc.MaxPerCluster = &n, nil, 0, 0
			rc.Clusters, rc.ClusterSelector = nil, nil
			cc.Releases = append(cc.Releases, rc)
			sub.placed.Placements[r.Name] = pl
			if _, short := p.unplaced[r.Name]; short {
				sub.held[r.Name] = true // what serves stays, in every cluster, until the fleet can place it all
			}
			if w, ok := f.waves[r.Name]; ok {
				switch k := w.of(c); {
				case k < w.wave:
					sub.waves[r.Name] = waveDone
				case k > w.wave:
					sub.waves[r.Name] = waveLater
				}
			}
			if r.Rollout != nil && f.restoring(r) {
				sub.restoring[r.Name] = true
			}
		}
		sub.finish()
	}
	return p
}

// restoring reports whether, in some cluster that answered, the release's
// version serves next to a live shard started as a canary of it: the
// specs went back to the stable version (an abort). Then every cluster
// restores it at once, the waves that completed included.
func (f *fleetPlan) restoring(r *spec.Release) bool {
	v := Version(r)
	for _, sub := range f.sub {
		mine, canary := false, false
		for _, s := range sub.liveShards(r.Name) {
			mine = mine || s.version == v
			canary = canary || (s.version != v && s.canaryOf == v)
		}
		if mine && canary {
			return true
		}
	}
	return false
}

// buildFleet is Build for a fleet: per release its build actions (once,
// for the registry the specs name), then per cluster that answered its
// mirror copy and object changes; then the prunes of each cluster that
// answered. A cluster that did not answer gets no action at all.
func (p *Prepared) buildFleet() (Plan, error) {
	cfg, f := p.cfg, p.fleet
	plan := Plan{FormatVersion: FormatVersion, Revision: cfg.Revision, Uncommitted: cfg.Uncommitted, ObservedDigest: p.observed.Digest(), Releases: []ReleasePlan{}, Actions: []Action{}}
	// The clusters' plans share the fleet's memo, each under its name.
	names := map[string]int{}
	for c, sub := range f.sub {
		sub.Memo, sub.memoKey = p.Memo, c+"\x00"
		for name, i := range sub.index {
			names[sub.memoKey+name] = i
		}
	}
	p.Memo.keep(names)
	if err := p.planReleases(&plan, p.fleetRelease); err != nil {
		return Plan{}, err
	}
	for _, c := range f.clusters {
		sub := f.sub[c]
		if sub == nil {
			continue
		}
		for _, id := range sub.liveIDs {
			if sub.wantedBy(id) {
				continue
			}
			o := sub.live[id]
			rel := o.Label(LabelRelease)
			plan.Actions = append(plan.Actions, inCluster(c, Action{Type: Delete, Release: rel, Subject: subject(o), Object: ptr(o),
				Reason: fmt.Sprintf("release %s was removed from the repository", rel)}))
		}
	}
	for _, c := range f.clusters {
		if why := f.unreachable[c]; why != "" {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("cluster %s is unreachable (%s): nothing is applied or pruned there until it answers", c, why))
		}
	}
	return plan, nil
}

// inCluster tags a and its object with cluster c.
func inCluster(c string, a Action) Action {
	a.Cluster = c
	if a.Object != nil {
		o := *a.Object
		o.Cluster = c
		a.Object = &o
	}
	return a
}

// fleetRelease plans release i across its clusters with model (the
// image in the registry the specs name): its ReleasePlan with one
// ClusterPlan per cluster, the mirror copies and object changes of every
// cluster that answered, and the warnings.
func (p *Prepared) fleetRelease(i int, model Model) (ReleasePlan, []Action, []string, error) {
	cfg, f := p.cfg, p.fleet
	r := &cfg.Releases[i]
	rp := ReleasePlan{Name: r.Name, ContentKey: model.Key, Image: model.Ref, Replicas: 0,
		Placement: p.placement(r.Name), ImageLocal: p.placed.ImageLocal[r.Name]}
	in := cfg.ClustersOf(r)
	rp.Replicas = r.FleetReplicas(len(in))
	if model.Digest != UnknownDigest {
		rp.Digest = model.Digest
	}
	var warnings []string
	if u, ok := p.unplaced[r.Name]; ok {
		u := u
		rp.Unplaced = &u
		warnings = append(warnings, fmt.Sprintf("release %s: %d of %d replicas cannot be placed: %s", r.Name, u.Count, rp.Replicas, u.String()))
	}
	for _, s := range p.placed.Short {
		if s.Release == r.Name {
			warnings = append(warnings, fmt.Sprintf("release %s: cluster %s holds %d of the %d replicas min_per_cluster asks for", r.Name, s.Cluster, s.Placed, s.Min))
		}
	}
	w, waves := f.waves[r.Name]
	var out []Action
	var states []clusterRollout
	for _, c := range f.present[r.Name] {
		cp := ClusterPlan{Name: c, Namespace: cfg.ClusterNamespace(c)}
		if waves {
			cp.Wave = w.of(c)
		}
		if why := f.unreachable[c]; why != "" {
			cp.Unreachable = why
			rp.Clusters = append(rp.Clusters, cp)
			continue
		}
		sub := f.sub[c]
		j := sub.index[r.Name]
		local := Model{Ref: ClusterImageRef(cfg, c, r), Digest: model.Digest, Key: model.Key}
		if local.Ref != model.Ref {
			if a, ok := p.observed.Artifacts[local.Ref]; !ok || model.Digest == UnknownDigest || a.Digest != model.Digest {
				ms := &MirrorSpec{From: model.Ref, To: local.Ref}
				if model.Digest != UnknownDigest {
					ms.Digest = model.Digest
				}
				out = append(out, Action{Type: Mirror, Release: r.Name, Cluster: c, Subject: local.Ref, ContentKey: model.Key, Mirror: ms,
					Reason: fmt.Sprintf("cluster %s pulls from its registry mirror, which has no copy of %s yet", c, model.Ref)})
			}
		}
		crp, changes, cw, err := sub.release(j, local)
		if err != nil {
			return rp, nil, nil, fmt.Errorf("cluster %s: %w", c, err)
		}
		for _, a := range changes {
			out = append(out, inCluster(c, a))
		}
		for _, s := range cw {
			warnings = append(warnings, "cluster "+c+": "+s)
		}
		cp.Image, cp.Replicas, cp.Placement, cp.Held, cp.Moving, cp.Rollout = local.Ref, crp.Placement.Total(), crp.Placement, crp.Held, crp.Moving, crp.Rollout
		rp.Held += crp.Held
		for _, n := range crp.Moving {
			rp.Moving = append(rp.Moving, c+"/"+n)
		}
		if crp.Rollout != nil {
			states = append(states, clusterRollout{cluster: c, wave: cp.Wave, state: *crp.Rollout})
		}
		rp.Clusters = append(rp.Clusters, cp)
	}
	if r.Rollout != nil && len(states) > 0 {
		st := fleetRollout(r, w, waves, states)
		rp.Rollout = &st
	}
	return rp, out, warnings, nil
}

type clusterRollout struct {
	cluster string
	wave    int
	state   RolloutState
}

// fleetRollout is the state of a release's rollout across the clusters
// that answered: that of the clusters of the wave it is in (every
// cluster without waves), with the stable version's shards of every
// cluster. Shard names are the Deployments' (their pods' names begin
// with them, which the analysis queries select by), sorted and once
// each, although the same name may live in several clusters.
func fleetRollout(r *spec.Release, w releaseWaves, waves bool, states []clusterRollout) RolloutState {
	var st RolloutState
	st.Canary, st.Steps = Version(r), len(r.Rollout.Steps)
	st.Ready = true
	restoring, allDone := false, true
	first := true
	for _, cs := range states {
		s := cs.state
		if st.Stable == "" {
			st.Stable = s.Stable
		}
		st.StableShards = append(st.StableShards, s.StableShards...)
		st.StableAvailable += s.StableAvailable
		st.StableReplicas += s.StableReplicas
		restoring = restoring || s.Phase == RolloutRestoring
		if waves && cs.wave != w.wave {
			continue
		}
		st.CanaryReplicas += s.CanaryReplicas
		st.CanaryAvailable += s.CanaryAvailable
		st.CanaryShards = append(st.CanaryShards, s.CanaryShards...)
		st.Ready = st.Ready && s.Ready
		allDone = allDone && s.Phase == RolloutComplete
		if first {
			st.Step, st.Pause, st.Weight, st.Next, st.Phase = s.Step, s.Pause, s.Weight, s.Next, s.Phase
			first = false
		}
	}
	slices.Sort(st.CanaryShards)
	st.CanaryShards = slices.Compact(st.CanaryShards)
	slices.Sort(st.StableShards)
	st.StableShards = slices.Compact(st.StableShards)
	if first { // no cluster of the wave answered
		st.Phase, st.Ready, st.Next = RolloutProgressing, false, "none until the clusters of the wave answer"
	}
	if waves {
		st.Wave, st.Waves = w.wave, len(w.list)
		st.WaveClusters = slices.Clone(w.list[w.wave-1])
	}
	switch {
	case restoring:
		st.Phase = RolloutRestoring
		st.Next = fmt.Sprintf("none: the specs restored version %s in every cluster; the shards of version %s go once it serves every replica", st.Canary, st.Stable)
	case allDone && st.Stable == "":
		// No other version serves anywhere (a first release): there is
		// nothing to roll wave by wave.
		st.Phase = RolloutComplete
		st.Next = "none: no rollout in progress"
	case allDone && waves && w.wave < len(w.list):
		// The wave's clusters run the version everywhere; the next wave
		// starts once the analysis of its last step passed.
		st.Phase, st.Step = RolloutProgressing, st.Steps
		last := r.Rollout.Steps[st.Steps-1]
		st.Pause = last.Pause
		next := fmt.Sprintf("wave %d (%s)", w.wave+1, strings.Join(w.list[w.wave], ", "))
		if st.Pause == 0 {
			st.Next = fmt.Sprintf("%s when a person promotes: set wave = %d, step = 1, version = %q", next, w.wave+1, st.Canary)
		} else {
			st.Next = fmt.Sprintf("%s once the wave's replicas are available and its analysis passed for %s", next, st.Pause)
		}
	case allDone:
		st.Phase = RolloutComplete
	default:
		st.Phase = RolloutProgressing
	}
	return st
}

// fleetReleaseActions is ReleaseActions for a fleet: the mirror copies
// and object changes of every cluster that answered.
func (p *Prepared) fleetReleaseActions(i int, digest string) ([]Action, error) {
	r := &p.cfg.Releases[i]
	_, changes, _, err := p.fleetRelease(i, Model{Ref: ImageRef(p.cfg, r), Digest: digest, Key: ContentKey(r)})
	return changes, err
}
