release "chat" {
  model {
    source = "models/chat-v1"
    format = "safetensors"
  }
  quantize {
    method = "int4"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
