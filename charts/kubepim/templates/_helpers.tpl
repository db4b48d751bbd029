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

{{/* Labels the operator's pods carry and its Deployment, Services, PDB and NetworkPolicy select. */}}
{{- define "kubepim.selectorLabels" -}}
app.kubernetes.io/name: kubepim
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubepim.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
Names shared with templates/webhook.yaml: the webhook Service (also the serving certificate's DNS
name, passed as --webhook-service-name), and in certManager mode the Certificate (for the
cainjector annotation `cert-manager.io/inject-ca-from: <namespace>/<certificate>`) and its Secret
(mounted into the pod). The container port of the webhook is named "webhook".
*/}}
{{- define "kubepim.webhookServiceName" -}}
{{ include "kubepim.fullname" . }}-webhook
{{- end -}}

{{- define "kubepim.webhookCertificateName" -}}
{{ include "kubepim.fullname" . }}-webhook
{{- end -}}

{{- define "kubepim.webhookCertSecretName" -}}
{{ include "kubepim.fullname" . }}-webhook-cert
{{- end -}}

{{- define "kubepim.metricsServiceName" -}}
{{ include "kubepim.fullname" . }}-metrics
{{- end -}}

{{/* The webhook is served by the in-cluster pods (not by an operator outside the cluster). */}}
{{- define "kubepim.webhookInCluster" -}}
{{- if and .Values.admission.webhook.enabled .Values.deployment.enabled (not .Values.admission.webhook.url) -}}true{{- end -}}
{{- end -}}

{{/* "true" when leader election is on (leaderElection.enabled, default: replicas > 1). */}}
{{- define "kubepim.leaderElection" -}}
{{- if kindIs "invalid" .Values.leaderElection.enabled -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end -}}
{{- else if .Values.leaderElection.enabled -}}true
{{- end -}}
{{- end -}}

{{/* Where the pod finds its files. */}}
{{- define "kubepim.notificationsConfigPath" -}}/etc/kubepim/notifications.yaml{{- end -}}
{{- define "kubepim.notificationSecretsDir" -}}/etc/kubepim/notification-secrets{{- end -}}
{{- define "kubepim.webhookCertDir" -}}/etc/kubepim/webhook-tls{{- end -}}

{{/*
The arguments of `kubepim run`, one per line as a YAML list. Every flag the chart passes is
here, so a renamed or newly added flag is a one-line change. Flags `kubepim run` does not
accept yet, each behind the value that switches it on (see the chart README):
  --metrics-port           metrics.enabled (default true)
  --leader-election        replicas > 1 or leaderElection.enabled
  --notifications-config   notifications.enabled (default false)
*/}}
{{- define "kubepim.args" -}}
- run
- --log-format={{ .Values.operator.logFormat }}
- --sweep-interval={{ .Values.operator.sweepInterval }}
- --concurrency={{ .Values.operator.concurrency }}
- --history-retention={{ .Values.operator.historyRetention }}
- --history-prune-interval={{ .Values.operator.historyPruneInterval }}
- --separation-interval={{ .Values.operator.separation.interval }}
- --separation-window={{ .Values.operator.separation.window }}
- --separation-fast-approval={{ .Values.operator.separation.fastApproval }}
- --separation-concentration={{ .Values.operator.separation.concentration }}
- --separation-concentration-min={{ .Values.operator.separation.concentrationMin }}
- --separation-approver-requests={{ .Values.operator.separation.approverRequests }}
- --separation-break-glass-uses={{ .Values.operator.separation.breakGlassUses }}
- --standing-privilege-scan-interval={{ .Values.standingPrivilege.scanInterval }}
{{- range .Values.breakGlass.users }}
- {{ printf "--break-glass-user=%s" . | quote }}
{{- end }}
{{- range .Values.breakGlass.groups }}
- {{ printf "--break-glass-group=%s" . | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics-port={{ .Values.metrics.port }}
{{- end }}
{{- if include "kubepim.leaderElection" . }}
- --leader-election
{{- end }}
{{- if .Values.admission.webhook.enabled }}
- --webhook-port={{ .Values.admission.webhook.port }}
- --webhook-service-name={{ include "kubepim.webhookServiceName" . }}
{{- if eq .Values.admission.webhook.certificates.mode "certManager" }}
- --webhook-cert-mode=cert-manager
- --webhook-cert-dir={{ include "kubepim.webhookCertDir" . }}
{{- else }}
- --webhook-cert-mode=self-managed
{{- end }}
{{- with .Values.admission.webhook.url }}
- --webhook-url={{ . }}
{{- end }}
{{- end }}
{{- if .Values.notifications.enabled }}
- --notifications-config={{ include "kubepim.notificationsConfigPath" . }}
{{- end }}
{{- if .Values.audit.enabled }}
- --audit-listen=0.0.0.0:{{ .Values.audit.port }}
- --audit-token-file=/etc/kubepim/audit/token
- --audit-max-body={{ .Values.audit.maxBody | int64 }}
- --audit-flush-interval={{ .Values.audit.flushInterval }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* PromQL label matchers selecting this release's series (metrics.prometheusRule.selector). */}}
{{- define "kubepim.promSelector" -}}
{{- .Values.metrics.prometheusRule.selector | default (printf "namespace=%q" .Release.Namespace) -}}
{{- end -}}

{{/*
Checks across values that values.schema.json cannot say clearly. Rendered by templates/validate.yaml
(which outputs nothing), so a bad combination fails `helm install` with one readable sentence.
*/}}
{{- define "kubepim.validate" -}}
{{- $v := .Values -}}
{{- if and (gt (int $v.replicas) 1) (eq (toString $v.leaderElection.enabled) "false") -}}
{{- fail (printf "replicas: %d needs leader election (only the leader may reconcile and sweep): leave leaderElection.enabled unset (null) or set it to true" (int $v.replicas)) -}}
{{- end -}}
{{- if not $v.metrics.enabled -}}
{{- range $what := list "serviceMonitor" "prometheusRule" "grafanaDashboard" -}}
{{- if (index $v.metrics $what).enabled -}}
{{- fail (printf "metrics.%s.enabled needs metrics.enabled: true (the operator serves no metrics otherwise)" $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.metrics.enabled $v.admission.webhook.enabled (eq (int $v.metrics.port) (int $v.admission.webhook.port)) -}}
{{- fail (printf "metrics.port and admission.webhook.port are both %d: the metrics/health listener and the webhook need different ports" (int $v.metrics.port)) -}}
{{- end -}}
{{- if and $v.admission.webhook.url (not (hasPrefix "https://" $v.admission.webhook.url)) -}}
{{- fail (printf "admission.webhook.url must be an https:// URL (the API server calls webhooks over TLS), not %q" $v.admission.webhook.url) -}}
{{- end -}}
{{- if $v.notifications.enabled -}}
{{- $n := $v.notifications -}}
{{- if not $n.sinks -}}
{{- fail "notifications.enabled is true but notifications.sinks is empty: define at least one sink (type and urlSecret), see values.yaml" -}}
{{- end -}}
{{- range $name, $sink := $n.sinks -}}
{{- range $i, $h := $sink.headers | default list -}}
{{- if eq (len (compact (list $h.value (and $h.valueSecret "secret")))) 1 | not -}}
{{- fail (printf "notifications.sinks.%s.headers[%d] (%s): set exactly one of value or valueSecret {name, key}" $name $i $h.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $defined := keys $n.sinks | sortAlpha | join ", " -}}
{{- range $what, $names := dict "audiences" $n.audiences "routes" $n.routes -}}
{{- range $key, $sinks := $names -}}
{{- range $sinks -}}
{{- if not (hasKey $n.sinks .) -}}
{{- fail (printf "notifications.%s.%s names sink %q, which notifications.sinks does not define (defined: %s); define it or set notifications.%s.%s: []" $what $key . $defined $what $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The self-protection policies' matchCondition: true unless the caller is exempt. Takes a dict
with "users" and "groups". */}}
{{- define "kubepim.selfProtectionExempt" -}}
!(request.userInfo.username in {{ .users | toJson }} ||
  request.userInfo.username.startsWith('system:serviceaccount:kube-system:') ||
  request.userInfo.groups.exists(g, g in {{ .groups | toJson }}))
{{- end -}}

{{/* The Secret holding the audit webhook's bearer token (key `token`). */}}
{{- define "kubepim.auditTokenSecretName" -}}
{{- .Values.audit.token.existingSecret | default (printf "%s-audit-token" (include "kubepim.fullname" .)) -}}
{{- end -}}
