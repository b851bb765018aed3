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
