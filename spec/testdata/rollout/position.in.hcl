# Rollout positions, as people write them and as promotions leave them.
release "fresh" {
  model {
    source = "models/a"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
  replicas = 4

  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100 }] # canary first
    # no position yet: the first promotion adds it
  }
}

release "moving" {
  model {
    source = "models/b"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
  replicas = 4

  rollout {
    steps = [
      { replicas = 1, pause = "10m" }, // one pod
      { percent = 50, pause = "30m" },
      { percent = 100 },
    ]
    step    = 1          # promoted by gantry
    version = "00000000" /* the old canary */
  }
}

release "oneline" {
  model {
    source = "models/c"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
  rollout { steps = [{ percent = 100 }] }
}

release "half" {
  model {
    source = "models/d"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
	rollout {
		steps = [{ percent = 100 }]
		step = 1
	}
}

release "norollout" {
  model {
    source = "models/e"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
}
