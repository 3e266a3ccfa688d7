# One replica in every cluster, rolled out wave by wave: staging first,
# then eu-1, then us-1. Each wave runs the steps; the next wave starts once
# the analysis of the wave's last step passed, and each wave's completion
# is a commit. An abort in any wave restores every wave, in one commit.
release "tiny-chat" {
  model {
    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
  }
  quantize {
    method = "q8_0"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
    args  = ["--model", "/models/model.gguf", "--port", "8080"]
    port  = 8080
  }
  replicas_per_cluster = 2
  resources {
    gpus = 1
  }
  rollout {
    waves = [["staging"], ["eu-1"], ["us-1"]]
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100, pause = "10m" }]
    analysis {
      metric "deferred_per_replica" {
        query = "avg(llamacpp:requests_deferred{namespace=\"{{.Namespace}}\", pod=~\"{{.Pods}}\"})"
        max   = 4
      }
    }
  }
}

# Four replicas in the production clusters (by label), spread by weighted
# least connections over all their nodes, at least one in each.
release "tiny-chat-prod" {
  model {
    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
  }
  quantize {
    method = "q4_0"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
    args  = ["--model", "/models/model.gguf", "--port", "8080"]
    port  = 8080
  }
  cluster_selector = { tier = "prod" }
  replicas         = 4
  min_per_cluster  = 1
  resources {
    gpus = 1
  }
}
