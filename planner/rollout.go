package planner

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// liveShard is one live Deployment of a release, as a rollout sees it.
type liveShard struct {
	obj       Object
	name      string
	node      string
	version   string
	replicas  int
	available int // status.availableReplicas, or replicas when the target cannot say
	canaryOf  string
}

// rolloutPlan is what a release with a rollout block renders: its
// version's shards (where and how many), what stays of the other
// versions, and the state to report. It is a pure function of the specs,
// the placement and the live shards.
type rolloutPlan struct {
	state RolloutState
	// canary is the placement of the release's version (Version(r)) after
	// the plan; names the Deployment name per node.
	canary map[string]int
	names  map[string]string
	// keep is the replicas each live shard of another version keeps (0:
	// deleted), by Deployment name.
	keep map[string]int
	// others are the live shards of other versions.
	others []liveShard
	// mine are the live shards of the release's version, by node.
	mine map[string]liveShard
	// prestage are the nodes that get canary replicas in this plan and do
	// not hold the model image yet.
	prestage []string
	version  string
	stable   string
}

// versionOf is a live shard's version: its label, or, on a shard from
// before versions were labelled, the hash of the pod template's spec-hash
// and content-key annotations, which is how Version computes it.
func versionOf(o Object) string {
	if v := o.Label(LabelVersion); v != "" {
		return v
	}
	sp, _ := o.Manifest["spec"].(map[string]any)
	tpl, _ := sp["template"].(map[string]any)
	md, _ := tpl["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	ph, _ := ann[AnnotationSpecHash].(string)
	key, _ := ann[AnnotationContentKey].(string)
	return versionFrom(ph, key)
}

// liveShards are the release's live Deployments.
func (p *Prepared) liveShards(release string) []liveShard {
	var out []liveShard
	for _, id := range p.byRelease[release] {
		o := p.live[id]
		if o.Kind != "Deployment" {
			continue
		}
		s := liveShard{obj: o, name: o.Name, node: shardNode(o), version: versionOf(o), replicas: o.Replicas(),
			canaryOf: o.Annotation(AnnotationCanaryOf)}
		s.available = s.replicas
		if o.Available != nil {
			s.available = min(*o.Available, s.replicas)
		}
		out = append(out, s)
	}
	return out
}

// planRollout derives where the rollout of release r is and what it
// renders. The rules:
//   - no live shard of another version: the version takes the placement
//     (a first release, or a rollout that is over);
//   - a live shard of another version says it is a canary of this
//     version (gantry.dev/canary-of), and this version still serves: the
//     specs went back to the stable version (an abort, or a person's
//     revert). It takes every replica again, without steps;
//   - else the version is the canary, at the position's step when the
//     position names it, else at step 1. It takes the step's replicas out
//     of the release's total; the other versions keep the rest.
//
// Make before break: the other versions give up only as many replicas as
// the canary has available, so that what serves never drops below the
// release's replicas while the canary starts; until then they keep theirs
// and the surge (at most the step's canary replicas) runs on the GPUs the
// pools' reserve holds. With gateway traffic the canary gets its weight
// only once one of its replicas is available.
func (p *Prepared) planRollout(r *spec.Release, placement schedule.Placement) *rolloutPlan {
	ro := r.Rollout
	v := Version(r)
	total := 0
	for _, n := range placement {
		total += n
	}
	rp := &rolloutPlan{version: v, canary: map[string]int{}, names: map[string]string{}, keep: map[string]int{}, mine: map[string]liveShard{}}
	for _, s := range p.liveShards(r.Name) {
		if s.version == v {
			if prev, dup := rp.mine[s.node]; dup && prev.replicas >= s.replicas {
				rp.others = append(rp.others, s) // a second shard of the version on a node: let it go
				continue
			} else if dup {
				rp.others = append(rp.others, prev)
			}
			rp.mine[s.node] = s
			continue
		}
		rp.others = append(rp.others, s)
	}
	sort.Slice(rp.others, func(i, j int) bool { return rp.others[i].name < rp.others[j].name })
	steps := len(ro.Steps)
	st := &rp.state
	st.Canary, st.Steps = v, steps

	// The stable version: the other version with the most live replicas.
	byVersion := map[string]int{}
	restoring := false
	for _, s := range rp.others {
		byVersion[s.version] += s.replicas
		if s.canaryOf == v && len(rp.mine) > 0 {
			restoring = true
		}
	}
	for _, ver := range sortedKeys(byVersion) {
		if rp.stable == "" || byVersion[ver] > byVersion[rp.stable] {
			rp.stable = ver
		}
	}
	st.Stable = rp.stable

	want := total // canary replicas this step
	wave := p.waves[r.Name]
	switch {
	case len(rp.others) == 0:
		st.Phase, st.Step = RolloutComplete, steps
	case restoring, p.restoring[r.Name]:
		st.Phase, st.Step = RolloutRestoring, steps
	case wave == waveDone:
		// A cluster of an earlier wave: the version has every replica.
		st.Phase, st.Step = RolloutComplete, steps
	case wave == waveLater:
		// A cluster of a later wave: the other versions keep serving
		// until its wave starts.
		st.Phase, st.Step, want = RolloutWaiting, 0, 0
	default:
		st.Step = 1
		if ro.Step != nil && ro.Version == v {
			st.Step = min(max(*ro.Step, 1), steps)
		}
		step := ro.Steps[st.Step-1]
		want = step.CanaryReplicas(total)
		st.Phase = RolloutProgressing
		if want >= total {
			st.Phase = RolloutComplete
		}
		st.Pause = step.Pause
	}

	// Where the canary runs: nodes of the placement, those that run it
	// already first, then those whose other-version replicas it replaces
	// (their GPUs free up there), then by name.
	liveOther := map[string]int{}
	for _, s := range rp.others {
		liveOther[s.node] += s.replicas
	}
	nodes := placedNodes(placement)
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if x, y := rp.mine[a].available, rp.mine[b].available; x != y {
			return x > y // what serves stays
		}
		if x, y := rp.mine[a].replicas, rp.mine[b].replicas; x != y {
			return x > y
		}
		return liveOther[a] > liveOther[b]
	})
	need := want
	for _, n := range nodes {
		if need == 0 {
			break
		}
		c := min(placement[n], need)
		rp.canary[n] = c
		need -= c
	}
	// Going back a step (a reverted promotion): the canary gives up
	// replicas that serve only as the other versions have them available.
	otherAvail := 0
	for _, s := range rp.others {
		otherAvail += s.available
	}
	keptAvail := 0
	for n, c := range rp.canary {
		keptAvail += min(rp.mine[n].available, c)
	}
	deficit := total - otherAvail - keptAvail
	for _, n := range sortedKeys(rp.mine) {
		if deficit <= 0 {
			break
		}
		if more := rp.mine[n].available - min(rp.mine[n].available, rp.canary[n]); more > 0 {
			k := min(more, deficit)
			rp.canary[n] += k
			deficit -= k
		}
	}
	for n := range rp.canary {
		if s, ok := rp.mine[n]; ok {
			rp.names[n] = s.name
		} else {
			rp.names[n] = VersionedShardName(r.Name, n, v)
		}
	}

	// What the other versions keep: their share of the placement (total
	// minus the canary's), more while the canary is not available yet,
	// never more than they run, taken where they run.
	avail := 0
	for n, s := range rp.mine {
		if rp.canary[n] > 0 {
			avail += min(s.available, rp.canary[n])
		}
	}
	liveOthers := 0
	for _, s := range rp.others {
		liveOthers += s.replicas
	}
	share := total - want
	keep := max(share, min(liveOthers, total-avail))
	if st.Phase == RolloutRestoring {
		keep = min(liveOthers, max(0, total-avail))
	}
	// Shards of the stable version first, the biggest first, so that a
	// third version goes before the stable one.
	order := slices.Clone(rp.others)
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if (a.version == rp.stable) != (b.version == rp.stable) {
			return a.version == rp.stable
		}
		if a.available != b.available {
			return a.available > b.available // what serves stays longest
		}
		// Then those on nodes the canary does not run on: the GPUs
		// freed are where the canary's replicas start.
		if x, y := rp.canary[a.node] > 0, rp.canary[b.node] > 0; x != y {
			return !x
		}
		return a.replicas > b.replicas
	})
	left := keep
	for _, s := range order {
		k := min(s.replicas, left)
		rp.keep[s.name] = k
		left -= k
	}
	if left > 0 && len(order) > 0 && order[0].version == rp.stable {
		// The stable version runs fewer replicas than its share (the
		// release grew): its biggest shard takes the rest.
		rp.keep[order[0].name] += left
	}

	// The state.
	st.CanaryReplicas, st.StableReplicas = want, share
	if st.Phase == RolloutRestoring {
		st.StableReplicas = 0
	}
	st.CanaryAvailable, st.StableAvailable = avail, 0
	liveCanary := 0
	for _, s := range rp.mine {
		liveCanary += s.replicas
	}
	for _, s := range rp.others {
		st.StableAvailable += s.available
	}
	for _, n := range sortedKeys(rp.canary) {
		st.CanaryShards = append(st.CanaryShards, rp.names[n])
	}
	for _, s := range rp.others {
		if rp.keep[s.name] > 0 || s.replicas > 0 {
			st.StableShards = append(st.StableShards, s.name)
		}
	}
	st.Ready = avail >= want && liveCanary == want && liveOthers <= share
	st.Weight = rp.weight(ro, want, total, avail)
	st.Next = rolloutNext(ro, st)

	return rp
}

// prestageNodes are the nodes that get replicas of the release's version
// in this plan and do not report holding its model image (digest), and
// the image's size as a node that holds it reports it (0: unknown).
func (p *Prepared) prestageNodes(rp *rolloutPlan, digest string) ([]string, int64) {
	var size int64
	holds := map[string]bool{}
	for _, n := range p.observed.Nodes {
		if sz, ok := n.Images[digest]; ok {
			holds[n.Name] = true
			size = max(size, sz)
		}
	}
	var out []string
	for _, n := range sortedKeys(rp.canary) {
		if rp.canary[n] > rp.mine[n].replicas && !holds[n] {
			out = append(out, n)
		}
	}
	return out, size
}

// renderRollout renders a release with a rollout block: the release's
// Service; with gateway traffic a Service per version and the HTTPRoute;
// the shards of its version where the rollout places them; and the
// shards of other versions as they live, with the replicas they keep.
// deletes are the live objects it no longer wants, with the reason.
func (p *Prepared) renderRollout(in RenderInput, rp *rolloutPlan) (objs []Object, prestage *Action, err error) {
	r := in.Release
	ro := r.Rollout
	labels, annotations := baseMeta(in)
	svc, err := renderService(in, r.Name, map[string]string{LabelRelease: r.Name}, labels, annotations)
	if err != nil {
		return nil, nil, err
	}
	objs = append(objs, svc)
	canaryOf := ""
	if rp.state.Phase != RolloutRestoring {
		canaryOf = rp.stable
	}
	for _, n := range sortedKeys(rp.canary) {
		opt := shardOpts{name: rp.names[n], version: rp.version, canaryOf: canaryOf}
		if s, ok := rp.mine[n]; ok {
			opt.canaryOf = s.canaryOf // what a shard was started against stays
		}
		d, err := renderShard(in, n, int32(rp.canary[n]), labels, annotations, opt)
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, d)
	}
	for _, s := range rp.others {
		if k := rp.keep[s.name]; k > 0 {
			objs = append(objs, keptShard(s.obj, k))
		}
	}
	if ro.Traffic == "gateway" {
		route, svcs, err := p.renderRoute(in, rp, labels, annotations)
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, svcs...)
		objs = append(objs, route)
	}
	if p.observed.Prestage && in.Model.Digest != "" {
		nodes, size := p.prestageNodes(rp, in.Model.Digest)
		if len(nodes) > 0 {
			hosts := map[string]string{}
			for _, n := range nodes {
				if h := in.Hostnames[n]; h != "" {
					hosts[n] = h
				}
			}
			image := r.Runtime.Image
			if in.RuntimeDigest != "" && !strings.Contains(image, "@") {
				image += "@" + in.RuntimeDigest
			}
			ps := &PrestageSpec{Image: in.Model.ImageRef(), Packaging: r.Model.Packaging, RuntimeImage: image, Version: rp.version,
				Nodes: nodes, Bytes: size, Timeout: ro.PrestageTimeout}
			if len(hosts) > 0 {
				ps.Hostnames = hosts
			}
			each := "size unknown"
			if size > 0 {
				each = spec.FormatBytes(size) + " each"
			}
			prestage = &Action{Type: Prestage, Release: r.Name, Subject: fmt.Sprintf("%s on %s (%s)", in.Model.ImageRef(), strings.Join(nodes, ", "), each),
				Reason:   fmt.Sprintf("pull the model image of version %s before its shards start there, waiting at most %s", rp.version, ro.PrestageTimeout),
				Prestage: ps}
		}
	}
	return objs, prestage, nil
}

// keptShard is a live shard of another version with replicas set: its
// manifest as it lives, minus what the server owns, so that the update
// changes replicas and nothing else.
func keptShard(live Object, replicas int) Object {
	m := CopyManifest(live.Manifest)
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"uid", "creationTimestamp", "generation", "resourceVersion", "managedFields", "selfLink"} {
			delete(md, k)
		}
		if ann, ok := md["annotations"].(map[string]any); ok {
			delete(ann, "deployment.kubernetes.io/revision")
		}
	}
	delete(m, "status")
	if sp, ok := m["spec"].(map[string]any); ok {
		sp["replicas"] = int64(replicas)
	}
	o := live
	o.Manifest, o.Version, o.Available = m, "", nil
	return o
}

// VersionServiceName names the Service over one version's pods.
func VersionServiceName(release, version string) string { return release + "-" + version }

// renderRoute renders, for gateway traffic, a Service per version that
// serves and the HTTPRoute that weighs them. A version whose pods carry
// no version label (shards from before the release had a rollout block)
// is reached through the release's Service, which selects every pod of
// the release: the canary's share of traffic is then its weight plus its
// replica share of the rest.
func (p *Prepared) renderRoute(in RenderInput, rp *rolloutPlan, labels, annotations map[string]string) (Object, []Object, error) {
	r := in.Release
	port := gatewayv1.PortNumber(r.Runtime.Port)
	ref := func(svc string, w int) gatewayv1.HTTPBackendRef {
		w32 := int32(w)
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: &port},
			Weight:                 &w32,
		}}
	}
	var svcs []Object
	mk := func(ver string) (string, error) {
		name := VersionServiceName(r.Name, ver)
		o, err := renderService(in, name, map[string]string{LabelRelease: r.Name, LabelVersion: ver}, labels, annotations)
		if err != nil {
			return "", err
		}
		svcs = append(svcs, o)
		return name, nil
	}
	canarySvc, err := mk(rp.version)
	if err != nil {
		return Object{}, nil, err
	}
	w := rp.state.Weight
	backends := []gatewayv1.HTTPBackendRef{ref(canarySvc, w)}
	if backend, own := rp.stableBackend(r.Name); backend != "" {
		if own {
			if _, err := mk(rp.stable); err != nil {
				return Object{}, nil, err
			}
		}
		backends = append(backends, ref(backend, 100-w))
	}
	gw := r.Rollout.Gateway
	parent := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(gw)}
	if ns, name, ok := strings.Cut(gw, "/"); ok {
		n := gatewayv1.Namespace(ns)
		parent = gatewayv1.ParentReference{Namespace: &n, Name: gatewayv1.ObjectName(name)}
	}
	route := &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: GatewayAPIVersion, Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: in.Namespace, Labels: labels, Annotations: annotations},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: backends}},
		},
	}
	o, err := toObject(route)
	return o, svcs, err
}

// stableBackend is the Service the HTTPRoute sends the stable version's
// share to ("" when it gets none): its own Service when its pods carry the
// version label (own), else the release's.
func (rp *rolloutPlan) stableBackend(release string) (name string, own bool) {
	if rp.stable == "" || rp.state.Weight >= 100 {
		return "", false
	}
	for _, s := range rp.others {
		if s.version == rp.stable && s.obj.Label(LabelVersion) == rp.stable && podLabel(s.obj, LabelVersion) == rp.stable {
			return VersionServiceName(release, rp.stable), true
		}
	}
	return release, false
}

// podLabel is a label of a Deployment's pod template.
func podLabel(o Object, k string) string {
	sp, _ := o.Manifest["spec"].(map[string]any)
	tpl, _ := sp["template"].(map[string]any)
	md, _ := tpl["metadata"].(map[string]any)
	l, _ := md["labels"].(map[string]any)
	s, _ := l[k].(string)
	return s
}

// weight is the percent of traffic the canary gets.
func (rp *rolloutPlan) weight(ro *spec.Rollout, want, total, avail int) int {
	st := rp.state
	switch {
	case st.Phase == RolloutRestoring:
		return 100 // the release's version is the restored one
	case len(rp.others) == 0 || total == 0:
		return 100
	case ro.Traffic == "gateway" && avail == 0:
		return 0 // no canary endpoint serves yet
	}
	if ro.Traffic == "gateway" && st.Phase == RolloutProgressing {
		if w := ro.Steps[st.Step-1].Weight; w != nil {
			return *w
		}
	}
	if st.Phase == RolloutComplete {
		return 100
	}
	return int(math.Round(100 * float64(want) / float64(total)))
}

// rolloutNext says in words when and on what condition the next step
// comes.
func rolloutNext(ro *spec.Rollout, st *RolloutState) string {
	switch st.Phase {
	case RolloutWaiting:
		return fmt.Sprintf("step 1 (%s) once the wave of this cluster starts", stepText(ro.Steps[0]))
	case RolloutRestoring:
		return fmt.Sprintf("none: the specs restored version %s; the shards of version %s go once it serves every replica", st.Canary, st.Stable)
	case RolloutComplete:
		if st.Stable != "" {
			return fmt.Sprintf("none: version %s has every replica; version %s goes once they are available", st.Canary, st.Stable)
		}
		return "none: no rollout in progress"
	}
	next := ro.Steps[st.Step]
	what := fmt.Sprintf("step %d (%s)", st.Step+1, stepText(next))
	if st.Pause == 0 {
		return fmt.Sprintf("%s when a person promotes: set step = %d, version = %q", what, st.Step+1, st.Canary)
	}
	cond := "once the step's replicas are available and "
	if ro.Analysis != nil && len(ro.Analysis.Metrics) > 0 {
		names := make([]string, len(ro.Analysis.Metrics))
		for i, m := range ro.Analysis.Metrics {
			names[i] = m.Name
		}
		cond += fmt.Sprintf("%s stay within bounds for %s", strings.Join(names, ", "), st.Pause)
	} else {
		cond += st.Pause.String() + " have passed"
	}
	return what + " " + cond
}

func stepText(s spec.RolloutStep) string {
	if s.Percent > 0 {
		return fmt.Sprintf("%d%%", s.Percent)
	}
	return plural(s.Replicas, "replica")
}

// rolloutIDs are the IDs of the objects renderRollout returns for r and
// its rollout plan rp.
func (p *Prepared) rolloutIDs(r *spec.Release, rp *rolloutPlan) []string {
	ns := p.cfg.Settings.Namespace
	id := func(kind, name string) string { return Object{Kind: kind, Namespace: ns, Name: name}.ID() }
	ids := []string{id("Service", r.Name)}
	for _, n := range sortedKeys(rp.canary) {
		ids = append(ids, id("Deployment", rp.names[n]))
	}
	for _, s := range rp.others {
		if rp.keep[s.name] > 0 {
			ids = append(ids, id("Deployment", s.name))
		}
	}
	if r.Rollout.Traffic == "gateway" {
		ids = append(ids, id("Service", VersionServiceName(r.Name, rp.version)), id("HTTPRoute", r.Name))
		if backend, own := rp.stableBackend(r.Name); own {
			ids = append(ids, id("Service", backend))
		}
	}
	return ids
}

// rolloutsText is the plan's "Rollouts" section: rolloutText of every
// release with a rollout, in plan order (nil when none has one).
func rolloutsText(p *Plan) []string {
	var out []string
	for _, r := range p.Releases {
		out = append(out, rolloutText(r)...)
	}
	return out
}

// rolloutText is the plan's account of a rollout: which shards run which
// version after the plan, and what comes next.
func rolloutText(r ReleasePlan) []string {
	st := r.Rollout
	if st == nil {
		return nil
	}
	var out []string
	head := fmt.Sprintf("step %d/%d, %s", st.Step, st.Steps, st.Phase)
	if st.Phase == RolloutComplete && st.Stable == "" {
		head = st.Phase
	}
	if st.Waves > 0 && head != st.Phase {
		head = fmt.Sprintf("wave %d/%d (%s), %s", st.Wave, st.Waves, strings.Join(st.WaveClusters, ", "), head)
	}
	out = append(out, fmt.Sprintf("%s: %s", r.Name, head))
	out = append(out, fmt.Sprintf("  version %s: %s (%d available) %s", st.Canary, plural(st.CanaryReplicas, "replica"),
		st.CanaryAvailable, strings.Join(st.CanaryShards, ", ")))
	if st.Stable != "" {
		out = append(out, fmt.Sprintf("  version %s: %s after the step (%d available now) %s", st.Stable, plural(st.StableReplicas, "replica"),
			st.StableAvailable, strings.Join(st.StableShards, ", ")))
		out = append(out, fmt.Sprintf("  traffic to version %s: %d%%", st.Canary, st.Weight))
	}
	out = append(out, "  next: "+st.Next)
	return out
}
