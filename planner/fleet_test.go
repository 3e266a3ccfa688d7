package planner

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// fleetWorld is three clusters, each with nodes gpu-0 and gpu-1 (the
// same names in every cluster) of 2 GPUs, and what runs in them.
type fleetWorld struct {
	t           *testing.T
	objs        map[string]Object // cluster + "|" + ID
	digests     map[string]string // image ref -> digest
	unreachable map[string]string
}

var fleetClusters = []string{"eu-1", "eu-2", "us-1"}

func newFleetWorld(t *testing.T) *fleetWorld {
	return &fleetWorld{t: t, objs: map[string]Object{}, digests: map[string]string{}, unreachable: map[string]string{}}
}

// fleetConfig is one release "chat" of 1 GPU per replica over the three
// clusters (eu-2 in namespace "models"), with the model digest byte
// (a new byte is a new version); edit sets the rest.
func fleetConfig(t *testing.T, digestByte byte, edit func(r *spec.Release)) *spec.Config {
	t.Helper()
	src := fmt.Sprintf("gantry {\n  namespace = \"llm\"\n}\nnode_pool \"a\" {\n  selector = { p = \"a\" }\n  reserve = 0\n}\n"+
		"release \"chat\" {\n  model {\n    source = \"m.gguf\"\n    format = \"gguf\"\n    digest = \"sha256:%064x\"\n  }\n  runtime {\n    image = \"llama:server\"\n    port = 8080\n  }\n  replicas = 6\n  resources {\n    gpus = 1\n  }\n}\n", digestByte)
	cfg := loadSpecs(t, src)
	cfg.Revision = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range fleetClusters {
		cl := spec.Cluster{Name: c, Kubeconfig: "/etc/gantry/" + c + ".kubeconfig", Labels: map[string]string{"region": c[:2]}}
		if c == "eu-2" {
			cl.Namespace = "models"
		}
		cfg.Clusters = append(cfg.Clusters, cl)
		for i := 0; i < 2; i++ {
			cfg.Nodes = append(cfg.Nodes, spec.Node{Name: fmt.Sprintf("gpu-%d", i), Cluster: c, Pool: "a", GPUs: 2, GPUMemory: 80 << 30})
		}
	}
	if edit != nil {
		edit(&cfg.Releases[0])
	}
	return cfg
}

func (w *fleetWorld) observed(cfg *spec.Config) Observed {
	obs := Observed{Artifacts: map[string]Artifact{}, Unreachable: w.unreachable}
	for _, n := range StaticNodes(cfg) {
		if w.unreachable[n.Cluster] == "" {
			obs.Nodes = append(obs.Nodes, n)
		}
	}
	for ref, d := range w.digests {
		obs.Artifacts[ref] = Artifact{Ref: ref, Digest: d}
	}
	for _, k := range sortedKeys(w.objs) {
		if c, _, _ := strings.Cut(k, "|"); w.unreachable[c] == "" {
			obs.Objects = append(obs.Objects, w.objs[k])
		}
	}
	return obs
}

// plan plans with the release's image pushed.
func (w *fleetWorld) plan(cfg *spec.Config) Plan {
	w.t.Helper()
	for i := range cfg.Releases {
		if ref := ImageRef(cfg, &cfg.Releases[i]); w.digests[ref] == "" {
			w.digests[ref] = "sha256:" + ContentKey(&cfg.Releases[i])
		}
	}
	p, err := Build(*cfg, w.observed(cfg))
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// apply carries out the object actions, in their clusters, and makes
// every Deployment available; it refuses an action in an unreachable
// cluster or one without a cluster.
func (w *fleetWorld) apply(p Plan) {
	w.t.Helper()
	for _, a := range p.Actions {
		if a.Type.IsBuild() {
			continue
		}
		if a.Cluster == "" || a.Object == nil || a.Object.Cluster != a.Cluster {
			w.t.Fatalf("object action without its cluster: %+v", a)
		}
		if w.unreachable[a.Cluster] != "" {
			w.t.Fatalf("action in unreachable cluster %s: %s %s", a.Cluster, a.Type, a.Subject)
		}
		k := a.Cluster + "|" + a.Object.ID()
		switch a.Type {
		case Create, Update:
			o := *a.Object
			if o.Kind == "Deployment" {
				n := o.Replicas()
				o.Available = &n
			}
			w.objs[k] = o
		case Delete:
			delete(w.objs, k)
		}
	}
}

func (w *fleetWorld) converge(cfg *spec.Config) Plan {
	w.t.Helper()
	for i := 0; i < 10; i++ {
		p := w.plan(cfg)
		if p.Empty() {
			return p
		}
		w.apply(p)
	}
	w.t.Fatal("no convergence in 10 rounds")
	return Plan{}
}

// replicas is the live replicas of the release per cluster and version.
func (w *fleetWorld) replicas() map[string]map[string]int {
	out := map[string]map[string]int{}
	for k, o := range w.objs {
		if o.Kind != "Deployment" {
			continue
		}
		c, _, _ := strings.Cut(k, "|")
		if out[c] == nil {
			out[c] = map[string]int{}
		}
		out[c][versionOf(o)] += o.Replicas()
	}
	return out
}

func TestFleetSpreadsOneReleaseOverClusters(t *testing.T) {
	w := newFleetWorld(t)
	cfg := fleetConfig(t, 1, nil)
	p := w.plan(cfg)
	if got := p.Releases[0].Placement.Total(); got != 6 {
		t.Fatalf("placed %d replicas, want 6: %v", got, p.Releases[0].Placement)
	}
	for id := range p.Releases[0].Placement {
		if c, n := schedule.SplitID(id); !slices.Contains(fleetClusters, c) || !strings.HasPrefix(n, "gpu-") {
			t.Errorf("placement key %q is not CLUSTER/NODE", id)
		}
	}
	namespaces := map[string]string{}
	for _, a := range p.Actions {
		if a.Type == Create {
			namespaces[a.Cluster] = a.Object.Namespace
		}
	}
	if want := map[string]string{"eu-1": "llm", "eu-2": "models", "us-1": "llm"}; fmt.Sprint(namespaces) != fmt.Sprint(want) {
		t.Errorf("namespaces by cluster = %v, want %v", namespaces, want)
	}
	if len(p.Releases[0].Clusters) != 3 {
		t.Fatalf("cluster plans = %+v", p.Releases[0].Clusters)
	}
	var text bytes.Buffer
	if err := WriteText(&text, &p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## cluster eu-1", "## cluster eu-2", "## cluster us-1", "eu-2: 2 replicas on gpu-0×1, gpu-1×1"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text plan lacks %q:\n%s", want, text.String())
		}
	}
	// The same Service and shard names live in every cluster, apart.
	w.apply(p)
	if got := w.converge(cfg); !got.Empty() {
		t.Fatalf("not converged: %+v", got.Actions)
	}
	for _, c := range fleetClusters {
		if n := w.replicas()[c][Version(&cfg.Releases[0])]; n != 2 {
			t.Errorf("cluster %s runs %d replicas, want 2 (%v)", c, n, w.replicas())
		}
	}
}

func TestFleetReplicasPerClusterAndBounds(t *testing.T) {
	w := newFleetWorld(t)
	one := 1
	cfg := fleetConfig(t, 1, func(r *spec.Release) {
		r.Replicas, r.ReplicasPerCluster, r.Clusters = nil, &one, []string{"eu-1", "us-1"}
	})
	w.converge(cfg)
	got := w.replicas()
	if got["eu-1"][Version(&cfg.Releases[0])] != 1 || got["us-1"][Version(&cfg.Releases[0])] != 1 || got["eu-2"] != nil {
		t.Fatalf("replicas by cluster = %v, want 1 in eu-1 and us-1, none in eu-2", got)
	}
	// The release leaves us-1: its shards there go, and eu-1 keeps its own.
	cfg = fleetConfig(t, 1, func(r *spec.Release) {
		r.Replicas, r.ReplicasPerCluster, r.Clusters = nil, &one, []string{"eu-1"}
	})
	p := w.plan(cfg)
	for _, a := range p.Actions {
		if a.Cluster != "us-1" {
			t.Errorf("unexpected change outside us-1: %s %s in %s", a.Type, a.Subject, a.Cluster)
		}
	}
	w.converge(cfg)
	if got := w.replicas(); got["us-1"] != nil || got["eu-1"][Version(&cfg.Releases[0])] != 1 {
		t.Fatalf("replicas by cluster = %v", got)
	}
}

// TestFleetUnreachableClusterIsLeftAlone: a cluster that cannot be
// observed gets no action (no apply, no prune) while the others go on;
// once it answers it converges too.
func TestFleetUnreachableClusterIsLeftAlone(t *testing.T) {
	w := newFleetWorld(t)
	two := 2
	perCluster := func(r *spec.Release) { r.Replicas, r.ReplicasPerCluster = nil, &two }
	w.converge(fleetConfig(t, 1, perCluster))
	before := w.objs["us-1|Deployment/llm/chat-gpu-0"]
	w.unreachable["us-1"] = "connection refused"

	// A new version, and the release "chat" everywhere else: us-1 keeps
	// what it runs, and apply refuses any action there.
	cfg := fleetConfig(t, 2, perCluster)
	p := w.plan(cfg)
	var cp *ClusterPlan
	for i := range p.Releases[0].Clusters {
		if c := &p.Releases[0].Clusters[i]; c.Name == "us-1" {
			cp = c
		}
	}
	if cp == nil || cp.Unreachable != "connection refused" {
		t.Fatalf("us-1's plan = %+v, want unreachable", cp)
	}
	if !slices.ContainsFunc(p.Warnings, func(s string) bool { return strings.Contains(s, "cluster us-1 is unreachable") }) {
		t.Errorf("warnings = %q", p.Warnings)
	}
	w.converge(cfg)
	v2 := Version(&cfg.Releases[0])
	if got := w.replicas(); got["eu-1"][v2] != 2 || got["eu-2"][v2] != 2 {
		t.Fatalf("reachable clusters did not converge: %v", got)
	}
	// Removed from the specs while us-1 is down: nothing is pruned there.
	empty := fleetConfig(t, 2, perCluster)
	empty.Releases = nil
	p = w.plan(empty)
	for _, a := range p.Actions {
		if a.Cluster == "us-1" {
			t.Fatalf("prune in the unreachable cluster: %s", a.Subject)
		}
	}
	if fmt.Sprint(w.objs["us-1|Deployment/llm/chat-gpu-0"].Manifest) != fmt.Sprint(before.Manifest) {
		t.Fatal("us-1's shard changed while unreachable")
	}
	// It answers again: it converges to the specs.
	delete(w.unreachable, "us-1")
	w.converge(cfg)
	if got := w.replicas(); got["us-1"][v2] != 2 || len(got["us-1"]) != 1 {
		t.Fatalf("us-1 did not converge once back: %v", got)
	}
}

// TestFleetSpreadFailsOver: a spread release places its total on the
// clusters that answer.
func TestFleetSpreadFailsOver(t *testing.T) {
	w := newFleetWorld(t)
	cfg := fleetConfig(t, 1, nil)
	w.converge(cfg)
	w.unreachable["eu-2"] = "timeout"
	p := w.plan(cfg)
	if got := p.Releases[0].Placement.Total(); got != 6 {
		t.Fatalf("placed %d, want 6 over eu-1 and us-1: %v", got, p.Releases[0].Placement)
	}
	for id := range p.Releases[0].Placement {
		if c, _ := schedule.SplitID(id); c == "eu-2" {
			t.Fatalf("placed on the unreachable cluster: %v", p.Releases[0].Placement)
		}
	}
	w.converge(cfg)
}

func TestFleetMirror(t *testing.T) {
	w := newFleetWorld(t)
	cfg := fleetConfig(t, 1, nil)
	cfg.Clusters[1].RegistryMirror = "mirror.eu-2:5000/models"
	p := w.plan(cfg)
	var mirrors []Action
	for _, a := range p.Actions {
		if a.Type == Mirror {
			mirrors = append(mirrors, a)
		}
		if a.Type == Create && a.Object.Kind == "Deployment" {
			refs := fmt.Sprint(a.Object.Manifest["spec"])
			if a.Cluster == "eu-2" != strings.Contains(refs, "mirror.eu-2:5000/models/chat:ck-") {
				t.Errorf("cluster %s shard's image refs: %s", a.Cluster, refs)
			}
		}
	}
	main := ImageRef(cfg, &cfg.Releases[0])
	if len(mirrors) != 1 || mirrors[0].Cluster != "eu-2" || mirrors[0].Mirror.From != main ||
		mirrors[0].Mirror.To != "mirror.eu-2:5000/models/chat:"+ImageTag(ContentKey(&cfg.Releases[0])) || mirrors[0].Mirror.Digest != w.digests[main] {
		t.Fatalf("mirror actions = %+v", mirrors)
	}
	// The mirror holds the copy: no mirror action.
	w.digests[mirrors[0].Mirror.To] = w.digests[main]
	for _, a := range w.plan(cfg).Actions {
		if a.Type == Mirror {
			t.Fatalf("mirror again: %+v", a)
		}
	}
}

func wavesRollout() *spec.Rollout {
	return &spec.Rollout{Traffic: "service", PrestageTimeout: 30 * time.Minute,
		Waves: [][]string{{"eu-1"}, {"eu-2", "us-1"}},
		Steps: []spec.RolloutStep{{Replicas: 1, Pause: 10 * time.Minute}, {Percent: 100, Pause: 5 * time.Minute}}}
}

// TestFleetWaves: a new version goes wave by wave; an abort in wave 2
// restores every cluster, wave 1's included.
func TestFleetWaves(t *testing.T) {
	w := newFleetWorld(t)
	two := 2
	at := func(b byte, wave, step int, ver string) *spec.Config {
		return fleetConfig(t, b, func(r *spec.Release) {
			r.Replicas, r.ReplicasPerCluster = nil, &two
			r.Rollout = wavesRollout()
			if wave > 0 {
				r.Rollout.Wave, r.Rollout.Step, r.Rollout.Version = &wave, &step, ver
			}
		})
	}
	v1cfg := at(1, 0, 0, "")
	w.converge(v1cfg)
	v1 := Version(&v1cfg.Releases[0])
	v2 := Version(&at(2, 0, 0, "").Releases[0])

	check := func(name string, cfg *spec.Config, want map[string]map[string]int, phase string, wave, step int) {
		t.Helper()
		p := w.converge(cfg)
		got := w.replicas()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: replicas = %v, want %v", name, got, want)
		}
		st := p.Releases[0].Rollout
		if st == nil || st.Phase != phase || st.Wave != wave || st.Step != step || st.Waves != 2 {
			t.Fatalf("%s: rollout state = %+v", name, st)
		}
	}
	// Wave 1, step 1: one canary in eu-1, the rest untouched.
	check("wave 1 step 1", at(2, 1, 1, v2), map[string]map[string]int{
		"eu-1": {v1: 1, v2: 1}, "eu-2": {v1: 2}, "us-1": {v1: 2}}, RolloutProgressing, 1, 1)
	// Wave 1, last step: eu-1 runs v2; the wave gate waits for analysis.
	cfg := at(2, 1, 2, v2)
	check("wave 1 step 2", cfg, map[string]map[string]int{
		"eu-1": {v2: 2}, "eu-2": {v1: 2}, "us-1": {v1: 2}}, RolloutProgressing, 1, 2)
	if next := w.plan(cfg).Releases[0].Rollout.Next; !strings.Contains(next, "wave 2 (eu-2, us-1)") {
		t.Errorf("next = %q", next)
	}
	// Wave 2, step 1: a canary in each of eu-2 and us-1; eu-1 stays.
	check("wave 2 step 1", at(2, 2, 1, v2), map[string]map[string]int{
		"eu-1": {v2: 2}, "eu-2": {v1: 1, v2: 1}, "us-1": {v1: 1, v2: 1}}, RolloutProgressing, 2, 1)
	// Abort: the specs go back to v1 (the position still names v2):
	// every cluster restores v1, eu-1 included.
	p := w.plan(at(1, 2, 1, v2))
	if p.Releases[0].Rollout.Phase != RolloutRestoring {
		t.Fatalf("after the abort: %+v", p.Releases[0].Rollout)
	}
	w.converge(at(1, 2, 1, v2))
	if got := w.replicas(); fmt.Sprint(got) != fmt.Sprint(map[string]map[string]int{"eu-1": {v1: 2}, "eu-2": {v1: 2}, "us-1": {v1: 2}}) {
		t.Fatalf("after the abort: %v", got)
	}
}

// TestFleetImpossibleSpecKeepsServing: a new version that asks for more
// replicas than a cluster can hold changes nothing that serves, in any
// cluster.
func TestFleetImpossibleSpecKeepsServing(t *testing.T) {
	w := newFleetWorld(t)
	two, five := 2, 5
	w.converge(fleetConfig(t, 1, func(r *spec.Release) { r.Replicas, r.ReplicasPerCluster = nil, &two }))
	before := fmt.Sprint(w.replicas())
	// Five replicas of one GPU in a cluster of 4 GPUs, with a new model.
	p := w.plan(fleetConfig(t, 2, func(r *spec.Release) { r.Replicas, r.ReplicasPerCluster = nil, &five }))
	if p.Releases[0].Unplaced == nil {
		t.Fatalf("an impossible spec placed everything: %v", p.Releases[0].Placement)
	}
	for _, a := range p.Actions {
		if a.Type == Delete || (a.Type == Update && !onlyReplicas(a)) || (a.Type == Update && lowersReplicas(a)) {
			t.Errorf("an impossible spec lowers what serves: %s %s in %s (%s)", a.Type, a.Subject, a.Cluster, a.Reason)
		}
	}
	w.apply(p)
	if got := fmt.Sprint(w.replicas()); got != before {
		// Only additions are allowed; nothing that served may go.
		for c, vs := range w.replicas() {
			for v, n := range vs {
				if n < 2 && strings.Contains(before, v) {
					t.Errorf("cluster %s: version %s serves %d, fewer than before (%s)", c, v, n, before)
				}
			}
		}
	}
}
