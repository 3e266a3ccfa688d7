# Rollouts that decode but cannot run.
release "backwards" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  replicas = 4

  rollout {
    steps   = [{ percent = 50, weight = 10 }, { replicas = 4, pause = "20s" }, { percent = 25, pause = "1h" }]
    traffic = "service"
    gateway = "infra/inference"

    analysis {
      interval      = "30s"
      failure_limit = -1

      metric "error_ratio" {
        query = "sum(rate(errors{pod=~\"{{.Pod}}\"}[1m]))"
        min   = 0.5
        max   = 0.01
      }
      metric "error_ratio" {
        query               = "sum(rate(x[1m]))"
        max_ratio_to_stable = 0
      }
      metric "TTFT" {
        query = ""
      }
    }

    step    = 4
    version = "HEAD"
  }
}

release "gateway" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }

  rollout {
    steps            = [{ percent = 100 }]
    traffic          = "gateway"
    prestage_timeout = "forever"
    analysis {}
    version = "3f2a1c9d"
  }
}
