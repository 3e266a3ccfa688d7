node_pool "l4" {
  weight  = 0
  reserve = -1
}

node "gpu-1" {
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24Gi"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
    port  = 70000
  }
  replicas = -2
  resources {
    gpus       = 1
    gpu_memory = "80Gi"
  }
  autoscale {
    query  = "sum(up)"
    target = 0
    min    = 5
    max    = 2
  }
}
