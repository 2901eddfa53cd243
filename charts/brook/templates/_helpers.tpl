{{/* The release's base name: the release name when it mentions brook, else <release>-brook. */}}
{{- define "brook.fullname" -}}
{{- if contains "brook" .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-brook" .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "brook.operatorName" -}}
{{- printf "%s-operator" (include "brook.fullname" .) -}}
{{- end }}

{{- define "brook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "brook.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{- define "brook.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{- define "brook.selectorLabels" -}}
app.kubernetes.io/name: brook-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "brook.gatewayLabels" -}}
app.kubernetes.io/name: brook-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "brook.labels" -}}
{{ include "brook.selectorLabels" . }}
app.kubernetes.io/part-of: brook
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
