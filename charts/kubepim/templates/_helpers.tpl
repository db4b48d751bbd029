{{/* Common names and labels. */}}
{{- define "kubepim.fullname" -}}
{{- default "kubepim" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubepim.labels" -}}
app.kubernetes.io/name: kubepim
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kubepim.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "kubepim" -}}
{{- end -}}

{{/* The operator's username as the API server sees it. */}}
{{- define "kubepim.operatorUsername" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "kubepim.serviceAccountName" . }}
{{- end -}}
