# A GGUF release gated by llama.cpp's own llama-perplexity, run as a
# Kubernetes Job (gantry run --target kube) from the llama.cpp "full"
# image, with the candidate model image mounted at /models. The Job has no
# copy of the specs repository: the script is inline. It scores a fixed
# text (or PPL_TEXT_URL, if the pod can reach it) and writes
# {"perplexity": …} to $GANTRY_METRICS, the container's termination
# message, which the daemon reads.
#
# The ratio bound compares the candidate with the build that serves now:
# the daemon runs the same Job on the serving build's image (once; results
# are cached by build and evaluator).
#
# For KL divergence instead, llama-perplexity needs the F16 model's logits
# (--kl-divergence-base) of the same text: compute them once from the
# source, publish the file where the pod can fetch it (KLD_BASE_URL), and
# run `llama-perplexity -m "$GANTRY_MODEL" --kl-divergence-base base.kld
# --kl-divergence`; it prints "Mean    KLD:" and "Same top p:".
release "chat-ppl" {
  model {
    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
  }

  quantize {
    method = "q4_k_m"
  }

  gate {
    eval "perplexity" {
      image   = "ghcr.io/ggml-org/llama.cpp:full"
      command = ["/bin/sh", "-ec", <<-EOT
        if [ -n "$PPL_TEXT_URL" ]; then
          python3 -c 'import sys, urllib.request; open("/tmp/text.txt", "wb").write(urllib.request.urlopen(sys.argv[1]).read())' "$PPL_TEXT_URL"
        else
          for i in 1 2 3 4 5 6 7 8; do cat >> /tmp/text.txt <<'TEXT'
        The harbour town woke slowly. Fishing boats came back before dawn, their holds full
        of silver herring, and the market opened as the first gulls circled the church tower.
        In winter the storms closed the port for weeks; people mended nets and told stories
        about the lighthouse keeper who had seen a ship of glass, and waited for the spring.
        TEXT
          done
        fi
        /app/llama-perplexity -m "$GANTRY_MODEL" -f /tmp/text.txt -c "$PPL_CTX" -ngl 99 > /tmp/ppl.log 2>&1 || { tail -n 20 /tmp/ppl.log >&2; exit 1; }
        ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' /tmp/ppl.log)
        [ -n "$ppl" ] || { tail -n 20 /tmp/ppl.log >&2; exit 1; }
        printf '{"perplexity": %s}\n' "$ppl" > "$GANTRY_METRICS"
      EOT
      ]
      env     = { PPL_CTX = "512" }
      max     = { perplexity = 20 }
      max_ratio_to_baseline = { perplexity = 1.02 }
      timeout = "30m"
      cpu     = "4"
      memory  = "16Gi"
      gpus    = 1
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
