node_pool "a100" {}

node "gpu-1" {
  pool       = "h100"
  gpus       = 8
  gpu_memory = "80Gi"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  placement {
    pools = ["a100", "l40s"]
  }
}
