release "chat" {
  model {
    source = "models/x.gguf
  }
}
