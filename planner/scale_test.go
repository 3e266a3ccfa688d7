package planner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/spec"
)

// fleet loads n releases (replicas cycling 1..3) over n/2 nodes (at least
// 4) in two pools, sharing one tiny GGUF file.
func fleet(tb testing.TB, n int) *spec.Config {
	tb.Helper()
	root := tb.TempDir()
	var b strings.Builder
	b.WriteString("gantry {\n  namespace = \"llm\"\n}\n")
	b.WriteString("node_pool \"big\" {\n  selector = { p = \"big\" }\n  weight = 2\n}\nnode_pool \"small\" {\n  selector = { p = \"small\" }\n}\n")
	for i := 0; i < max(4, n/2); i++ {
		pool := []string{"big", "small"}[i%2]
		fmt.Fprintf(&b, "node \"gpu-%05d\" {\n  pool = %q\n  gpus = 8\n  gpu_memory = \"80Gi\"\n}\n", i, pool)
	}
	methods := []string{"q8_0", "q4_0", "q4_k_m", "q6_k"}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "release \"r-%05d\" {\n  model {\n    source = \"m.gguf\"\n    format = \"gguf\"\n  }\n  quantize {\n    method = %q\n  }\n  runtime {\n    image = \"llama:server\"\n    port = 8080\n  }\n  replicas = %d\n  resources {\n    gpus = 1\n    gpu_memory = \"16Gi\"\n  }\n}\n",
			i, methods[i%4], 1+i%3)
	}
	if err := os.WriteFile(filepath.Join(root, "main.hcl"), []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m.gguf"), []byte("GGUF\x03\x00\x00\x00"), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, diags := spec.Load(context.Background(), root, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		tb.Fatal(diags.Error())
	}
	cfg.Revision = "0123456789abcdef0123456789abcdef01234567"
	return cfg
}

// applied is the world after carrying out a plan of cfg: every image
// pushed (a made-up digest) and every object created.
func applied(tb testing.TB, cfg *spec.Config) Observed {
	tb.Helper()
	obs := Observed{Nodes: StaticNodes(cfg), Artifacts: map[string]Artifact{}}
	for i := range cfg.Releases {
		ref := ImageRef(cfg, &cfg.Releases[i])
		obs.Artifacts[ref] = Artifact{Ref: ref, Digest: fmt.Sprintf("sha256:%064x", i)}
	}
	p, err := Build(*cfg, obs)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range p.Actions {
		if a.Type == Create {
			obs.Objects = append(obs.Objects, *a.Object)
		}
	}
	return obs
}

func TestRenderedIDsMatchRender(t *testing.T) {
	cfg := fleet(t, 8)
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		placement := map[string]int{"gpu-00001": 2, "Weird_Node.name": 1, "gpu-00000": 0}
		objs, err := Render(RenderInput{Release: r, Namespace: "llm", Model: Model{Ref: "x", Digest: UnknownDigest, Key: "k"}, Placement: placement})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.ID())
		}
		if d := cmp.Diff(got, renderedIDs(r.Name, "llm", placement)); d != "" {
			t.Errorf("%s: Render IDs (-render +renderedIDs):\n%s", r.Name, d)
		}
	}
}

// TestReleaseActionsMatchBuild: what the executor plans for one release
// once its push is done is what a whole new Build gives for it, in a
// world with shards to create, scale, move and delete, and objects of a
// removed release.
func TestReleaseActionsMatchBuild(t *testing.T) {
	cfg := fleet(t, 12)
	obs := applied(t, cfg)
	// Change the world: drop r-00000's objects, scale every shard of
	// r-00001 to 5, add a shard of r-00002 on a node it does not use and
	// the Service of a release that is gone.
	var objs []Object
	for _, o := range obs.Objects {
		switch o.Label(LabelRelease) {
		case "r-00000":
			continue
		case "r-00001":
			if o.Kind == "Deployment" {
				o = Object{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Manifest: cloneJSON(o.Manifest).(map[string]any)}
				o.Manifest["spec"].(map[string]any)["replicas"] = int64(5)
			}
		case "r-00002":
			if o.Kind == "Deployment" {
				extra := Object{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: "r-00002-elsewhere", Manifest: cloneJSON(o.Manifest).(map[string]any)}
				extra.Manifest["metadata"].(map[string]any)["name"] = extra.Name
				extra.Manifest["metadata"].(map[string]any)["annotations"].(map[string]any)[AnnotationNode] = "elsewhere"
				objs = append(objs, extra)
			}
		case "r-00003":
			gone := Object{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: "gone", Manifest: cloneJSON(o.Manifest).(map[string]any)}
			gone.Manifest["metadata"].(map[string]any)["name"] = "gone"
			gone.Manifest["metadata"].(map[string]any)["labels"].(map[string]any)[LabelRelease] = "gone"
			objs = append(objs, gone)
		}
		objs = append(objs, o)
	}
	obs.Objects = objs
	full, err := Build(*cfg, obs)
	if err != nil {
		t.Fatal(err)
	}
	// Add: r-00000's objects; change: r-00001's shards; destroy: the
	// shard elsewhere and the Service of the release that is gone.
	if s := full.Summary(); s.Add == 0 || s.Change == 0 || s.Destroy < 2 {
		t.Fatalf("the changed world plans %+v; the test would test little", s)
	}
	prepared := Prepare(cfg, obs)
	for i := range cfg.Releases {
		r := &cfg.Releases[i]
		var want []Action
		for _, a := range full.Actions {
			if a.Release == r.Name {
				want = append(want, a)
			}
		}
		got, err := prepared.ReleaseActions(r.Name, obs.Artifacts[ImageRef(cfg, r)].Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: (-Build +ReleaseActions):\n%s", r.Name, d)
		}
	}
}

func cloneJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = cloneJSON(e)
		}
		return l
	}
	return v
}

// BenchmarkPlanBuild plans 10,000 releases (20,000 shards and Services
// live, nothing to change) over 5,000 nodes.
func BenchmarkPlanBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cfg := fleet(b, n)
			obs := applied(b, cfg)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := Build(*cfg, obs)
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Actions) != 0 {
					b.Fatalf("%d actions on an applied world", len(p.Actions))
				}
			}
		})
	}
}

// BenchmarkPlanBuildRollouts plans the 1,000-release fleet of
// BenchmarkPlanBuild with a rollout block on every release, in sync
// ("steady") and with every release's canary at step 1 ("canary": a new
// model digest, the old version's shards live), against the same fleet
// without rollout blocks, in the same run.
func BenchmarkPlanBuildRollouts(b *testing.B) {
	const n = 1000
	withRollout := func(cfg *spec.Config) {
		for i := range cfg.Releases {
			cfg.Releases[i].Rollout = &spec.Rollout{Traffic: "service", Steps: []spec.RolloutStep{{Percent: 50, Pause: time.Minute}, {Percent: 100}}}
		}
	}
	run := func(b *testing.B, cfg *spec.Config, obs Observed, wantEmpty bool) {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p, err := Build(*cfg, obs)
			if err != nil {
				b.Fatal(err)
			}
			if wantEmpty != (len(p.Actions) == 0) {
				b.Fatalf("%d actions", len(p.Actions))
			}
		}
	}
	b.Run("none", func(b *testing.B) {
		cfg := fleet(b, n)
		run(b, cfg, applied(b, cfg), true)
	})
	b.Run("steady", func(b *testing.B) {
		cfg := fleet(b, n)
		withRollout(cfg)
		run(b, cfg, applied(b, cfg), true)
	})
	b.Run("canary", func(b *testing.B) {
		cfg := fleet(b, n)
		withRollout(cfg)
		obs := applied(b, cfg)
		for i := range cfg.Releases {
			cfg.Releases[i].Model.Digest = fmt.Sprintf("sha256:%064x", i+1)
		}
		run(b, cfg, obs, false)
	})
}
