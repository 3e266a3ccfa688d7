# Current revision: a new image, a new quantization, new args.
release "chat" {
  model {
    source = "models/chat-v2"
    format = "safetensors"
  }

  quantize {
    method = "int8" # try 8-bit
  }

  runtime {
    image = "vllm/vllm-openai:v0.7.0"
    args  = ["--model", "/models", "--max-model-len", "8192"]
  }

  replicas = 4 # the autoscaler's, kept

  autoscale {
    query  = "sum(x)"
    target = 8
    min    = 1
    max    = 6
  }
}

release "other" {
  model {
    source = "models/other"
    format = "safetensors"
  }
  runtime { image = "vllm/vllm-openai:v0.7.0" }
}
