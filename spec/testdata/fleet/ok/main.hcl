# A fleet of three clusters: a staging cluster the daemon runs in, and two
# regions reached by kubeconfig files mounted into the daemon.
gantry {
  namespace     = "llm"
  lease_cluster = "staging"
}

cluster "staging" {
  in_cluster = true
  labels     = { tier = "staging", region = "eu" }
}

cluster "eu-1" {
  kubeconfig      = "/etc/gantry/eu-1.kubeconfig"
  context         = "eu-1-admin"
  weight          = 2
  labels          = { tier = "prod", region = "eu" }
  namespace       = "llm-eu"
  registry_mirror = "mirror.eu.example.com/models"
}

cluster "us-1" {
  kubeconfig = "/etc/gantry/us-1.kubeconfig"
  labels     = { tier = "prod", region = "us" }
}

node_pool "a100" {}

node "gpu-s1" {
  cluster    = "staging"
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

node "gpu-e1" {
  cluster    = "eu-1"
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

node "gpu-u1" {
  cluster    = "us-1"
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}

# Everywhere, two per cluster, in three waves without steps.
release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  replicas_per_cluster = 2
  rollout {
    waves      = [["staging"], ["eu-1"], ["us-1"]]
    wave_pause = "15m" # each wave's analysis
    wave       = 2     # promoted by gantry
    step       = 1
    version    = "3f2a1c9d"
  }
}

# Production only, a total of 5 spread over eu-1 and us-1, canary steps
# in each wave; us-1 is in no wave, so it comes last.
release "embed" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  cluster_selector = { tier = "prod" }
  replicas         = 5
  min_per_cluster  = 1
  max_per_cluster  = 4
  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 100, pause = "30m" }]
    waves = [["eu-1"]]
  }
}

# One named cluster, no rollout.
release "rerank" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }
  clusters = ["us-1"]
}
