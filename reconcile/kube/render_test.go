package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
)

// renderSpecs has one release per packaging, with everything that shapes a
// pod: args, env, a secret env, resources, a custom port and health path.
const renderSpecs = `
gantry {
  namespace = "llm"
  registry  = "registry.example.com/models"
}

release "chat" {
  model {
    source    = "oci://registry.example.com/sources/llama-3-8b:v1"
    digest    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    format    = "safetensors"
    packaging = "modelpack"
  }
  quantize {
    method = "fp8"
  }
  runtime {
    image       = "vllm/vllm-openai:v0.6.3"
    args        = ["--model", "/models", "--served-model-name", "chat"]
    env         = { VLLM_LOGGING_LEVEL = "INFO" }
    secret_env  = { HF_TOKEN = "hf-token/token" }
  }
  replicas = 3
  resources {
    gpus       = 1
    gpu_memory = "20Gi"
    cpu        = "4"
    memory     = "16Gi"
  }
}

release "coder" {
  model {
    source    = "oci://registry.example.com/sources/coder-7b:v2"
    digest    = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    format    = "gguf"
    packaging = "modelcar"
  }
  runtime {
    image       = "ghcr.io/ggml-org/llama.cpp:server"
    args        = ["--model", "/mnt/models/model.gguf", "--port", "8080", "--n-gpu-layers", "99"]
    port        = 8080
    health_path = "/healthz"
  }
  replicas = 2
  resources {
    gpus = 2
  }
}
`

// rendered renders one release of renderSpecs on two nodes, with a known
// model digest, as the executor does after the push.
func rendered(t *testing.T, release, namespace string) []planner.Object {
	t.Helper()
	cfg := loadConfig(t, map[string]string{"main.hcl": renderSpecs})
	r, ok := cfg.Release(release)
	if !ok {
		t.Fatalf("no release %s", release)
	}
	key := planner.ContentKey(r)
	objs, err := planner.Render(planner.RenderInput{
		Release:   r,
		Namespace: namespace,
		Revision:  "0123456789abcdef0123456789abcdef01234567",
		Model: planner.Model{
			Ref:    planner.ImageRepository(cfg, r.Name) + ":" + planner.ImageTag(key),
			Digest: "sha256:3333333333333333333333333333333333333333333333333333333333333333",
			Key:    key,
		},
		Placement: map[string]int{"gpu-a1": 2, "gpu-b1.example.internal": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct{ release, golden string }{
		{"chat", "modelpack.golden"},
		{"coder", "modelcar.golden"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var buf bytes.Buffer
			for i, o := range rendered(t, tc.release, "llm") {
				if i > 0 {
					buf.WriteString("---\n")
				}
				b, err := yaml.Marshal(o.Manifest)
				if err != nil {
					t.Fatal(err)
				}
				buf.Write(b)
			}
			golden(t, tc.golden, buf.Bytes())
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reconcile/kube -run %s -update)", err, t.Name())
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s (-want +got):\n%s\nrun go test ./reconcile/kube -update if the change is intended", path, d)
	}
}

// TestRenderAcceptedByAPIServer sends every rendered object to the real
// API server as a server-side dry-run apply: validation, defaulting and
// the apply machinery all run, nothing is stored.
func TestRenderAcceptedByAPIServer(t *testing.T) {
	c := cluster(t)
	ns := namespaceName(t)
	createNamespace(t, ns)
	ctx := context.Background()
	for _, release := range []string{"chat", "coder"} {
		for _, o := range rendered(t, release, ns) {
			data, err := json.Marshal(o.Manifest)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.resource(o).Patch(ctx, o.Name, types.ApplyPatchType, data, patchOptions(true, false))
			if err != nil {
				t.Errorf("%s %s: the API server rejects the rendering: %v", release, o.ID(), err)
				continue
			}
			// The server must keep every field Gantry rendered as rendered:
			// a field dropped (a disabled feature gate) or rewritten would
			// show up as a change in every plan.
			if changes := planner.Diff(o.Manifest, got.Object); len(changes) > 0 {
				t.Errorf("%s %s: the server changed rendered fields: %+v", release, o.ID(), changes)
			}
		}
	}
	if rv := resourceVersions(t, ns); len(rv) != 0 {
		t.Errorf("a dry run stored objects: %v", rv)
	}
}
