{{/* The chart's name, or nameOverride. */}}
{{- define "umt-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: object names, the Lease's name. */}}
{{- define "umt-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: immutable in a Deployment, so never more than these two. */}}
{{- define "umt-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "umt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "umt-operator.labels" -}}
{{- $labels := dict
  "helm.sh/chart" (printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_")
  "app.kubernetes.io/name" (include "umt-operator.name" .)
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/component" "operator"
  "app.kubernetes.io/part-of" "umt-migrations"
  "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml (merge (deepCopy (.Values.commonLabels | default dict)) $labels) }}
{{- end }}

{{/* The operator image; its tag defaults to the chart's appVersion. */}}
{{- define "umt-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The migration Jobs' default image: the operator's own unless set. */}}
{{- define "umt-operator.runnerImage" -}}
{{- default (include "umt-operator.image" .) .Values.runner.defaultImage }}
{{- end }}

{{- define "umt-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "umt-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The rights the operator uses in a namespace it watches, and nothing else: they are the calls
recorded from the operator in tests/integration/test_rbac_from_calls.py, which fails when a
rule here grants a call the operator never makes or misses one it makes. No Secrets: the
database URL reaches only the Job's pod, through secretKeyRef.
*/}}
{{- define "umt-operator.watchRules" -}}
- apiGroups: [migrations.umt.dev]
  resources: [schemamigrations]
  verbs: [get, list, watch]
- apiGroups: [migrations.umt.dev]
  resources: [schemamigrations/status]
  verbs: [patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, delete, get, list, watch]
# spec.review: the plan Job's pod log holds the full plan; the operator writes it into a
# ConfigMap owned by the SchemaMigration (the runner itself gets no Kubernetes rights).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  # create: the operator's own Events; list, watch: the Job controller's FailedCreate Events
  # on the operator's Jobs (selected server-side by involvedObject.kind and reason).
  verbs: [create, list, watch]
{{- end }}
