package planner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

const rev = "0123456789abcdef0123456789abcdef01234567"

func quickstart(t *testing.T) spec.Config {
	t.Helper()
	cfg, diags := spec.Load(context.Background(), filepath.Join("..", "examples", "quickstart"), spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	cfg.Revision = rev
	return *cfg
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got):\n%s", path, d)
	}
}

func build(t *testing.T, cfg spec.Config, obs planner.Observed) planner.Plan {
	t.Helper()
	if obs.Nodes == nil {
		obs.Nodes = planner.StaticNodes(&cfg)
	}
	p, err := planner.Build(cfg, obs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// world is a fake cluster and registry: it carries out a plan the way the
// executor will, storing objects through the dir target's YAML files so
// that values make the same round trip as in local mode.
type world struct {
	t         *testing.T
	target    dirtarget.Target
	artifacts map[string]planner.Artifact
}

func newWorld(t *testing.T) *world {
	return &world{t: t, target: dirtarget.Target{Dir: t.TempDir()}, artifacts: map[string]planner.Artifact{}}
}

func (w *world) observed(cfg spec.Config) planner.Observed {
	objs, err := w.target.Observe(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return planner.Observed{Objects: objs, Nodes: planner.StaticNodes(&cfg), Artifacts: w.artifacts}
}

// apply pushes (a made-up digest from the key), then writes objects
// rendered with the known digest, as the executor does.
func (w *world) apply(cfg spec.Config, p planner.Plan) {
	ctx := context.Background()
	for _, a := range p.Actions {
		if a.Type == planner.Push {
			w.artifacts[a.Subject] = planner.Artifact{Ref: a.Subject, Digest: "sha256:" + a.ContentKey}
		}
	}
	obs := w.observed(cfg)
	again := build(w.t, cfg, obs) // now with digests known
	for _, a := range again.Actions {
		switch a.Type {
		case planner.Create, planner.Update:
			if err := w.target.Put(ctx, *a.Object); err != nil {
				w.t.Fatal(err)
			}
		case planner.Delete:
			if err := w.target.Delete(ctx, *a.Object); err != nil {
				w.t.Fatal(err)
			}
		}
	}
}

func TestGoldenRenderings(t *testing.T) {
	p := build(t, quickstart(t), planner.Observed{})
	var text, js, md bytes.Buffer
	if err := planner.WriteText(&text, &p, planner.TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteJSON(&js, &p); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteMarkdown(&md, &p, 0); err != nil {
		t.Fatal(err)
	}
	golden(t, "quickstart.txt", text.String())
	golden(t, "quickstart.json", js.String())
	golden(t, "quickstart.md", md.String())

	var color bytes.Buffer
	planner.WriteText(&color, &p, planner.TextOptions{Color: true})
	if !strings.Contains(color.String(), "\x1b[32m+\x1b[0m") {
		t.Error("no color on a terminal")
	}
	if strings.Contains(text.String(), "\x1b[") {
		t.Error("color without a terminal")
	}
	// The plan file round-trips.
	back, err := planner.ReadJSON(&js)
	if err != nil {
		t.Fatal(err)
	}
	if back.ObservedDigest != p.ObservedDigest || len(back.Actions) != len(p.Actions) {
		t.Errorf("round trip lost data")
	}
}

func TestBuildOrderAndCounts(t *testing.T) {
	p := build(t, quickstart(t), planner.Observed{})
	var got []string
	for _, a := range p.Actions {
		got = append(got, fmt.Sprintf("%s %s %s", a.Type, a.Release, a.Subject))
	}
	key := planner.ContentKey(&quickstart(t).Releases[0])
	want := []string{
		"quantize tiny-chat models/tiny-llama",
		"gate tiny-chat tiny-chat",
		"push tiny-chat gantry.local/models/tiny-chat:" + planner.ImageTag(key),
		"create tiny-chat Service llm/tiny-chat",
		// tiny-chat: 3 replicas over a100 (weight 2) and l4 (weight 1),
		// max 2 per node. Scores = connections / weight:
		// gpu-a1 12/2 = 6, gpu-a2 4/2 = 2, gpu-l1 0/1 = 0.
		// 1st -> l1 (0 -> 1), 2nd -> l1 (1 < 2; -> 2, now at max 2),
		// 3rd -> a2 (2 < 6).
		"create tiny-chat Deployment llm/tiny-chat-gpu-a2",
		"create tiny-chat Deployment llm/tiny-chat-gpu-l1",
		"quantize tiny-chat-gguf models/tiny-llama-f16.gguf",
		"push tiny-chat-gguf gantry.local/models/tiny-chat-gguf:" + planner.ImageTag(planner.ContentKey(&quickstart(t).Releases[1])),
		"create tiny-chat-gguf Service llm/tiny-chat-gguf",
		// gguf needs 2 GPUs of 40Gi: a100 only. a2 (4+1)/2 = 2.5 < a1 6.
		"create tiny-chat-gguf Deployment llm/tiny-chat-gguf-gpu-a2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("actions (-want +got):\n%s", d)
	}
	s := p.Summary()
	if s != (planner.Summary{Add: 5, Quantize: 2, Gate: 1, Push: 2}) {
		t.Errorf("summary %+v", s)
	}
}

func TestUnchangedWorldIsEmpty(t *testing.T) {
	cfg := quickstart(t)
	w := newWorld(t)
	w.apply(cfg, build(t, cfg, w.observed(cfg)))
	p := build(t, cfg, w.observed(cfg))
	if !p.Empty() {
		var b bytes.Buffer
		planner.WriteText(&b, &p, planner.TextOptions{})
		t.Fatalf("second plan not empty:\n%s", b.String())
	}
	// A new Git revision alone changes nothing either.
	cfg.Revision = strings.Repeat("f", 40)
	if p := build(t, cfg, w.observed(cfg)); !p.Empty() {
		t.Fatalf("revision change alone gave %d actions", len(p.Actions))
	}
}

func TestScaleUpKeepsReplicas(t *testing.T) {
	cfg := quickstart(t)
	w := newWorld(t)
	w.apply(cfg, build(t, cfg, w.observed(cfg)))

	five := 5
	cfg.Releases[0].Replicas = &five
	p := build(t, cfg, w.observed(cfg))
	var got []string
	for _, a := range p.Actions {
		got = append(got, fmt.Sprintf("%s %s %s", a.Type, a.Subject, a.Reason))
	}
	// Kept: l1×2 (at max_per_node), a2×1. Scores now: a1 12/2 = 6,
	// a2 (4 + 1 tiny-chat + 1 fp8)/2 = 3, l1 full. 4th -> a2 (-> 3.5,
	// now at max 2), 5th -> a1. Actions in node order: a1 create, a2
	// update.
	if len(p.Actions) != 2 || p.Actions[0].Type != planner.Create || p.Actions[0].Subject != "Deployment llm/tiny-chat-gpu-a1" ||
		p.Actions[1].Type != planner.Update || p.Actions[1].Subject != "Deployment llm/tiny-chat-gpu-a2" {
		t.Fatalf("scale 3 -> 5: %q", got)
	}
	if c := p.Actions[1].Changes; len(c) != 1 || c[0].Path != "spec.replicas" {
		t.Errorf("changes %+v", c)
	}
	for _, a := range p.Actions {
		if a.Type == planner.Delete {
			t.Errorf("scaling up deleted %s", a.Subject)
		}
	}
}

func TestDriftAndPrune(t *testing.T) {
	cfg := quickstart(t)
	w := newWorld(t)
	w.apply(cfg, build(t, cfg, w.observed(cfg)))

	// Somebody runs kubectl scale on a shard.
	obs := w.observed(cfg)
	for i, o := range obs.Objects {
		if o.Name == "tiny-chat-gpu-l1" {
			o.Manifest["spec"].(map[string]any)["replicas"] = float64(7)
			o.Manifest["status"] = map[string]any{"readyReplicas": float64(7)} // not Gantry's field
			obs.Objects[i] = o
		}
	}
	p := build(t, cfg, obs)
	if len(p.Actions) != 1 || p.Actions[0].Type != planner.Update {
		t.Fatalf("drift: %+v", p.Actions)
	}
	if d := cmp.Diff([]planner.FieldChange{{Path: "spec.replicas", Old: float64(7), New: int64(2)}}, p.Actions[0].Changes); d != "" {
		t.Errorf("drift changes (-want +got):\n%s", d)
	}

	// Removing a release prunes its objects, last.
	cfg.Releases = cfg.Releases[:1]
	p = build(t, cfg, w.observed(cfg))
	var deletes []string
	for _, a := range p.Actions {
		if a.Type == planner.Delete {
			deletes = append(deletes, a.Subject+": "+a.Reason)
		}
	}
	want := []string{
		"Deployment llm/tiny-chat-gguf-gpu-a2: release tiny-chat-gguf was removed from the repository",
		"Service llm/tiny-chat-gguf: release tiny-chat-gguf was removed from the repository",
	}
	if d := cmp.Diff(want, deletes); d != "" {
		t.Errorf("prune (-want +got):\n%s", d)
	}
	if s := p.Summary(); s.Destroy != 2 || s.Add+s.Change != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestUnmanagedObjectsIgnored(t *testing.T) {
	cfg := quickstart(t)
	obs := planner.Observed{Objects: []planner.Object{{
		APIVersion: "apps/v1", Kind: "Deployment", Namespace: "llm", Name: "someone-else",
		Manifest: map[string]any{"metadata": map[string]any{"name": "someone-else", "labels": map[string]any{"gantry.dev/release": "tiny-chat"}}},
	}}}
	for _, a := range build(t, cfg, obs).Actions {
		if a.Subject == "Deployment llm/someone-else" {
			t.Fatalf("planned %s on an unmanaged object", a.Type)
		}
	}
}

func TestSecretsNeverRendered(t *testing.T) {
	const secret = "hf_SECRETVALUE123"
	cfg := quickstart(t)
	w := newWorld(t)
	cfg.Releases[0].Runtime.Env = map[string]string{"HF_TOKEN": "hf_OLDSECRET", "LOG": "info"}
	w.apply(cfg, build(t, cfg, w.observed(cfg)))
	cfg.Releases[0].Runtime.Env = map[string]string{"HF_TOKEN": secret, "LOG": "debug"}
	p := build(t, cfg, w.observed(cfg))
	var out bytes.Buffer
	planner.WriteText(&out, &p, planner.TextOptions{})
	planner.WriteJSON(&out, &p)
	planner.WriteMarkdown(&out, &p, 0)
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), "hf_OLDSECRET") {
		t.Fatalf("a secret reached a rendered plan:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `"info" -> "debug"`) {
		t.Errorf("non-secret env change hidden:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "(sensitive)") {
		t.Error("no redaction marker")
	}
}

func TestUnplaceableWarns(t *testing.T) {
	cfg := quickstart(t)
	n := 40
	cfg.Releases[1].Replicas = &n
	p := build(t, cfg, planner.Observed{})
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "tiny-chat-gguf") || !strings.Contains(p.Warnings[0], "cannot be placed") {
		t.Fatalf("warnings %q", p.Warnings)
	}
	// a100 nodes: 8 GPUs - 1 reserve = 7 free, 2 per replica -> 3 each;
	// gpu-a2 also holds one tiny-chat replica (1 GPU): 6 left -> 3.
	// 3 + 3 = 6 placed, 34 unplaced.
	if rp := p.Releases[1]; rp.Unplaced == nil || rp.Unplaced.Count != 34 {
		t.Fatalf("unplaced %+v", rp.Unplaced)
	}
}

func TestMarkdownStaysUnderLimit(t *testing.T) {
	cfg := quickstart(t)
	base := cfg.Releases[0]
	cfg.Releases = nil
	for i := 0; i < 400; i++ {
		r := base
		r.Name = fmt.Sprintf("r%03d", i)
		cfg.Releases = append(cfg.Releases, r)
	}
	p := build(t, cfg, planner.Observed{})
	var md bytes.Buffer
	if err := planner.WriteMarkdown(&md, &p, 0); err != nil {
		t.Fatal(err)
	}
	if md.Len() > planner.MarkdownLimit {
		t.Fatalf("markdown is %d characters", md.Len())
	}
	if !strings.Contains(md.String(), "were cut to stay under GitHub's") {
		t.Error("no note about the cut")
	}
	if !strings.Contains(md.String(), "<details><summary><code>r000</code>") {
		t.Error("first release lost its details")
	}
	if !strings.Contains(md.String(), "more warnings; run `gantry plan` to see them all") {
		t.Error("warnings not capped")
	}
}

func TestJSONSchemaStable(t *testing.T) {
	p := build(t, quickstart(t), planner.Observed{})
	var js bytes.Buffer
	planner.WriteJSON(&js, &p)
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format_version", "revision", "observed_digest", "releases", "actions"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON plan lacks %q", k)
		}
	}
}

func TestRuntimeImagePinnedByDigest(t *testing.T) {
	cfg := quickstart(t)
	const dig = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	p := build(t, cfg, planner.Observed{Images: map[string]string{"vllm/vllm-openai:v0.6.3": dig}})
	var pinned, tagged int
	for _, a := range p.Actions {
		if a.Type != planner.Create || a.Object.Kind != "Deployment" {
			continue
		}
		b, _ := json.Marshal(a.Object.Manifest)
		switch {
		case strings.Contains(string(b), `"image":"vllm/vllm-openai:v0.6.3@`+dig+`"`):
			pinned++
		case strings.Contains(string(b), `"image":"ghcr.io/ggml-org/llama.cpp:server"`):
			tagged++ // not resolved: used as written
		}
	}
	if pinned != 2 || tagged != 1 {
		t.Fatalf("pinned %d, tagged %d", pinned, tagged)
	}
}

// TestLongNodeNames: node names may be 253 characters, label values only
// 63. The label holds a unique cut, the annotation the full name, and the
// pods are pinned by the node's hostname label.
func TestLongNodeNames(t *testing.T) {
	cfg := quickstart(t)
	long := strings.Repeat("gpu-node-in-rack-", 5) + "a1.cluster.example.com" // 107 characters
	nodes := planner.StaticNodes(&cfg)
	for i := range nodes {
		if nodes[i].Name == "gpu-a2" {
			nodes[i].Name, nodes[i].Hostname = long, "gpu-a2-host"
		}
	}
	w := newWorld(t)
	for _, r := range cfg.Releases {
		ref := planner.ImageRef(&cfg, &r)
		w.artifacts[ref] = planner.Artifact{Ref: ref, Digest: "sha256:" + planner.ContentKey(&r)}
	}
	obs := w.observed(cfg)
	obs.Nodes = nodes
	p := build(t, cfg, obs)
	found := false
	for _, a := range p.Actions {
		if a.Type != planner.Create || a.Object.Kind != "Deployment" || a.Object.Annotation(planner.AnnotationNode) != long {
			continue
		}
		found = true
		v := a.Object.Label(planner.LabelNode)
		if len(v) > 63 || v != planner.NodeLabelValue(long) {
			t.Errorf("label value %q (%d chars)", v, len(v))
		}
		if len(a.Object.Name) > 63 {
			t.Errorf("name %q is %d characters", a.Object.Name, len(a.Object.Name))
		}
		b, _ := json.Marshal(a.Object.Manifest)
		if !strings.Contains(string(b), `"nodeSelector":{"kubernetes.io/hostname":"gpu-a2-host"}`) {
			t.Errorf("not pinned by hostname: %s", b)
		}
	}
	if !found {
		t.Fatal("nothing placed on the long-named node")
	}
	// Applied and observed back, the world is unchanged: the annotation
	// maps the shard back to its node.
	for _, a := range p.Actions {
		if err := w.target.Put(context.Background(), *a.Object); err != nil {
			t.Fatal(err)
		}
	}
	obs = w.observed(cfg)
	obs.Nodes = nodes
	if again := build(t, cfg, obs); !again.Empty() {
		t.Fatalf("re-plan moved things: %d actions", len(again.Actions))
	}
}

// TestSavedPlanWithUnplacedReplicas: rejection reasons are saved as kind
// and text, and a saved plan reads back with the same messages.
func TestSavedPlanWithUnplacedReplicas(t *testing.T) {
	cfg := quickstart(t)
	n := 40
	cfg.Releases[1].Replicas = &n
	p := build(t, cfg, planner.Observed{})
	var js bytes.Buffer
	if err := planner.WriteJSON(&js, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"kind": "InsufficientResource"`) {
		t.Errorf("no reason kind in the JSON")
	}
	back, err := planner.ReadJSON(&js)
	if err != nil {
		t.Fatal(err)
	}
	got, want := back.Releases[1].Unplaced.String(), p.Releases[1].Unplaced.String()
	if got != want || back.Releases[1].Unplaced.Rejected[0].Reason.Message() != p.Releases[1].Unplaced.Rejected[0].Reason.Message() {
		t.Errorf("read back %q, want %q", got, want)
	}
}
