{{/* Base of every object name: fullnameOverride, else the release name without a trailing "-stack"
     (release camerafleet-stack -> camerafleet-kafka, camerafleet-minio). */}}
{{- define "camerafleet-stack.fullname" -}}
{{- default (.Release.Name | trimSuffix "-stack") .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; those of a component add its selector labels (name, instance). */}}
{{- define "camerafleet-stack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: camerafleet
{{- end }}

{{/* Labels of an object outside the Kafka/MinIO components. */}}
{{- define "camerafleet-stack.ownLabels" -}}
{{ include "camerafleet-stack.labels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "camerafleet-stack.kafkaSelector" -}}
app.kubernetes.io/name: kafka
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "camerafleet-stack.minioSelector" -}}
app.kubernetes.io/name: minio
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Whether this chart deploys Kafka / MinIO. */}}
{{- define "camerafleet-stack.kafkaEnabled" -}}
{{- if not .Values.kafka.external.bootstrapServers }}true{{ end }}
{{- end }}
{{- define "camerafleet-stack.minioEnabled" -}}
{{- if not .Values.s3.external.endpoint }}true{{ end }}
{{- end }}

{{- define "camerafleet-stack.kafkaService" -}}
{{ include "camerafleet-stack.fullname" . }}-kafka
{{- end }}
{{- define "camerafleet-stack.minioService" -}}
{{ include "camerafleet-stack.fullname" . }}-minio
{{- end }}

{{/* Where the fleet finds Kafka and S3. */}}
{{- define "camerafleet-stack.bootstrapServers" -}}
{{- if include "camerafleet-stack.kafkaEnabled" . }}
{{- printf "%s.%s.svc:%d" (include "camerafleet-stack.kafkaService" .) .Release.Namespace (int .Values.kafka.port) }}
{{- else }}
{{- .Values.kafka.external.bootstrapServers }}
{{- end }}
{{- end }}
{{- define "camerafleet-stack.s3Endpoint" -}}
{{- if include "camerafleet-stack.minioEnabled" . }}
{{- printf "http://%s.%s.svc:9000" (include "camerafleet-stack.minioService" .) .Release.Namespace }}
{{- else }}
{{- .Values.s3.external.endpoint }}
{{- end }}
{{- end }}

{{/* The Secret the fleets' Pods read (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): with the chart's MinIO, its
pipeline user's, limited to the frame bucket. */}}
{{- define "camerafleet-stack.credentialsSecret" -}}
{{- .Values.s3.credentialsSecret }}
{{- end }}

{{/* The Secret with MinIO's root credentials (same keys): only MinIO and the set-up Job read it. */}}
{{- define "camerafleet-stack.rootSecret" -}}
{{- default (printf "%s-root" (include "camerafleet-stack.minioService" .)) .Values.minio.auth.existingSecret }}
{{- end }}
