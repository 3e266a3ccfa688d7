# Previous revision.
release "other" {
  model {
    source = "models/other-OLD"
    format = "safetensors"
  }
  runtime { image = "vllm/vllm-openai:OLD" }
}

release "chat" {
  model {
    source = "models/chat-v1"
    format    = "safetensors" # hand-aligned in the old revision
  }

  quantize {
    method     = "int4"
    group_size = 128
  }

  runtime {
    image = local.vllm_image
    args  = ["--model", "/models"]
  }

  replicas = 2
}
