# Hand-aligned attributes and comments everywhere.
release "a" {
  model {
    source = "models/a.gguf" # the f16 export
    format = "gguf"
  }
  runtime { image = "llama:1" }

  replicas    = 3 # pinned by hand
  /* block comment */ # trailing
}

release "b" {
  model {
    source = "models/b.gguf"
    format = "gguf"
  }
  runtime {
    image = "llama:1"
  }
  # no replicas: the default of 1
}
