# A fleet of three clusters: one repository releases into all of them.
# `gantry run --once` on this directory renders each cluster's objects into
# .gantry/objects/<cluster>; with `--target kube` (or target = "kube") Gantry
# reaches each cluster through its kubeconfig instead.
gantry {
  namespace = "llm"
  # The leader election Lease of the daemon lives in this cluster.
  lease_cluster = "eu-1"
}

# A cluster block says how to reach the cluster (a kubeconfig path and a
# context, or in_cluster = true), and never holds credentials itself.
cluster "staging" {
  kubeconfig = "/etc/gantry/clusters/staging.kubeconfig"
  labels     = { tier = "staging", region = "eu" }
}

cluster "eu-1" {
  kubeconfig = "/etc/gantry/clusters/prod.kubeconfig"
  context    = "eu-1"
  weight     = 2 # its nodes take twice the load of a weight-1 cluster's
  labels     = { tier = "prod", region = "eu" }
  # Pods here pull model images from this mirror; Gantry copies each image
  # into it by digest (the same manifest), never by rebuilding.
  registry_mirror = "mirror.eu-1.example.com/models"
}

cluster "us-1" {
  kubeconfig = "/etc/gantry/clusters/prod.kubeconfig"
  context    = "us-1"
  namespace  = "models"
  labels     = { tier = "prod", region = "us" }
}
