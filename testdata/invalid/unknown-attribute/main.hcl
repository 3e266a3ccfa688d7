gantry {
  namespce = "llm"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  replica = 3
}
