{{/* Names ------------------------------------------------------------------ */}}

{{- define "moderator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: at most 40 characters, because KubeRay derives longer names from the
RayService name (a 5-character cluster suffix, "-head-svc", pod suffixes).
*/}}
{{- define "moderator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "moderator.workerName" -}}
{{- printf "%s-worker" (include "moderator.fullname" .) }}
{{- end }}

{{- define "moderator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ----------------------------------------------------------------- */}}

{{- define "moderator.labels" -}}
helm.sh/chart: {{ include "moderator.chart" . }}
{{ include "moderator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "moderator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moderator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the worker pods. */}}
{{- define "moderator.workerSelectorLabels" -}}
{{ include "moderator.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Labels put on every Ray pod of the RayService (head and worker group). */}}
{{- define "moderator.raySelectorLabels" -}}
{{ include "moderator.selectorLabels" . }}
app.kubernetes.io/component: ray
{{- end }}

{{/* Objects and addresses ------------------------------------------------- */}}

{{- define "moderator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moderator.workerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "moderator.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "moderator.fullname" .)) .Values.policies.existingConfigMap }}
{{- end }}

{{/* KubeRay names the RayService's head Service "<rayservice>-head-svc". */}}
{{- define "moderator.rayHeadService" -}}
{{- printf "%s-head-svc" (include "moderator.fullname" .) }}
{{- end }}

{{- define "moderator.rayAddress" -}}
{{- if .Values.serving.rayAddress }}
{{- .Values.serving.rayAddress }}
{{- else }}
{{- printf "ray://%s.%s.svc:10001" (include "moderator.rayHeadService" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Secret holding the Ray auth token under "auth_token": ray.auth.existingSecret, or the one
the chart creates (secret-ray-auth.yaml). Empty when ray.auth.mode is disabled.
*/}}
{{- define "moderator.rayAuthSecret" -}}
{{- if eq .Values.ray.auth.mode "token" }}
{{- default (printf "%s-ray-auth" (include "moderator.fullname" .)) .Values.ray.auth.existingSecret }}
{{- end }}
{{- end }}

{{/* Pod-template annotation that restarts a pod when ray.auth.tokenRevision changes. */}}
{{- define "moderator.rayAuthAnnotation" -}}
{{- with .Values.ray.auth.tokenRevision -}}
moderator/ray-auth-revision: {{ . | toString | quote }}
{{- end }}
{{- end }}

{{- define "moderator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "moderator.cudaImage" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cuda" $tag) .Values.image.cudaTag) }}
{{- end }}

{{/* Capabilities ----------------------------------------------------------- */}}

{{- define "moderator.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
Checks the schema cannot express (it compares no two numbers); values.schema.json
checks each value and the conditional requirements (SASL needs a Secret, GPUs need
GPU pods, ...). Note: `helm lint` logs `fail` messages instead of failing.
*/}}
{{- define "moderator.validate" -}}
{{- if not .Values.kafka.bootstrapServers }}
{{- fail "kafka.bootstrapServers is required (host:port[,host:port])" }}
{{- end }}
{{- if gt (int .Values.worker.replicas) (int .Values.kafka.topics.posts.partitions) }}
{{- fail (printf "worker.replicas (%d) exceeds kafka.topics.posts.partitions (%d): the extra workers would get no partition" (int .Values.worker.replicas) (int .Values.kafka.topics.posts.partitions)) }}
{{- end }}
{{- if gt (int .Values.ray.workers.minReplicas) (int .Values.ray.workers.maxReplicas) }}
{{- fail "ray.workers.minReplicas exceeds ray.workers.maxReplicas" }}
{{- end }}
{{- if gt (int .Values.serving.autoscaling.minReplicas) (int .Values.serving.autoscaling.maxReplicas) }}
{{- fail "serving.autoscaling.minReplicas exceeds serving.autoscaling.maxReplicas" }}
{{- end }}
{{- $classifier := .Values.serving.classifier }}
{{- if lt (int $classifier.maxOngoingRequests) (int $classifier.batching.maxBatchSize) }}
{{- fail (printf "serving.classifier.maxOngoingRequests (%d) is below batching.maxBatchSize (%d): Serve would silently cap the batches" (int $classifier.maxOngoingRequests) (int $classifier.batching.maxBatchSize)) }}
{{- end }}
{{- if and (not .Values.ray.enabled) (eq .Values.ray.auth.mode "token") (not .Values.ray.auth.existingSecret) }}
{{- fail "ray.auth.existingSecret is required with ray.enabled=false and ray.auth.mode=token: name a Secret holding the external Ray cluster's token under the key auth_token (or set ray.auth.mode=disabled if that cluster has no token)" }}
{{- end }}
{{- end }}

{{/*
Policy files bundled with the chart (helm/moderator/policies/, term lists and hash banks in
sub-folders) plus policies.files, as "relative path: text" YAML. ConfigMap keys cannot hold
"/", so the ConfigMap stores "terms__x.txt" and the volume's items map it back to terms/x.txt.
*/}}
{{- define "moderator.policyFiles" -}}
{{- $files := dict }}
{{- range $path, $_ := .Files.Glob "policies/**" }}
{{- $rel := trimPrefix "policies/" $path }}
{{- if and (ne $rel "README.md") (not (hasSuffix ".cases.yaml" $rel)) }}
{{- $_ := set $files $rel ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- range $name, $text := .Values.policies.files }}
{{- $_ := set $files $name $text }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{- define "moderator.policyKey" -}}
{{- replace "/" "__" . -}}
{{- end }}
