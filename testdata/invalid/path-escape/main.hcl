release "up" {
  model {
    source = "../../secrets/model.gguf"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "absolute" {
  model {
    source = "/etc/passwd"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "missing" {
  model {
    source = "models/nope.gguf"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
