# Settings for the whole repository.
gantry {
  namespace = "llm"
  # No registry: model images go to the local OCI layout (.gantry/oci).
  # Set registry = "registry.example.com/models" to push to a registry.
}

variable "environment" {
  type    = string
  default = "staging"
}

locals {
  vllm_image = "vllm/vllm-openai:v0.6.3"
  common_env = {
    GANTRY_ENVIRONMENT = var.environment
  }
}
