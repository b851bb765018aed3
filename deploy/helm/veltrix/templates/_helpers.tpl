{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "veltrix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name prefix of every resource: <release>-veltrix, or the release name when
it already contains the chart name. Kept to 40 characters so that suffixed
names (-storage-<zone>-<n>, -etcd-headless) stay within DNS limits.
*/}}
{{- define "veltrix.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "veltrix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "veltrix.labels" -}}
helm.sh/chart: {{ include "veltrix.chart" . }}
app.kubernetes.io/name: {{ include "veltrix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: veltrix
{{- end -}}

{{/* Selector labels of a component: (dict "ctx" $ "component" "storage"). */}}
{{- define "veltrix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "veltrix.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of a Veltrix component: (dict "ctx" $ "component" .Values.storage). */}}
{{- define "veltrix.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .ctx.Values.image.tag -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .ctx.Values.image.registry) .component.image.repository $tag -}}
{{- end -}}

{{- define "veltrix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "veltrix.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "veltrix.storageHeadless" -}}
{{- printf "%s-storage" (include "veltrix.fullname" .) -}}
{{- end -}}

{{- define "veltrix.etcdHeadless" -}}
{{- printf "%s-etcd-headless" (include "veltrix.fullname" .) -}}
{{- end -}}

{{/* etcd client URLs, comma-separated: the bundled members or etcd.endpoints. */}}
{{- define "veltrix.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- $eps := list -}}
{{- $full := include "veltrix.fullname" . -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "http://%s-etcd-%d.%s.%s.svc.%s:2379" $full $i (include "veltrix.etcdHeadless" $) $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $eps -}}
{{- else if .Values.etcd.endpoints -}}
{{- join "," .Values.etcd.endpoints -}}
{{- else -}}
{{- fail "Veltrix needs etcd: set etcd.endpoints to an external etcd, or etcd.enabled=true for the bundled one" -}}
{{- end -}}
{{- end -}}

{{/* Environment every Veltrix service shares. */}}
{{- define "veltrix.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: VELTRIX_CLUSTER
  value: {{ .Values.cluster.name | quote }}
- name: VELTRIX_ETCD_ENDPOINTS
  value: {{ include "veltrix.etcdEndpoints" . | quote }}
- name: VELTRIX_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: VELTRIX_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end -}}

{{/*
Storage StatefulSets: a list of {suffix, zone, zoneFromLabel, replicas}, one per
entry of storage.zones, or a single one when it is empty.
*/}}
{{- define "veltrix.storageGroups" -}}
{{- $groups := list -}}
{{- if .Values.storage.zones -}}
{{- $full := include "veltrix.fullname" . -}}
{{- range .Values.storage.zones -}}
{{- $suffix := . | lower | replace "_" "-" | replace "." "-" | trimSuffix "-" -}}
{{- /* StatefulSet names above 52 characters break the controller-revision-hash label. */ -}}
{{- if gt (len (printf "%s-storage-%s" $full $suffix)) 52 -}}
{{- fail (printf "storage StatefulSet name %s-storage-%s is longer than 52 characters: shorten fullnameOverride" $full $suffix) -}}
{{- end -}}
{{- $groups = append $groups (dict "suffix" (printf "-%s" $suffix) "zone" . "zoneFromLabel" false "replicas" (int $.Values.storage.replicasPerZone)) -}}
{{- end -}}
{{- else -}}
{{- $groups = append $groups (dict "suffix" "" "zone" .Values.storage.zone "zoneFromLabel" (and .Values.storage.zoneFromPodLabel (not .Values.storage.zone)) "replicas" (int .Values.storage.replicas)) -}}
{{- end -}}
{{- toJson $groups -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------
Security (issue #19): TLS from one Kubernetes Secret per role (the layout of a
cert-manager Certificate's Secret: tls.crt, tls.key, ca.crt), mounted
read-only; the processes reload the files in place when the kubelet updates
them, so a renewed certificate needs no restart and no checksum annotation.
*/}}

{{/* Mount path of a role's TLS Secret. */}}
{{- define "veltrix.tlsDir" -}}/etc/veltrix/tls{{- end -}}
{{- define "veltrix.etcdTLSDir" -}}/etc/veltrix/etcd-tls{{- end -}}
{{- define "veltrix.authDir" -}}/etc/veltrix/auth{{- end -}}

{{/* Secret of a role's certificate: (dict "ctx" $ "role" "router"). */}}
{{- define "veltrix.tlsSecret" -}}
{{- default (printf "%s-%s-tls" (include "veltrix.fullname" .ctx) .role) (get .ctx.Values.tls.secrets .role) -}}
{{- end -}}

{{/* Secret of the routers' --auth-key-file. */}}
{{- define "veltrix.authKeySecret" -}}
{{- default (printf "%s-auth-key" (include "veltrix.fullname" .)) .Values.auth.keySecret -}}
{{- end -}}

{{/* Refuses combinations that cannot work. */}}
{{- define "veltrix.checkSecurity" -}}
{{- if and .Values.auth.enabled (not .Values.tls.enabled) -}}
{{- fail "auth.enabled needs tls.enabled: client certificates and bearer tokens travel over TLS only (set auth.enabled=false as well to run without security)" -}}
{{- end -}}
{{- if and .Values.tls.etcd.enabled .Values.etcd.enabled -}}
{{- fail "tls.etcd.enabled is for an external etcd with TLS (etcd.endpoints): the bundled etcd (etcd.enabled) serves plain HTTP" -}}
{{- end -}}
{{- if and .Values.tls.etcd.enabled (not .Values.tls.etcd.secret) -}}
{{- fail "tls.etcd.enabled needs tls.etcd.secret: a Secret with ca.crt (and tls.crt, tls.key for client certificate authentication)" -}}
{{- end -}}
{{- end -}}

{{/*
Command-line flags of a component, as a YAML list: the security flags, then
extraArgs. (dict "ctx" $ "role" "router" "extra" .Values.router.extraArgs)
*/}}
{{- define "veltrix.args" -}}
{{- $v := .ctx.Values -}}
{{- $args := list -}}
{{- if $v.tls.enabled -}}
{{- $d := include "veltrix.tlsDir" . -}}
{{- $args = concat $args (list (printf "--tls-cert-file=%s/tls.crt" $d) (printf "--tls-key-file=%s/tls.key" $d) (printf "--tls-ca-file=%s/ca.crt" $d)) -}}
{{- if $v.tls.metrics -}}
{{- $args = append $args "--metrics-tls" -}}
{{- end -}}
{{- end -}}
{{- if $v.tls.etcd.enabled -}}
{{- $d := include "veltrix.etcdTLSDir" . -}}
{{- $args = append $args (printf "--etcd-cacert=%s/%s" $d $v.tls.etcd.caKey) -}}
{{- if $v.tls.etcd.clientCert -}}
{{- $args = concat $args (list (printf "--etcd-cert=%s/tls.crt" $d) (printf "--etcd-key=%s/tls.key" $d)) -}}
{{- end -}}
{{- end -}}
{{- if and $v.auth.enabled (ne .role "storage") -}}
{{- $args = append $args "--auth" -}}
{{- if eq .role "router" -}}
{{- $args = append $args (printf "--auth-key-file=%s/%s" (include "veltrix.authDir" .) $v.auth.keySecretKey) -}}
{{- end -}}
{{- with $v.auth.admins -}}
{{- $args = append $args (printf "--auth-admins=%s" (join "," .)) -}}
{{- end -}}
{{- end -}}
{{- $args = concat $args (default list .extra) -}}
{{- toYaml $args -}}
{{- end -}}

{{/* Volume mounts of the security files: (dict "ctx" $ "role" "router"). */}}
{{- define "veltrix.securityMounts" -}}
{{- $v := .ctx.Values -}}
{{- if $v.tls.enabled }}
- name: tls
  mountPath: {{ include "veltrix.tlsDir" . }}
  readOnly: true
{{- end }}
{{- if $v.tls.etcd.enabled }}
- name: etcd-tls
  mountPath: {{ include "veltrix.etcdTLSDir" . }}
  readOnly: true
{{- end }}
{{- if and $v.auth.enabled (eq .role "router") }}
- name: auth-key
  mountPath: {{ include "veltrix.authDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Volumes of the security files. Mounted as whole directories, not subPath:
the kubelet updates a projected Secret in place (atomically, through a
symlink swap) only without subPath, and the processes reload from there.
*/}}
{{- define "veltrix.securityVolumes" -}}
{{- $v := .ctx.Values -}}
{{- if $v.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "veltrix.tlsSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if $v.tls.etcd.enabled }}
- name: etcd-tls
  secret:
    secretName: {{ $v.tls.etcd.secret }}
    defaultMode: 0440
{{- end }}
{{- if and $v.auth.enabled (eq .role "router") }}
- name: auth-key
  secret:
    secretName: {{ include "veltrix.authKeySecret" .ctx }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/*
A probe of a component's gRPC health. Without TLS, a native gRPC probe.
With TLS, the kubelet's gRPC probe cannot speak TLS, so grpc_health_probe
(in every Veltrix image) runs in the container with the pod's own
certificate, which every listener accepts (storage nodes accept only
services; health is open under --auth).
(dict "ctx" $ "port" 7400 "service" "veltrix.kv.v1.KVService" "serverName" "x")
*/}}
{{- define "veltrix.probe" -}}
{{- if .ctx.Values.tls.enabled -}}
{{- $d := include "veltrix.tlsDir" . -}}
exec:
  command:
    - /usr/local/bin/grpc_health_probe
    - {{ printf "-addr=127.0.0.1:%d" (int .port) | quote }}
    {{- with .service }}
    - {{ printf "-service=%s" . | quote }}
    {{- end }}
    - -tls
    - {{ printf "-tls-ca-cert=%s/ca.crt" $d | quote }}
    - {{ printf "-tls-client-cert=%s/tls.crt" $d | quote }}
    - {{ printf "-tls-client-key=%s/tls.key" $d | quote }}
    - {{ printf "-tls-server-name=%s" .serverName | quote }}
    - -connect-timeout=3s
    - -rpc-timeout=3s
{{- else -}}
grpc:
  port: {{ .port }}
  {{- with .service }}
  service: {{ . }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* appProtocol of a gRPC Service port. */}}
{{- define "veltrix.grpcAppProtocol" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}kubernetes.io/h2c{{- end -}}
{{- end -}}

{{/* appProtocol of a metrics Service port. */}}
{{- define "veltrix.metricsAppProtocol" -}}
{{- if and .Values.tls.enabled .Values.tls.metrics -}}https{{- else -}}http{{- end -}}
{{- end -}}
