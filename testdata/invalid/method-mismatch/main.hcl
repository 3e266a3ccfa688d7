release "gguf-int4" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  quantize {
    method = "int4"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "st-q4km" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "safetensors"
  }
  quantize {
    method     = "q4_k_m"
    group_size = 64
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "onnx" {
  model {
    source = "https://example.com/model.onnx"
    format = "onnx"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
