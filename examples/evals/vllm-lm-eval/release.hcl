# A safetensors release gated by EleutherAI's lm-evaluation-harness on
# vLLM, run as a Kubernetes Job (gantry run --target kube) with the
# candidate model image mounted at /models. The image is vLLM's with
# lm_eval added (see README.md):
#
#   FROM vllm/vllm-openai:v0.6.3
#   RUN pip install --no-cache-dir "lm_eval[vllm]==0.4.5"
#
# The tasks' datasets come from the Hugging Face Hub (HF_HOME caches
# them), so the pod needs to reach it, or a mirror (HF_ENDPOINT).
# lm_eval writes results_*.json; the script turns the accuracy of each
# task into metrics TASK_acc and TASK_err (1 - accuracy) and writes
# {"hellaswag_acc": …, "hellaswag_err": …, …} to $GANTRY_METRICS.
release "chat-lm-eval" {
  model {
    source = "models/tiny-llama"
    format = "safetensors"
  }

  quantize {
    method     = "int4"
    group_size = 128
  }

  gate {
    eval "lm-eval" {
      image   = "ghcr.io/example/vllm-lm-eval:v0.6.3"
      command = ["/bin/sh", "-ec", <<-EOT
        lm_eval --model vllm \
          --model_args "pretrained=$GANTRY_MODEL_DIR,dtype=auto,gpu_memory_utilization=0.8,max_model_len=2048" \
          --tasks "$TASKS" --limit "$LIMIT" --batch_size auto --output_path /tmp/lm-eval >&2
        python3 - <<'PY' > "$GANTRY_METRICS"
        import glob, json
        out = {}
        for p in glob.glob("/tmp/lm-eval/**/results_*.json", recursive=True):
            for task, r in json.load(open(p))["results"].items():
                for k, v in r.items():
                    if k.startswith("acc,") and isinstance(v, (int, float)):
                        out[task + "_acc"] = v
                        out[task + "_err"] = 1 - v
        print(json.dumps(out))
        PY
      EOT
      ]
      env = { TASKS = "hellaswag,arc_easy", LIMIT = "500", HF_HOME = "/tmp/hf" }
      min = { hellaswag_acc = 0.3, arc_easy_acc = 0.4 }
      # A ratio bound is an upper bound: put it on the error rate. The
      # candidate may make at most 5% more errors than what serves.
      max_ratio_to_baseline = { hellaswag_err = 1.05, arc_easy_err = 1.05 }
      timeout = "1h"
      cpu     = "8"
      memory  = "32Gi"
      gpus    = 1
    }
  }

  runtime {
    image = "vllm/vllm-openai:v0.6.3"
    args  = ["--model", "/models", "--served-model-name", "chat-lm-eval"]
    port  = 8000
  }

  replicas = 1

  resources {
    gpus       = 1
    gpu_memory = "20Gi"
  }
}
