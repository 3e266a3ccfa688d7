# The static inventory of local mode: each node names its cluster. In a
# cluster, Gantry reads the GPU nodes from the Kubernetes API instead.
node_pool "l4" {
  selector = { "nvidia.com/gpu.product" = "NVIDIA-L4" }
  reserve  = 1
}

node "gpu-1" {
  cluster    = "staging"
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24Gi"
}

# Node names repeat across clusters: a node is (cluster, node).
node "gpu-1" {
  cluster    = "eu-1"
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24Gi"
}

node "gpu-2" {
  cluster    = "eu-1"
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24Gi"
}

node "gpu-1" {
  cluster    = "us-1"
  pool       = "l4"
  gpus       = 4
  gpu_memory = "24Gi"
}
