{{/* The tier profile: the entry of .Values.tiers for the tenant's tier. */}}
{{- define "matih.profile" -}}
{{- $tier := required "tenant.tier is required" .Values.tenant.tier -}}
{{- toYaml (required (printf "no profile for tier %s in .Values.tiers" $tier) (index .Values.tiers $tier)) -}}
{{- end -}}

{{/* Labels every object carries: Helm's recommended ones plus the tenant's. */}}
{{- define "matih.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: matih
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
matih.ai/tenant: {{ required "tenant.slug is required" .Values.tenant.slug | quote }}
matih.ai/tier: {{ .Values.tenant.tier | lower | quote }}
{{- end -}}
