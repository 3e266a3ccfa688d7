package planner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// rolloutWorld is live objects in memory, applied the way targets apply
// plans, with availability set by the test (no kubelet runs the pods).
type rolloutWorld struct {
	t       *testing.T
	objs    map[string]Object
	digests map[string]string // image ref -> digest
	nodes   []string
	// images: node -> digests it holds (the kubelet's status.images)
	images   map[string]map[string]int64
	prestage bool
	gone     map[string]bool // nodes observe no longer reports (cordoned, not ready)
}

func newRolloutWorld(t *testing.T) *rolloutWorld {
	return &rolloutWorld{t: t, objs: map[string]Object{}, digests: map[string]string{}, images: map[string]map[string]int64{}}
}

// rolloutConfig loads a release of 4 replicas on 4 one-GPU nodes, with
// the given model source digest (a new digest is a new version) and the
// rollout block set directly (its HCL decoding is spec's concern).
func rolloutConfig(t *testing.T, digestByte byte, ro *spec.Rollout) *spec.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("gantry {\n  namespace = \"llm\"\n}\nnode_pool \"a\" {\n  selector = { p = \"a\" }\n  reserve = 1\n}\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "node \"gpu-%d\" {\n  pool = \"a\"\n  gpus = 2\n  gpu_memory = \"80Gi\"\n}\n", i)
	}
	fmt.Fprintf(&b, "release \"chat\" {\n  model {\n    source = \"m.gguf\"\n    format = \"gguf\"\n    digest = \"sha256:%064x\"\n  }\n  runtime {\n    image = \"llama:server\"\n    port = 8080\n  }\n  replicas = 4\n  resources {\n    gpus = 1\n  }\n  placement {\n    max_per_node = 1\n  }\n}\n", digestByte)
	cfg := loadSpecs(t, b.String())
	cfg.Releases[0].Rollout = ro
	return cfg
}

// loadSpecs loads src as the one spec file of a repository whose model
// file is m.gguf.
func loadSpecs(t *testing.T, src string) *spec.Config {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "main.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m.gguf"), []byte("GGUF\x03\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Load(context.Background(), root, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return cfg
}

func threeSteps() *spec.Rollout {
	return &spec.Rollout{Traffic: "service", PrestageTimeout: 30 * time.Minute, Steps: []spec.RolloutStep{
		{Replicas: 1, Pause: 10 * time.Minute}, {Percent: 50, Pause: 10 * time.Minute}, {Percent: 100},
	}}
}

func (w *rolloutWorld) observed(cfg *spec.Config) Observed {
	obs := Observed{Artifacts: map[string]Artifact{}, Prestage: w.prestage}
	for _, n := range StaticNodes(cfg) {
		if !w.gone[n.Name] {
			n.Images = w.images[n.Name]
			obs.Nodes = append(obs.Nodes, n)
		}
	}
	for ref, d := range w.digests {
		obs.Artifacts[ref] = Artifact{Ref: ref, Digest: d}
	}
	for _, id := range sortedKeys(w.objs) {
		obs.Objects = append(obs.Objects, w.objs[id])
	}
	return obs
}

// plan pushes the release's image if missing, then plans with it known.
func (w *rolloutWorld) plan(cfg *spec.Config) Plan {
	w.t.Helper()
	ref := ImageRef(cfg, &cfg.Releases[0])
	if _, ok := w.digests[ref]; !ok {
		w.digests[ref] = "sha256:" + ContentKey(&cfg.Releases[0])
	}
	p, err := Build(*cfg, w.observed(cfg))
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// apply carries out the plan's object actions. A changed Deployment is
// unavailable until the test says otherwise, except for the replicas its
// unchanged pods still serve.
func (w *rolloutWorld) apply(p Plan) {
	for _, a := range p.Actions {
		switch a.Type {
		case Create, Update:
			o := *a.Object
			old, ok := w.objs[o.ID()]
			if o.Kind == "Deployment" {
				avail := 0
				if ok && old.Available != nil && !templateChanged(a) {
					avail = min(*old.Available, o.Replicas())
				}
				o.Available = &avail
			}
			w.objs[o.ID()] = o
		case Delete:
			delete(w.objs, a.Object.ID())
		}
	}
}

// deploymentSummary counts the plan's Deployment changes.
func deploymentSummary(p Plan) Summary {
	var only Plan
	for _, a := range p.Actions {
		if a.Object != nil && a.Object.Kind == "Deployment" {
			only.Actions = append(only.Actions, a)
		}
	}
	return only.Summary()
}

func templateChanged(a Action) bool {
	for _, c := range a.Changes {
		if strings.HasPrefix(c.Path, "spec.template") {
			return true
		}
	}
	return false
}

// ready makes every Deployment fully available.
func (w *rolloutWorld) ready() {
	for id, o := range w.objs {
		if o.Kind == "Deployment" {
			n := o.Replicas()
			o.Available = &n
			w.objs[id] = o
		}
	}
}

// allReady says every Deployment is fully available.
func (w *rolloutWorld) allReady() bool {
	for _, o := range w.objs {
		if o.Kind == "Deployment" && (o.Available == nil || *o.Available < o.Replicas()) {
			return false
		}
	}
	return true
}

// serving is the available replicas of the release, by version.
func (w *rolloutWorld) serving() map[string]int {
	out := map[string]int{}
	for _, o := range w.objs {
		if o.Kind == "Deployment" && o.Available != nil {
			out[versionOf(o)] += *o.Available
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// converge plans and applies until the plan is empty, making shards
// available after every apply, and checks that what serves never drops
// below want.
func (w *rolloutWorld) converge(cfg *spec.Config, want int) Plan {
	w.t.Helper()
	for i := 0; i < 10; i++ {
		p := w.plan(cfg)
		if p.Empty() {
			if w.allReady() {
				return p
			}
			w.ready() // the plan waits on pods becoming available
			continue
		}
		w.apply(p)
		if got := total(w.serving()); got < want {
			w.t.Fatalf("after apply %d: %d replicas serve, fewer than %d: %v", i, got, want, w.serving())
		}
		w.ready()
	}
	w.t.Fatal("no convergence in 10 rounds")
	return Plan{}
}

// TestRolloutStepsMakeBeforeBreak: a new version goes to a canary, step
// by step as the position says, and the stable version gives up a replica
// only once the canary's replacement is available. At no point do fewer
// than 4 replicas serve.
func TestRolloutStepsMakeBeforeBreak(t *testing.T) {
	w := newRolloutWorld(t)
	v1 := rolloutConfig(t, 1, threeSteps())
	p := w.converge(v1, 0)
	st := p.Releases[0].Rollout
	if st == nil || st.Phase != RolloutComplete || st.Stable != "" {
		t.Fatalf("first release: rollout %+v, want complete with no stable", st)
	}
	s1 := Version(&v1.Releases[0])
	if got := w.serving(); got[s1] != 4 {
		t.Fatalf("serving %v, want 4 of %s", got, s1)
	}
	for _, o := range w.objs {
		if o.Kind == "Deployment" && (o.Label(LabelVersion) != s1 || !strings.HasSuffix(o.Name, "-"+s1) || podLabel(o, LabelNode) != "" || podLabel(o, LabelShard) != o.Name) {
			t.Errorf("shard %s: version label %q, pod labels node %q shard %q", o.Name, o.Label(LabelVersion), podLabel(o, LabelNode), podLabel(o, LabelShard))
		}
	}

	// A new model: step 1 (no position yet) is one canary replica.
	v2 := rolloutConfig(t, 2, threeSteps())
	s2 := Version(&v2.Releases[0])
	p = w.plan(v2)
	st = p.Releases[0].Rollout
	if st.Phase != RolloutProgressing || st.Step != 1 || st.Canary != s2 || st.Stable != s1 || st.CanaryReplicas != 1 || st.StableReplicas != 3 || st.Ready {
		t.Fatalf("step 1: %+v", st)
	}
	if s := deploymentSummary(p); s.Add != 1 || s.Change != 0 || s.Destroy != 0 {
		t.Fatalf("step 1 before the canary serves: %+v, want only the canary created: %+v", s, p.Actions)
	}
	w.apply(p)
	if got := w.serving(); got[s1] != 4 {
		t.Fatalf("the stable version must keep 4 while the canary starts: %v", got)
	}
	for _, o := range w.objs {
		if o.Kind == "Deployment" && versionOf(o) == s2 && o.Annotation(AnnotationCanaryOf) != s1 {
			t.Errorf("canary %s: canary-of %q, want %s", o.Name, o.Annotation(AnnotationCanaryOf), s1)
		}
	}
	// Nothing changes while the canary is not available.
	if p := w.plan(v2); !p.Empty() {
		t.Fatalf("canary unavailable: plan %+v, want none", p.Actions)
	}
	w.ready()
	p = w.plan(v2)
	if s := deploymentSummary(p); s.Change+s.Destroy != 1 {
		t.Fatalf("canary available: %+v, want one stable shard scaled down or removed: %+v", s, p.Actions)
	}
	w.apply(p)
	if got := w.serving(); got[s1] != 3 || got[s2] != 1 {
		t.Fatalf("after step 1: %v, want 3 stable and 1 canary", got)
	}
	if st := w.plan(v2).Releases[0].Rollout; !st.Ready || st.Weight != 25 {
		t.Fatalf("step 1 in place: %+v, want ready at 25%%", st)
	}

	// The promotion commit: step 2 (50%).
	two, three := 2, 3
	v2.Releases[0].Rollout.Step, v2.Releases[0].Rollout.Version = &two, s2
	w.converge(v2, 4)
	if got := w.serving(); got[s1] != 2 || got[s2] != 2 {
		t.Fatalf("after step 2: %v", got)
	}
	// A revert of the promotion goes back a step, without dropping below
	// 4, even when it comes before step 2's new canary replica serves.
	one := 1
	w.ready()
	v2.Releases[0].Rollout.Step = &three
	w.apply(w.plan(v2))
	v2.Releases[0].Rollout.Step = &one
	for i := 0; i < 3; i++ {
		w.apply(w.plan(v2))
		if got := total(w.serving()); got < 4 {
			t.Fatalf("a revert right after a promotion: %d serve: %v", got, w.serving())
		}
	}
	v2.Releases[0].Rollout.Step = &one
	w.converge(v2, 4)
	if got := w.serving(); got[s1] != 3 || got[s2] != 1 {
		t.Fatalf("after the revert to step 1: %v", got)
	}
	v2.Releases[0].Rollout.Step = &three
	p = w.converge(v2, 4)
	if got := w.serving(); got[s2] != 4 || got[s1] != 0 {
		t.Fatalf("after the last step: %v, want only %s", got, s2)
	}
	if st := p.Releases[0].Rollout; st.Phase != RolloutComplete || st.Stable != "" {
		t.Fatalf("done: %+v", st)
	}
}

// TestRolloutAbortRestoresAtOnce: specs back at the stable version while
// its canary serves (an abort commit, or a person's revert) give the
// stable version every replica again, and the canary goes only once they
// serve.
func TestRolloutAbortRestoresAtOnce(t *testing.T) {
	w := newRolloutWorld(t)
	v1 := rolloutConfig(t, 1, threeSteps())
	w.converge(v1, 0)
	v2 := rolloutConfig(t, 2, threeSteps())
	two := 2
	v2.Releases[0].Rollout.Step, v2.Releases[0].Rollout.Version = &two, Version(&v2.Releases[0])
	w.converge(v2, 4)
	s1, s2 := Version(&v1.Releases[0]), Version(&v2.Releases[0])
	if got := w.serving(); got[s1] != 2 || got[s2] != 2 {
		t.Fatalf("mid-rollout: %v", got)
	}
	// The abort: v1's blocks again; the position still names v2.
	v1.Releases[0].Rollout.Step, v1.Releases[0].Rollout.Version = &two, s2
	p := w.plan(v1)
	st := p.Releases[0].Rollout
	if st.Phase != RolloutRestoring || st.Canary != s1 || st.Stable != s2 || st.CanaryReplicas != 4 {
		t.Fatalf("abort: %+v", st)
	}
	for _, a := range p.Actions {
		if a.Type == Delete {
			t.Fatalf("abort removed %s before the stable version serves again", a.Subject)
		}
		if a.Type == Update && versionOf(*a.Object) == s2 {
			t.Fatalf("abort changed the canary's shard %s", a.Subject)
		}
	}
	w.converge(v1, 4)
	if got := w.serving(); got[s1] != 4 || got[s2] != 0 {
		t.Fatalf("after the abort: %v", got)
	}
}

// TestRolloutGatewayWeights: with gateway traffic, an HTTPRoute weighs a
// Service per version; the canary gets its weight only once it serves.
func TestRolloutGatewayWeights(t *testing.T) {
	w := newRolloutWorld(t)
	ro := func() *spec.Rollout {
		r := threeSteps()
		r.Traffic, r.Gateway = "gateway", "infra/inference"
		ten := 10
		r.Steps[0].Weight = &ten
		return r
	}
	w.converge(rolloutConfig(t, 1, ro()), 0)
	v2 := rolloutConfig(t, 2, ro())
	s1, s2 := Version(&rolloutConfig(t, 1, ro()).Releases[0]), Version(&v2.Releases[0])
	weights := func() map[string]int64 {
		route, ok := w.objs["HTTPRoute/llm/chat"]
		if !ok {
			t.Fatal("no HTTPRoute")
		}
		if ns, _ := route.Manifest["spec"].(map[string]any)["parentRefs"].([]any)[0].(map[string]any)["namespace"].(string); ns != "infra" {
			t.Errorf("parentRef namespace %q", ns)
		}
		out := map[string]int64{}
		rules := route.Manifest["spec"].(map[string]any)["rules"].([]any)
		for _, b := range rules[0].(map[string]any)["backendRefs"].([]any) {
			bm := b.(map[string]any)
			out[bm["name"].(string)] = bm["weight"].(int64)
		}
		return out
	}
	if got := weights(); len(got) != 1 || got["chat-"+s1] != 100 {
		t.Fatalf("before the rollout: %v", got)
	}
	w.apply(w.plan(v2))
	if got := weights(); got["chat-"+s2] != 0 || got["chat-"+s1] != 100 {
		t.Fatalf("canary not serving yet: %v, want 0 to it", got)
	}
	w.ready()
	w.converge(v2, 4)
	if got := weights(); got["chat-"+s2] != 10 || got["chat-"+s1] != 90 {
		t.Fatalf("step 1: %v, want 10/90", got)
	}
	for _, id := range []string{"Service/llm/chat-" + s1, "Service/llm/chat-" + s2} {
		svc, ok := w.objs[id]
		if !ok {
			t.Fatalf("no %s", id)
		}
		sel := svc.Manifest["spec"].(map[string]any)["selector"].(map[string]any)
		if sel[LabelVersion] != strings.TrimPrefix(id, "Service/llm/chat-") {
			t.Errorf("%s selects %v", id, sel)
		}
	}
	two := 2
	v2.Releases[0].Rollout.Step, v2.Releases[0].Rollout.Version = &two, s2
	w.converge(v2, 4)
	if got := weights(); got["chat-"+s2] != 50 || got["chat-"+s1] != 50 {
		t.Fatalf("step 2: %v, want 50/50 (the replica ratio)", got)
	}
	three := 3
	v2.Releases[0].Rollout.Step = &three
	w.converge(v2, 4)
	if got := weights(); len(got) != 1 || got["chat-"+s2] != 100 {
		t.Fatalf("done: %v", got)
	}
	if _, ok := w.objs["Service/llm/chat-"+s1]; ok {
		t.Error("the old version's Service stayed")
	}
}

// TestRolloutPrestage: a step that moves replicas to nodes without the
// new model image pulls it there first; nodes that hold it are left out.
func TestRolloutPrestage(t *testing.T) {
	w := newRolloutWorld(t)
	w.prestage = true
	w.converge(rolloutConfig(t, 1, threeSteps()), 0)
	v2 := rolloutConfig(t, 2, threeSteps())
	two := 2
	v2.Releases[0].Rollout.Step, v2.Releases[0].Rollout.Version = &two, Version(&v2.Releases[0])
	digest := "sha256:" + ContentKey(&v2.Releases[0])
	w.digests[ImageRef(v2, &v2.Releases[0])] = digest
	p := w.plan(v2)
	if len(p.Actions) == 0 || p.Actions[0].Type != Prestage {
		t.Fatalf("first action %+v, want a prestage", p.Actions)
	}
	ps := p.Actions[0].Prestage
	var created []string
	for _, a := range p.Actions {
		if a.Type == Create && a.Object.Kind == "Deployment" {
			created = append(created, shardNode(*a.Object))
		}
	}
	sort.Strings(created)
	if strings.Join(ps.Nodes, ",") != strings.Join(created, ",") || len(created) != 2 {
		t.Fatalf("prestage on %v, canary shards created on %v", ps.Nodes, created)
	}
	if !strings.HasSuffix(ps.Image, "@"+digest) || ps.Timeout != 30*time.Minute {
		t.Fatalf("prestage %+v", ps)
	}
	// A node that reports the image already is not pulled on, and the
	// plan says how big the image is.
	w.images[created[0]] = map[string]int64{digest: 3 << 30}
	p = w.plan(v2)
	if p.Actions[0].Type != Prestage || len(p.Actions[0].Prestage.Nodes) != 1 || p.Actions[0].Prestage.Nodes[0] != created[1] {
		t.Fatalf("with the image on %s: %+v", created[0], p.Actions[0])
	}
	if !strings.HasSuffix(p.Actions[0].Subject, " on "+created[1]+" (3Gi each)") {
		t.Errorf("subject %q lacks the size", p.Actions[0].Subject)
	}
	var b strings.Builder
	if err := WriteText(&b, &p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "* prestage "+ImageRef(v2, &v2.Releases[0])) || !strings.Contains(b.String(), "Rollouts:") {
		t.Errorf("text plan:\n%s", b.String())
	}
}

// TestRolloutAdoptsLegacyShards: a release that had no rollout block gets
// one; its shards (named without a version, pods without a version
// label) are its version: they are kept by name and only gain the label.
func TestRolloutAdoptsLegacyShards(t *testing.T) {
	w := newRolloutWorld(t)
	v1 := rolloutConfig(t, 1, nil)
	w.converge(v1, 0)
	names := map[string]bool{}
	for _, o := range w.objs {
		if o.Kind == "Deployment" {
			names[o.Name] = true
		}
	}
	v1r := rolloutConfig(t, 1, threeSteps())
	p := w.plan(v1r)
	for _, a := range p.Actions {
		if a.Type != Update || !names[a.Object.Name] {
			t.Fatalf("adopting: %s %s, want only updates of the shards there are", a.Type, a.Subject)
		}
		for _, c := range a.Changes {
			if !strings.Contains(c.Path, LabelVersion) {
				t.Errorf("%s: %s changed", a.Subject, c.Path)
			}
		}
	}
	if st := p.Releases[0].Rollout; st.Phase != RolloutComplete || st.Stable != "" {
		t.Fatalf("adopting: %+v", st)
	}
}

// TestRolloutImpossibleCanaryKeepsServing: a new version that fits on
// no node (more GPU memory than any has) changes nothing of what serves:
// no canary, no stable shard shrunk, and a warning.
func TestRolloutImpossibleCanaryKeepsServing(t *testing.T) {
	w := newRolloutWorld(t)
	w.converge(rolloutConfig(t, 1, threeSteps()), 0)
	before := w.serving()
	v2 := rolloutConfig(t, 2, threeSteps())
	v2.Releases[0].Resources.GPUMemory = 200 << 30
	p := w.plan(v2)
	for _, a := range p.Actions {
		if a.Object != nil && a.Object.Kind == "Deployment" {
			t.Errorf("impossible canary: %s %s", a.Type, a.Subject)
		}
	}
	if len(p.Warnings) == 0 || !strings.Contains(strings.Join(p.Warnings, "\n"), "cannot be placed") {
		t.Errorf("warnings %q", p.Warnings)
	}
	w.apply(p)
	if got := w.serving(); total(got) != total(before) {
		t.Fatalf("serving %v, was %v", got, before)
	}
}

// TestRolloutsManyAtOnce: 30 releases roll out at once on shared nodes;
// each gets its own canary, and none drops below its replicas.
func TestRolloutsManyAtOnce(t *testing.T) {
	mk := func(digest byte) *spec.Config {
		var b strings.Builder
		b.WriteString("gantry {\n  namespace = \"llm\"\n}\nnode_pool \"a\" {\n  selector = { p = \"a\" }\n  reserve = 2\n}\n")
		for i := 0; i < 12; i++ {
			fmt.Fprintf(&b, "node \"gpu-%02d\" {\n  pool = \"a\"\n  gpus = 16\n  gpu_memory = \"80Gi\"\n}\n", i)
		}
		for i := 0; i < 30; i++ {
			fmt.Fprintf(&b, "release \"r-%02d\" {\n  model {\n    source = \"m.gguf\"\n    format = \"gguf\"\n    digest = \"sha256:%062x%02x\"\n  }\n  runtime {\n    image = \"llama:server\"\n  }\n  replicas = %d\n  resources {\n    gpus = 1\n  }\n  rollout {\n    steps = [{ percent = 50, pause = \"1m\" }, { percent = 100 }]\n  }\n}\n", i, digest, i, 2+i%3)
		}
		return loadSpecs(t, b.String())
	}
	w := newRolloutWorld(t)
	v1, v2 := mk(1), mk(2)
	plan := func(cfg *spec.Config) Plan {
		for i := range cfg.Releases {
			ref := ImageRef(cfg, &cfg.Releases[i])
			if _, ok := w.digests[ref]; !ok {
				w.digests[ref] = "sha256:" + ContentKey(&cfg.Releases[i])
			}
		}
		p, err := Build(*cfg, w.observed(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	servingBy := func() map[string]int {
		out := map[string]int{}
		for _, o := range w.objs {
			if o.Kind == "Deployment" && o.Available != nil {
				out[o.Label(LabelRelease)] += *o.Available
			}
		}
		return out
	}
	for i := 0; i < 4; i++ {
		w.apply(plan(v1))
		w.ready()
	}
	for round := 0; round < 5; round++ {
		p := plan(v2)
		w.apply(p)
		got := servingBy()
		for i := range v2.Releases {
			r := &v2.Releases[i]
			if got[r.Name] < r.ReplicaCount() {
				t.Fatalf("round %d: %s serves %d of %d", round, r.Name, got[r.Name], r.ReplicaCount())
			}
			st := p.Releases[i].Rollout
			if st == nil || st.Canary != Version(r) || st.Stable != Version(&v1.Releases[i]) || st.CanaryReplicas != (r.ReplicaCount()+1)/2 {
				t.Fatalf("round %d: %s rollout %+v", round, r.Name, st)
			}
		}
		w.ready()
	}
	if p := plan(v2); !p.Empty() {
		t.Fatalf("30 canaries at step 1 did not settle: %d actions", len(p.Actions))
	}
}

// TestMovesMakeBeforeBreak: without a rollout block, a node that leaves
// placement (cordoned, tainted, not ready) keeps its shard until the
// replicas replacing it serve; what serves never drops below 4.
func TestMovesMakeBeforeBreak(t *testing.T) {
	w := newRolloutWorld(t)
	w.gone = map[string]bool{}
	cfg := rolloutConfig(t, 1, nil)
	w.converge(cfg, 0)
	// A fifth node, so that a replica has somewhere to go.
	for _, gone := range []string{"gpu-0", "gpu-1"} {
		w.gone = map[string]bool{gone: true}
		cfg5 := rolloutConfig(t, 1, nil)
		cfg5.Nodes = append(cfg5.Nodes, spec.Node{Name: "gpu-9", Pool: "a", GPUs: 2, GPUMemory: 80 << 30})
		p := w.plan(cfg5)
		if s := deploymentSummary(p); s.Add != 1 || s.Destroy != 0 {
			t.Fatalf("%s gone: %+v, want the replacement created and nothing deleted: %+v", gone, s, p.Actions)
		}
		if m := p.Releases[0].Moving; len(m) != 1 || m[0] != gone {
			t.Fatalf("moving %v", m)
		}
		w.apply(p)
		if got := total(w.serving()); got != 4 {
			t.Fatalf("%s gone: %d serve", gone, got)
		}
		// Nothing goes while the replacement does not serve.
		if p := w.plan(cfg5); deploymentSummary(p).Destroy != 0 {
			t.Fatalf("deleted before the replacement serves: %+v", p.Actions)
		}
		w.ready()
		del := false
		for _, a := range w.plan(cfg5).Actions {
			if a.Type == Delete {
				del = true
				if !strings.HasSuffix(a.Reason, ": the node is gone") {
					t.Errorf("delete reason %q", a.Reason)
				}
			}
		}
		if !del {
			t.Errorf("%s gone: no delete once the replacement serves", gone)
		}
		w.converge(cfg5, 4)
		for _, o := range w.objs {
			if o.Kind == "Deployment" && shardNode(o) == gone {
				t.Fatalf("the shard on %s stayed after its replacement served", gone)
			}
		}
		w.gone = nil
		cfg = cfg5
	}
}

// TestMoveThatCannotBePlacedKeepsTheShard: a node goes NotReady and the
// release cannot place its replica anywhere else: the shard on that node
// stays (and the plan says why), whatever its availability.
func TestMoveThatCannotBePlacedKeepsTheShard(t *testing.T) {
	for _, avail := range []bool{true, false} {
		w := newRolloutWorld(t)
		cfg := rolloutConfig(t, 1, nil)
		w.converge(cfg, 0)
		if !avail {
			for id, o := range w.objs {
				zero := 0
				o.Available = &zero
				w.objs[id] = o
			}
		}
		w.gone = map[string]bool{"gpu-2": true}
		p := w.plan(cfg)
		for _, a := range p.Actions {
			if a.Type == Delete || (a.Type == Update && lowersReplicas(a)) {
				t.Errorf("available=%v: %s %s although the replica fits nowhere else", avail, a.Type, a.Subject)
			}
		}
		if p.Releases[0].Unplaced == nil || !strings.Contains(strings.Join(p.Warnings, "\n"), "held") {
			t.Errorf("available=%v: unplaced %+v, warnings %q", avail, p.Releases[0].Unplaced, p.Warnings)
		}
	}
}
