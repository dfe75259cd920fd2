{{- define "umt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "umt.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object: commonLabels, then these (as in the three charts of this
repository). A `+` (SemVer build metadata) is not allowed in a label value: `_` instead, as
Helm's own `helm create` scaffold does. */}}
{{- define "umt.labels" -}}
{{- $labels := dict
  "helm.sh/chart" (printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_")
  "app.kubernetes.io/name" .Chart.Name
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml (merge (deepCopy (.Values.commonLabels | default dict)) $labels) }}
{{- end -}}

{{- define "umt.secretName" -}}
{{- default (printf "%s-db" .Release.Name) .Values.database.urlSecretRef.name -}}
{{- end -}}

{{/* The release's image (migrations, gate). */}}
{{- define "umt.image" -}}
{{- printf "%s:%s" .Values.global.image.repository (default .Chart.AppVersion .Values.global.image.tag) -}}
{{- end -}}

{{- define "umt.appImage" -}}
{{- $repository := default .Values.global.image.repository .Values.app.image.repository -}}
{{- printf "%s:%s" $repository (coalesce .Values.app.image.tag .Values.global.image.tag .Chart.AppVersion) -}}
{{- end -}}

{{- define "umt.databaseUrlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "umt.secretName" . }}
      key: {{ .Values.database.urlSecretRef.key }}
{{- end -}}

{{/* Pod Security "restricted": https://kubernetes.io/docs/concepts/security/pod-security-standards/ */}}
{{- define "umt.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
