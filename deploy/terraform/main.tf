# Example: install Veltrix with the Helm chart from this repository.
#
#   cd deploy/terraform
#   terraform init
#   terraform apply -var 'storage_zones=["us-east-1a","us-east-1b","us-east-1c"]' \
#                   -var 'etcd_endpoints=["https://etcd.example.internal:2379"]' \
#                   -var cert_manager_enabled=true -var cert_manager_ca_secret=veltrix-ca \
#                   -var 'cert_manager_client_principals=["admin"]'
#
# TLS and auth are on by default: each role needs a certificate Secret
# (cert_manager_enabled makes them; see deploy/README.md, "Running secured").
#
# The storage nodes' volumes use the "local-storage" class by default: create
# the class and the local PersistentVolumes (one per storage node, on the
# nodes' NVMe) first, or set storage_class_name.

provider "kubernetes" {
  config_path    = pathexpand(var.kubeconfig_path)
  config_context = var.kube_context
}

provider "helm" {
  kubernetes = {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context
  }
}

locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../helm/veltrix")

  # The chart names resources <fullname>-<component>; pin fullname so the
  # outputs below are exact.
  fullname = strcontains(var.release_name, "veltrix") ? var.release_name : "${var.release_name}-veltrix"

  namespace = var.create_namespace ? kubernetes_namespace_v1.veltrix[0].metadata[0].name : var.namespace

  etcd_bundled = length(var.etcd_endpoints) == 0

  values = {
    fullnameOverride = local.fullname
    image = {
      registry = var.image_registry
      tag      = var.image_tag
    }
    cluster = {
      name              = var.cluster_name
      partitions        = var.partitions
      replicationFactor = var.replication_factor
    }
    etcd = {
      enabled   = local.etcd_bundled
      endpoints = var.etcd_endpoints
      replicas  = var.etcd_replicas
      persistence = {
        storageClassName = var.etcd_storage_class_name
      }
    }
    storage = {
      replicas        = var.storage_replicas
      zones           = var.storage_zones
      replicasPerZone = var.storage_replicas_per_zone
      cacheBytes      = var.storage_cache_bytes
      antiAffinity    = var.storage_anti_affinity
      persistence = {
        storageClassName = var.storage_class_name
        size             = var.storage_size
      }
      resources = var.storage_resources
    }
    router = {
      replicas  = var.router_replicas
      resources = var.router_resources
      service = {
        type        = var.router_service_type
        annotations = var.router_service_annotations
      }
    }
    migrator = {
      enabled  = var.migrator_enabled
      replicas = var.migrator_replicas
      extraEnv = [for k, v in var.migrator_extra_env : { name = k, value = v }]
    }
    tls = {
      enabled = var.tls_enabled
      secrets = var.tls_secrets
      metrics = var.metrics_tls
      certManager = {
        enabled          = var.cert_manager_enabled
        caSecret         = var.cert_manager_ca_secret
        createIssuer     = var.cert_manager_issuer_ref == null
        issuerRef        = var.cert_manager_issuer_ref
        clientPrincipals = var.cert_manager_client_principals
      }
      etcd = {
        enabled = var.etcd_tls_secret != ""
        secret  = var.etcd_tls_secret
      }
    }
    auth = {
      enabled         = var.auth_enabled
      admins          = var.auth_admins
      keySecret       = var.auth_key_secret
      createKeySecret = var.auth_key_secret == ""
    }
    serviceAccount = {
      annotations = var.service_account_annotations
    }
    serviceMonitor = {
      enabled = var.service_monitor_enabled
      labels  = var.service_monitor_labels
    }
  }
}

resource "kubernetes_namespace_v1" "veltrix" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "veltrix"
    }
  }
}

resource "helm_release" "veltrix" {
  name      = var.release_name
  namespace = local.namespace
  chart     = local.chart_path

  values = compact([yamlencode(local.values), var.extra_values])

  # Wait for the StatefulSets and Deployments to be ready: storage pods wait
  # for their local volumes, routers for enough storage nodes.
  wait    = true
  timeout = var.helm_timeout_seconds
}
