# Inputs of the Veltrix example. Each mirrors a value of the Helm chart
# (deploy/helm/veltrix/values.yaml); see that file for the full story.

# --- Kubernetes access ---------------------------------------------------

variable "kubeconfig_path" {
  description = "Path of the kubeconfig used by the helm and kubernetes providers."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context to use (null: the current context)."
  type        = string
  default     = null
}

# --- Release ---------------------------------------------------------------

variable "namespace" {
  description = "Namespace Veltrix is installed in."
  type        = string
  default     = "veltrix"
}

variable "create_namespace" {
  description = "Create the namespace (false: it must exist)."
  type        = bool
  default     = true
}

variable "release_name" {
  description = "Helm release name. Resource names are <release>-veltrix, or the release name when it contains \"veltrix\"."
  type        = string
  default     = "veltrix"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$", var.release_name))
    error_message = "release_name: 1 to 32 characters of [a-z0-9-], starting and ending with a letter or digit."
  }
}

variable "chart_path" {
  description = "Path of the Veltrix chart (default: the chart in this repository)."
  type        = string
  default     = null
}

variable "helm_timeout_seconds" {
  description = "How long Terraform waits for the release to become ready."
  type        = number
  default     = 900
}

# --- Images (image.*) ----------------------------------------------------------

variable "image_registry" {
  description = "Registry and path prefix of the Veltrix images (image.registry)."
  type        = string
  default     = "ghcr.io/veltrixdb"
}

variable "image_tag" {
  description = "Tag of every Veltrix image (image.tag; \"\": the chart's appVersion)."
  type        = string
  default     = ""
}

# --- Cluster (cluster.*) --------------------------------------------------------

variable "cluster_name" {
  description = "Cluster name, the etcd key prefix (cluster.name)."
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.cluster_name))
    error_message = "cluster_name: 1 to 63 characters of [a-z0-9_-], starting with a letter or digit."
  }
}

variable "partitions" {
  description = "Partitions P, fixed when the cluster is bootstrapped (cluster.partitions)."
  type        = number
  default     = 1024

  validation {
    condition     = var.partitions >= 1 && var.partitions <= 65536
    error_message = "partitions: 1 to 65536."
  }
}

variable "replication_factor" {
  description = "Replicas per partition, fixed at bootstrap (cluster.replicationFactor)."
  type        = number
  default     = 3

  validation {
    condition     = var.replication_factor >= 1 && var.replication_factor <= 7
    error_message = "replication_factor: 1 to 7."
  }
}

# --- etcd (etcd.*) -----------------------------------------------------------------

variable "etcd_endpoints" {
  description = "External etcd client URLs (etcd.endpoints). When empty, the chart's bundled etcd is deployed (development only: no TLS, no backups)."
  type        = list(string)
  default     = []
}

variable "etcd_replicas" {
  description = "Members of the bundled etcd (etcd.replicas): 1, 3 or 5."
  type        = number
  default     = 3
}

variable "etcd_storage_class_name" {
  description = "Storage class of the bundled etcd's volumes (\"\": the cluster default)."
  type        = string
  default     = ""
}

# --- Storage nodes (storage.*) ---------------------------------------------------

variable "storage_zones" {
  description = "Zones to run storage nodes in, one StatefulSet per zone pinned with node affinity (storage.zones). Empty: one StatefulSet of storage_replicas nodes."
  type        = list(string)
  default     = []
}

variable "storage_replicas" {
  description = "Storage nodes when storage_zones is empty (storage.replicas)."
  type        = number
  default     = 3
}

variable "storage_replicas_per_zone" {
  description = "Storage nodes per zone when storage_zones is set (storage.replicasPerZone)."
  type        = number
  default     = 1
}

variable "storage_class_name" {
  description = "Storage class of the storage nodes' volumes (storage.persistence.storageClassName). \"local-storage\": local persistent volumes on NVMe."
  type        = string
  default     = "local-storage"
}

variable "storage_size" {
  description = "Size of each storage node's volume (storage.persistence.size)."
  type        = string
  default     = "100Gi"
}

variable "storage_cache_bytes" {
  description = "LIRS read cache per node in bytes (storage.cacheBytes)."
  type        = number
  default     = 268435456
}

variable "storage_resources" {
  description = "Resources of each storage node (storage.resources)."
  type = object({
    requests = optional(map(string), { cpu = "1", memory = "2Gi" })
    limits   = optional(map(string), { memory = "4Gi" })
  })
  default = {}
}

variable "storage_anti_affinity" {
  description = "Anti-affinity between storage nodes on hosts: hard, soft or \"\" (storage.antiAffinity)."
  type        = string
  default     = "hard"

  validation {
    condition     = contains(["hard", "soft", ""], var.storage_anti_affinity)
    error_message = "storage_anti_affinity: hard, soft or \"\"."
  }
}

# --- Routers (router.*) --------------------------------------------------------

variable "router_replicas" {
  description = "Router replicas (router.replicas)."
  type        = number
  default     = 2
}

variable "router_service_type" {
  description = "Service type of the router's public gRPC API (router.service.type)."
  type        = string
  default     = "ClusterIP"
}

variable "router_service_annotations" {
  description = "Annotations of the router Service, e.g. for a cloud load balancer (router.service.annotations)."
  type        = map(string)
  default     = {}
}

variable "router_resources" {
  description = "Resources of each router (router.resources)."
  type = object({
    requests = optional(map(string), { cpu = "500m", memory = "256Mi" })
    limits   = optional(map(string), { memory = "1Gi" })
  })
  default = {}
}

# --- Migrator (migrator.*) -----------------------------------------------------

variable "migrator_enabled" {
  description = "Deploy the migrator (migrator.enabled)."
  type        = bool
  default     = true
}

variable "migrator_replicas" {
  description = "Migrator replicas (migrator.replicas)."
  type        = number
  default     = 1
}

variable "migrator_extra_env" {
  description = "Extra environment of the migrator, e.g. { AWS_REGION = \"us-east-1\" } (migrator.extraEnv)."
  type        = map(string)
  default     = {}
}

variable "service_account_annotations" {
  description = "Annotations of the pods' ServiceAccount, e.g. { \"eks.amazonaws.com/role-arn\" = \"arn:aws:iam::…\" } for the migrator's S3 and Streams access (serviceAccount.annotations)."
  type        = map(string)
  default     = {}
}

# --- Security (tls.*, auth.*) -------------------------------------------------------

variable "tls_enabled" {
  description = "TLS on every Veltrix listener and dial (tls.enabled). Each role reads a Secret with tls.crt, tls.key and ca.crt."
  type        = bool
  default     = true
}

variable "tls_secrets" {
  description = "Secret of each role's certificate (tls.secrets); \"\": <fullname>-<role>-tls, what cert-manager creates."
  type = object({
    router   = optional(string, "")
    storage  = optional(string, "")
    migrator = optional(string, "")
  })
  default = {}
}

variable "cert_manager_enabled" {
  description = "Render cert-manager Issuer and Certificates (tls.certManager.enabled); needs cert-manager's CRDs."
  type        = bool
  default     = false
}

variable "cert_manager_ca_secret" {
  description = "Secret (tls.crt, tls.key) of the CA the chart's CA Issuer signs with (tls.certManager.caSecret)."
  type        = string
  default     = ""
}

variable "cert_manager_issuer_ref" {
  description = "Use this issuer instead of creating a CA Issuer, e.g. { name = \"corp-ca\", kind = \"ClusterIssuer\" } (tls.certManager.issuerRef)."
  type = object({
    name  = string
    kind  = optional(string, "Issuer")
    group = optional(string, "cert-manager.io")
  })
  default = null
}

variable "cert_manager_client_principals" {
  description = "Principals to issue client certificates for, e.g. [\"admin\"] (tls.certManager.clientPrincipals)."
  type        = list(string)
  default     = []
}

variable "metrics_tls" {
  description = "Serve /metrics over HTTPS (tls.metrics)."
  type        = bool
  default     = false
}

variable "etcd_tls_secret" {
  description = "Secret with the etcd CA (ca.crt) and client certificate (tls.crt, tls.key) for an external etcd with TLS (tls.etcd.*); \"\": plain."
  type        = string
  default     = ""
}

variable "auth_enabled" {
  description = "Authenticate and authorise every call to the routers and the migrator (auth.enabled). Needs tls_enabled."
  type        = bool
  default     = true
}

variable "auth_admins" {
  description = "Bootstrap superuser principals, e.g. the principal of an admin client certificate (auth.admins)."
  type        = list(string)
  default     = ["admin"]
}

variable "auth_key_secret" {
  description = "Secret with the routers' auth key (auth.key: 64 hex characters). \"\": the chart creates <fullname>-auth-key once and keeps it."
  type        = string
  default     = ""
}

# --- Monitoring ----------------------------------------------------------------

variable "service_monitor_enabled" {
  description = "Create a Prometheus Operator ServiceMonitor (serviceMonitor.enabled); needs the monitoring.coreos.com CRDs."
  type        = bool
  default     = false
}

variable "service_monitor_labels" {
  description = "Extra labels of the ServiceMonitor, e.g. { release = \"kube-prometheus-stack\" } (serviceMonitor.labels)."
  type        = map(string)
  default     = {}
}

variable "extra_values" {
  description = "Further chart values as YAML, merged last (they win over everything above)."
  type        = string
  default     = ""
}
