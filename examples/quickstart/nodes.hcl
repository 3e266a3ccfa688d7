# Two pools of GPU nodes. A node belongs to a pool by its labels; weight says
# how much load the pool takes, and reserve holds GPUs back on every node so
# that a rolling update always has room for one surge pod.
node_pool "a100" {
  selector = { "nvidia.com/gpu.product" = "NVIDIA-A100-SXM4-80GB" }
  weight   = 2
  reserve  = 1
}

node_pool "l4" {
  selector = { "nvidia.com/gpu.product" = "NVIDIA-L4" }
  weight   = 1
}

# The static inventory local mode places replicas on when there is no
# cluster. connections is the live load weighted least connections uses.
node "gpu-a1" {
  pool        = "a100"
  gpus        = 8
  gpu_memory  = "80Gi"
  gpu_product = "NVIDIA-A100-SXM4-80GB"
  connections = 12
}

node "gpu-a2" {
  pool        = "a100"
  gpus        = 8
  gpu_memory  = "80Gi"
  gpu_product = "NVIDIA-A100-SXM4-80GB"
  connections = 4
}

node "gpu-l1" {
  pool        = "l4"
  gpus        = 4
  gpu_memory  = "24Gi"
  gpu_product = "NVIDIA-L4"
  connections = 0
}
