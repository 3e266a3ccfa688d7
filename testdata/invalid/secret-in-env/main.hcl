release "chat" {
  model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "vllm/vllm-openai:v0.6.3"
    env   = { "bad name" = "x", DB_PASSWORD = "pw_PLANTED_ENV", DATABASE_URL = "postgres://app:pw_PLANTED_DSN@db/x" }
    args  = ["--api-key", "sk_PLANTED_ARG"]
  }
  replicas = -1 # was: API_TOKEN = "tok_PLANTED_COMMENT", commented out but still in Git
}
