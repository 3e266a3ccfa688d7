release "tiny-chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  replicas = 4

    rollout {
  steps = [
      {replicas=1,pause="10m"}, # one pod first
         { percent = 50, pause = "30m" },
    {percent=100}
  ]
      traffic="gateway"
  gateway = "infra/inference" # NAMESPACE/NAME
    prestage_timeout="30m"
      analysis {
    interval="1m"
        failure_limit=2
  metric "error_ratio" {
          query="sum(rate(x{pod=~\"{{.Pods}}\"}[1m]))"
      max=0.01
        }
        /* the stable version is the baseline */
        metric "ttft_p95" {
  query = "histogram_quantile(0.95, ttft{pod=~\"{{.Pods}}\"})"
          max_ratio_to_stable=1.2
        }
      }
  step=2
      version="3f2a1c9d" // written by gantry
    }
}
