# The chat model, quantized to 4-bit weights for vLLM.
release "tiny-chat" {
  model {
    source = "models/tiny-llama"
    format = "safetensors"
  }

  quantize {
    method     = "int4"
    group_size = 128
  }

  gate {
    max_error = 0.12 # relative RMSE over all quantized weights
  }

  runtime {
    image = local.vllm_image
    args  = ["--model", "/models", "--served-model-name", "tiny-chat"]
    port  = 8000
    env   = merge(local.common_env, { VLLM_LOGGING_LEVEL = "INFO" })
  }

  replicas = 3

  resources {
    gpus       = 1
    gpu_memory = "20Gi"
    cpu        = "4"
    memory     = "16Gi"
  }

  placement {
    pools        = ["a100", "l4"]
    max_per_node = 2
  }

  autoscale {
    query    = "sum(vllm:num_requests_running{namespace=\"{{.Namespace}}\", release=\"{{.Release}}\"})"
    target   = 8
    min      = 2
    max      = 6
    cooldown = "5m"
  }
}

# The same model as GGUF, 4-bit K-quants, served by llama.cpp on the big GPUs.
release "tiny-chat-gguf" {
  model {
    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
  }

  quantize {
    method = "q4_k_m"
  }

  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
    args  = ["--model", "/models/model.gguf", "--port", "8080", "--n-gpu-layers", "99"]
    port  = 8080
    env   = local.common_env
  }

  replicas = 1

  resources {
    gpus       = 2
    gpu_memory = "40Gi"
  }

  placement {
    pools = ["a100"]
  }

  rollback {
    query     = "sum(rate(llamacpp:requests_failed_total{release=\"{{.Release}}\"}[5m])) / sum(rate(llamacpp:requests_processing{release=\"{{.Release}}\"}[5m]))"
    threshold = 0.05
    window    = "30m"
  }
}
