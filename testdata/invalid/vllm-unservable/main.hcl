# int4 settings vLLM cannot load: a group size its kernels do not serve,
# and a skip that keeps q_proj dense but quantizes k_proj and v_proj
# (vLLM fuses them into qkv_proj, one scheme for all three).
release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "safetensors"
  }
  quantize {
    method     = "int4"
    group_size = 256
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}

release "chat-skip" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "safetensors"
  }
  quantize {
    method = "int4"
    skip   = ["model.layers.0.self_attn.q_proj"]
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
}
