# Steps that do not decode: each is reported where it is written.
release "steps" {
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
      { replica = 1, pause = "10m" },   # a typo
      { percent = 50, pause = "30" },   # no unit
      { replicas = 1, percent = 10 },   # both
      { pause = "5m" },                 # neither
      { percent = 100.5, weight = 200 },
      "all at once",
    ]
  }
}
