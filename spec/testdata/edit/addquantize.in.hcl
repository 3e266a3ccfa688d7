release "chat" {
  model {
    source = "models/chat-v2"
    format = "safetensors"
  }

  runtime {
    image = "vllm/vllm-openai:v0.7.0"
  }
  replicas = 2
}
