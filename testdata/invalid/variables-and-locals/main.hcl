variable "region" {
  type = string
}

variable "replicas" {
  type    = number
  default = "many"
}

locals {
  a = local.b
  b = local.a
  c = local.nope
}
