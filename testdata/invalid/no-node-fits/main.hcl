# a100: 8 GPUs of 80Gi per node, one held back: 7 per replica at most.
node_pool "a100" {
  reserve = 1
}

# mixed: one node with many small GPUs, one with few big ones; no node has
# both.
node_pool "mixed" {}

node_pool "empty" {}

node "gpu-a1" {
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

node "gpu-a2" {
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

node "gpu-many" {
  pool       = "mixed"
  gpus       = 8
  gpu_memory = "24Gi"
}

node "gpu-big" {
  pool       = "mixed"
  gpus       = 2
  gpu_memory = "80Gi"
}

release "eight" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  resources {
    gpus = 8
  }
  placement {
    pools = ["a100"]
  }
}

release "sixteen" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  resources {
    gpus       = 16
    gpu_memory = "40Gi"
  }
}

release "seven-fit" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  resources {
    gpus       = 7
    gpu_memory = "80Gi"
  }
  placement {
    pools = ["a100"]
  }
}

release "both" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  resources {
    gpus       = 4
    gpu_memory = "80Gi"
  }
  placement {
    pools = ["mixed"]
  }
}

release "nowhere" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
  resources {
    gpus = 1
  }
  placement {
    pools = ["empty"]
  }
}
