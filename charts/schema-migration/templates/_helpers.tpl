{{/* Name of the SchemaMigration: .Values.name, else "<release>-schema" (52 characters at most,
so that the operator's Job names stay readable). */}}
{{- define "schema-migration.name" -}}
{{- default (printf "%s-schema" .Release.Name) .Values.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Name shared by the hook's ServiceAccount, Role, RoleBinding, ConfigMap and Job. */}}
{{- define "schema-migration.hookName" -}}
{{- printf "%s-migrate" (include "schema-migration.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "schema-migration.secretName" -}}
{{- default (printf "%s-db" .Release.Name) .Values.database.urlSecretRef.name -}}
{{- end -}}

{{/* The image: this chart's image.* first, then the parent chart's global.image.* (one
setting for the app, its gate and its migration), then UMT's image at this appVersion. */}}
{{- define "schema-migration.image" -}}
{{- $global := (.Values.global | default dict).image | default dict -}}
{{- $repository := coalesce .Values.image.repository $global.repository "ghcr.io/umt/umt-migrations" -}}
{{- printf "%s:%s" $repository (coalesce .Values.image.tag $global.tag .Chart.AppVersion) -}}
{{- end -}}

{{- define "schema-migration.pullPolicy" -}}
{{- $global := (.Values.global | default dict).image | default dict -}}
{{- coalesce .Values.image.pullPolicy $global.pullPolicy "IfNotPresent" -}}
{{- end -}}

{{/* Labels of every object: commonLabels, then these (as in the three charts of this
repository). A `+` (SemVer build metadata) is not allowed in a label value: `_` instead, as
Helm's own `helm create` scaffold does. */}}
{{- define "schema-migration.labels" -}}
{{- $labels := dict
  "helm.sh/chart" (printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_")
  "app.kubernetes.io/name" "schema-migration"
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/component" "database-migration"
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml (merge (deepCopy (.Values.commonLabels | default dict)) $labels) }}
{{- end -}}

{{/* Annotations of a hook object; the argument is (dict "ctx" $ "weight" N). */}}
{{- define "schema-migration.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: {{ .ctx.Values.hook.deletePolicy }}
{{- end -}}

{{/* The SchemaMigration of this release: a chart object in resource mode, the waiter's
input (in a ConfigMap) in hook mode. One renderer for both. */}}
{{- define "schema-migration.manifest" -}}
apiVersion: migrations.umt.dev/v1alpha1
kind: SchemaMigration
metadata:
  name: {{ include "schema-migration.name" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "schema-migration.labels" . | nindent 4 }}
    {{- with .Values.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := deepCopy (.Values.annotations | default dict) }}
  {{- if eq .Values.mode "resource" }}
  {{- $_ := set $annotations "argocd.argoproj.io/sync-wave" (toString .Values.resource.syncWave) }}
  {{- else }}
  {{- /* Applied by the waiter, not by Helm: Helm's ownership marks let a later switch to
  resource mode adopt the object instead of failing with "invalid ownership metadata". */}}
  {{- $_ := set $annotations "meta.helm.sh/release-name" .Release.Name }}
  {{- $_ := set $annotations "meta.helm.sh/release-namespace" .Release.Namespace }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  targetRevision: {{ .Values.targetRevision | quote }}
  allowDowngrade: {{ .Values.allowDowngrade }}
  database:
    urlSecretRef:
      name: {{ include "schema-migration.secretName" . }}
      key: {{ .Values.database.urlSecretRef.key }}
  image: {{ include "schema-migration.image" . }}
  imagePullPolicy: {{ include "schema-migration.pullPolicy" . }}
  {{- with .Values.alembicConfig }}
  alembic:
    config: {{ . }}
  {{- end }}
  {{- $job := deepCopy (.Values.job | default dict) }}
  {{- if .Values.rerunOnUpgrade }}
  {{- /* A spec change, so every release is a new generation: the operator runs a Job for it
  when an input of the migration changed or the last run failed (an upgrade after a failed
  one retries it), else reports it Ready at once (reason InputsUnchanged). */}}
  {{- $annotations := deepCopy ($job.podAnnotations | default dict) }}
  {{- $_ := set $annotations "migrations.umt.dev/helm-revision" (toString .Release.Revision) }}
  {{- $_ := set $job "podAnnotations" $annotations }}
  {{- end }}
  {{- with $job }}
  job:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.rerunToken }}
  rerunToken: {{ tpl (toString .) $ | quote }}
  {{- end }}
  {{- with .Values.safety }}
  safety:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.review }}
  review:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The values key of review.approvedPlanDigest as the release's user sets it: prefixed by
the parent charts' names when this chart is a dependency (its templates then live under
<parent>/charts/<this>/templates). */}}
{{- define "schema-migration.approveSetKey" -}}
{{- $parts := splitList "/charts/" (dir .Template.BasePath) -}}
{{- $prefix := "" -}}
{{- range $index, $part := $parts -}}
{{- if $index -}}{{- $prefix = printf "%s%s." $prefix $part -}}{{- end -}}
{{- end -}}
{{- printf "%sreview.approvedPlanDigest" $prefix -}}
{{- end -}}

{{/* Pod Security "restricted": https://kubernetes.io/docs/concepts/security/pod-security-standards/ */}}
{{- define "schema-migration.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "schema-migration.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
