node_pool "l4" {}

node "gpu-1" {
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24GB"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  resources {
    cpu    = "40Gi"
    memory = "lots"
  }
  autoscale {
    query    = "sum(up)"
    target   = 4
    min      = 1
    max      = 3
    cooldown = "5 minutes"
  }
  rollback {
    query     = "sum(up)"
    threshold = 0.1
    window    = "-10m"
  }
}
