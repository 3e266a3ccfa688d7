# Wave positions, as people write them and as wave promotions leave them.
release "fresh" {
  model {
    source = "models/a"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
  replicas_per_cluster = 2

  rollout {
    waves = [["staging"], ["eu-1"], ["eu-2", "us-1"]] # staging first
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
      { percent = 100, pause = "30m" },
    ]
    waves = [
      ["staging"], # a wave of its own
      ["eu-1"],
    ]
    wave    = 1          # promoted by gantry
    step    = 2          # the last step of the wave
    version = "00000000" /* the old canary */
  }
}

release "oneline" {
  model {
    source = "models/c"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
  rollout { waves = [["eu-1"]] }
}

release "half" {
  model {
    source = "models/d"
    format = "safetensors"
  }
  runtime { image = "vllm:1" }
	rollout {
		waves = [["eu-1"]]
		step = 1
	}
}
