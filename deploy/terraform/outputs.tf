output "namespace" {
  description = "Namespace Veltrix runs in."
  value       = local.namespace
}

output "release_name" {
  description = "Helm release name."
  value       = helm_release.veltrix.name
}

output "chart_version" {
  description = "Version of the installed chart."
  value       = helm_release.veltrix.metadata.version
}

output "router_endpoint" {
  description = "In-cluster address of the public gRPC API (KVService, AdminService)."
  value       = "${local.fullname}-router.${local.namespace}.svc:7400"
}

output "router_headless_endpoint" {
  description = "gRPC target for client-side balancing over the routers."
  value       = "dns:///${local.fullname}-router-headless.${local.namespace}.svc:7400"
}

output "migrator_endpoint" {
  description = "In-cluster address of the migrator jobs API (null when disabled)."
  value       = var.migrator_enabled ? "${local.fullname}-migrator.${local.namespace}.svc:7600" : null
}

output "storage_service" {
  description = "Headless Service of the storage nodes (pods are <statefulset>-<n>.<this>)."
  value       = "${local.fullname}-storage.${local.namespace}.svc"
}

output "etcd_endpoints" {
  description = "etcd client URLs Veltrix uses."
  value = local.etcd_bundled ? [
    for i in range(var.etcd_replicas) :
    "http://${local.fullname}-etcd-${i}.${local.fullname}-etcd-headless.${local.namespace}.svc.cluster.local:2379"
  ] : var.etcd_endpoints
}

output "port_forward_command" {
  description = "Reach the router from this machine."
  value       = "kubectl -n ${local.namespace} port-forward svc/${local.fullname}-router 7400:7400"
}
