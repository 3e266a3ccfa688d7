# Every kind of fleet mistake once; testdata/fleet/invalid.golden is what
# gantry validate prints for it.
gantry {
  lease_cluster = "stagin"
}

cluster "staging" {
  in_cluster = true
  context    = "admin"
  labels     = { tier = "staging" }
}

cluster "eu-1" {
  kubeconfig      = "/etc/gantry/eu-1.kubeconfig"
  weight          = 0
  namespace       = "LLM"
  registry_mirror = "https://mirror.example.com/models"
  labels          = { tier = "prod" }
}

cluster "us-1" {
  # pasted by mistake: Load refuses it, and nothing prints the token
  kubeconfig = "apiVersion: v1\nusers:\n- user:\n    token: planted-token-do-not-print\n"
  labels     = { tier = "prod" }
}

node_pool "a100" {}

node "gpu-1" {
  cluster    = "eu-2"
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  clusters             = ["staging", "eu-1", "us-2"]
  replicas_per_cluster = 2
  replicas             = 4
  rollout {
    waves      = [["staging"], ["eu-1", "staging"], []]
    wave_pause = "forever"
    wave       = 5
  }
}

release "embed" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  cluster_selector = { tier = "prod" }
  replicas         = 1
  min_per_cluster  = 1
  rollout {
    steps      = [{ percent = 100 }]
    waves      = [["staging"]]
    wave_pause = "5m"
  }
}
