release "gguf-as-safetensors" {
  model {
    source = "models/chat.gguf"
    format = "safetensors"
  }
  quantize {
    method = "int8"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "gguf-ok" {
  model {
    source = "models/chat.gguf" # the same file: read once
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
}

release "safetensors-as-gguf" {
  model {
    source = "models/ckpt"
    format = "gguf"
  }
  quantize {
    method = "q4_k_m"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
}

release "text-as-gguf" {
  model {
    source = "models/notes.txt"
    format = "gguf"
  }
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
  }
}

release "no-weights" {
  model {
    source = "models/empty-dir"
    format = "safetensors"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "remote" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "safetensors" # not checked: cannot be read offline
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
