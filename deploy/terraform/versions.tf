terraform {
  # strcontains() and optional object attributes need 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    # Helm provider 3.x: `kubernetes = { ... }` is an attribute and `set` a
    # list (2.x used blocks).
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.30, < 4.0"
    }
  }
}
