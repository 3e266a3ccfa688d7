release "chat" {
  model {
    source = "models/chat-v1"
    format = "safetensors"
  }

  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
