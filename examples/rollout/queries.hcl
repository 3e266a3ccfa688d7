# Ready-made analysis queries for progressive delivery (the rollout block's
# metric blocks). Copy this file into your specs repository and use the
# locals in a release:
#
#   metric "error_ratio" {
#     query = local.vllm_error_ratio
#     max   = 0.01
#   }
#   metric "ttft_p95" {
#     query               = local.vllm_ttft_p95
#     max_ratio_to_stable = 1.2
#   }
#
# Gantry fills the templates once per version, so the canary is compared
# with the stable version over the same window:
#   {{.Pods}}      a regular expression matching the pods of one version
#   {{.Version}}   the version (also the pods' gantry.dev/version label)
#   {{.Namespace}} and {{.Release}}
# They assume the pods are scraped with their namespace and pod name as the
# labels "namespace" and "pod", as a PodMonitor or the usual
# kubernetes_sd_configs relabelling gives them.
#
# What a gate should watch is what clients see: vLLM's time to first token
# is measured from the request's arrival, so it includes the time the
# request waited in the queue; the queue itself is num_requests_waiting.

locals {
  # vLLM (its OpenAI server exports http_requests_total by handler and
  # status class, and the vllm: histograms).

  # Share of API requests answered with a 5xx.
  vllm_error_ratio = <<-EOT
    sum(rate(http_requests_total{namespace="{{.Namespace}}", pod=~"{{.Pods}}", handler=~"/v1/.*", status="5xx"}[2m]))
    /
    sum(rate(http_requests_total{namespace="{{.Namespace}}", pod=~"{{.Pods}}", handler=~"/v1/.*"}[2m]))
  EOT

  # p95 time to first token, queueing included (seconds).
  vllm_ttft_p95 = <<-EOT
    histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{namespace="{{.Namespace}}", pod=~"{{.Pods}}"}[2m])))
  EOT

  # p95 time between output tokens (seconds).
  vllm_itl_p95 = <<-EOT
    histogram_quantile(0.95, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{namespace="{{.Namespace}}", pod=~"{{.Pods}}"}[2m])))
  EOT

  # p95 end-to-end request latency (seconds).
  vllm_e2e_p95 = <<-EOT
    histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{namespace="{{.Namespace}}", pod=~"{{.Pods}}"}[2m])))
  EOT

  # Requests waiting in the queue, per replica.
  vllm_waiting_per_replica = <<-EOT
    sum(vllm:num_requests_waiting{namespace="{{.Namespace}}", pod=~"{{.Pods}}"})
    /
    count(vllm:num_requests_waiting{namespace="{{.Namespace}}", pod=~"{{.Pods}}"})
  EOT

  # llama.cpp's server (run with --metrics). It has no latency histograms
  # and no request error counter: gate on its queue and throughput, and
  # take errors from the gateway in front of it.

  # Requests deferred (queued: no free slot), per replica.
  llamacpp_deferred_per_replica = <<-EOT
    sum(llamacpp:requests_deferred{namespace="{{.Namespace}}", pod=~"{{.Pods}}"})
    /
    count(llamacpp:requests_deferred{namespace="{{.Namespace}}", pod=~"{{.Pods}}"})
  EOT

  # Generation throughput, tokens per second per replica (a min bound).
  llamacpp_predicted_tps = <<-EOT
    avg(llamacpp:predicted_tokens_seconds{namespace="{{.Namespace}}", pod=~"{{.Pods}}"})
  EOT
}
