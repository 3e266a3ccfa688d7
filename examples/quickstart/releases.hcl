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

# The same model in FP8 as a canary on the big GPUs.
release "tiny-chat-fp8" {
  model {
    source = "models/tiny-llama"
    format = "safetensors"
  }

  quantize {
    method = "fp8"
  }

  runtime {
    image = local.vllm_image
    args  = ["--model", "/models", "--served-model-name", "tiny-chat-fp8"]
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
    query     = "sum(rate(vllm:request_failure_total{release=\"{{.Release}}\"}[5m])) / sum(rate(vllm:request_success_total{release=\"{{.Release}}\"}[5m]))"
    threshold = 0.05
    window    = "30m"
  }
}
