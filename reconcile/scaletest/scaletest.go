package scaletest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Methods are the GGUF methods the scale repository's releases cycle
// through: n releases share one model file and four content keys.
var Methods = []string{"q8_0", "q4_0", "q4_k_m", "q6_k"}

// Repo writes a spec repository with n releases of the GGUF model file
// model (one copy, shared), cycling over Methods, and n/2 static nodes (at
// least 2) in two pools, 100 releases a file. Every release fits. It
// returns the repository's directory, a temporary one of tb.
func Repo(tb testing.TB, n int, model string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(model)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "models", "tiny.gguf"), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("gantry {\n  namespace = \"llm\"\n}\n\n")
	b.WriteString("node_pool \"big\" {\n  selector = { \"nvidia.com/gpu.product\" = \"NVIDIA-A100-SXM4-80GB\" }\n  weight   = 2\n}\n\n")
	b.WriteString("node_pool \"small\" {\n  selector = { \"nvidia.com/gpu.product\" = \"NVIDIA-L4\" }\n  weight   = 1\n}\n")
	write := func(name string) {
		tb.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
		b.Reset()
	}
	write("gantry.hcl")
	nodes := max(2, n/2)
	for i := 0; i < nodes; i++ {
		pool, product, mem := "big", "NVIDIA-A100-SXM4-80GB", "80Gi"
		if i%2 == 1 {
			pool, product, mem = "small", "NVIDIA-L4", "24Gi"
		}
		fmt.Fprintf(&b, "node \"gpu-%05d\" {\n  pool        = %q\n  gpus        = 8\n  gpu_memory  = %q\n  gpu_product = %q\n  connections = %d\n}\n\n",
			i, pool, mem, product, i%7)
	}
	write("nodes.hcl")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `release "r-%05d" {
  model {
    source = "models/tiny.gguf"
    format = "gguf"
  }
  quantize {
    method = %q
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
    args  = ["--model", "/models/model.gguf", "--port", "8080"]
    port  = 8080
    env   = { RELEASE_INDEX = "%d" }
  }
  replicas = 1
  resources {
    gpus       = 1
    gpu_memory = "16Gi"
  }
  placement {
    pools = ["big", "small"]
  }
}

`, i, Methods[i%len(Methods)], i)
		if i%100 == 99 || i == n-1 {
			write(fmt.Sprintf("releases-%03d.hcl", i/100))
		}
	}
	return dir
}
