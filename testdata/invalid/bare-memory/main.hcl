node_pool "a100" {}

node "gpu-1" {
  pool       = "a100"
  gpus       = 8
  gpu_memory = 80
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "safetensors"
  }
  quantize {
    method = "int8"
    runner = "job"
    memory = "64"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  resources {
    gpus       = 1
    gpu_memory = "40"
    memory     = 17179869184
  }
}
