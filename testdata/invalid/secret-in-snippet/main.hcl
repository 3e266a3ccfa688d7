variable "db_url" {
  default = "postgres://app:pw_PLANTED_URL@db.internal/chat"
}

variable "hf_token" {
  default = "hf_PLANTED_VAR"
}

locals {
  api_key = "sk_PLANTED_LOCAL"
}

release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image     = "vllm/vllm-openai:v0.6.3"
    API_TOKEN = "tok_PLANTED_ATTR"
    port      = var.db_url
  }
  replicas = local.api_key
}

release "other" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
  }
  replicas = var.hf_token
}
