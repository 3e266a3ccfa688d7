# A GGUF release gated on its KL divergence from the F16 source, computed
# by llama.cpp (through node-llama-cpp) on the daemon's machine. Copy this
# block into your specs repository, with kl.mjs as evals/kl.mjs, and run
# `npm install node-llama-cpp@3.21.1` at the repository's root (Node
# resolves it from the script's directory upwards).
#
# kl.mjs loads the reference (KL_REFERENCE, the source the release
# quantizes) and the candidate ($GANTRY_MODEL), runs both over a fixed
# text and prints
#   {"kl_divergence": …, "top1_agreement": …, "perplexity": …,
#    "reference_perplexity": …, "tokens": …}
# the measures of llama-perplexity --kl-divergence.
release "chat-kl" {
  model {
    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
  }

  quantize {
    method = "q4_k_m"
  }

  gate {
    eval "kl" {
      command = ["node", "evals/kl.mjs"]
      env     = { KL_REFERENCE = "models/tiny-llama-f16.gguf", KL_CHUNKS = "8" }
      max     = { kl_divergence = 0.05 }
      min     = { top1_agreement = 0.9 }
      # The candidate may be at most 2% more perplexed than what serves.
      max_ratio_to_baseline = { perplexity = 1.02 }
      timeout = "20m"
    }
  }

  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"
    args  = ["--model", "/models/model.gguf", "--port", "8080"]
    port  = 8080
  }

  replicas = 1

  resources {
    gpus       = 1
    gpu_memory = "10Gi"
  }
}
