release "chat" {
  model {
    source = "oci://x@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"

  replicas = 2
}
