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

{{/* The rule groups, shared by the ConfigMap and the PrometheusRule. */}}
{{- define "monitoring.groups" -}}
{{- $profile := include "matih.profile" . | fromYaml -}}
{{- $ns := .Release.Namespace -}}
groups:
  - name: matih-tenant-{{ .Values.tenant.slug }}
    rules:
      - alert: TenantPodCrashLooping
        expr: increase(kube_pod_container_status_restarts_total{namespace="{{ $ns }}"}[15m]) > 3
        for: 5m
        labels:
          severity: {{ $profile.severity }}
          tenant: {{ .Values.tenant.slug }}
        annotations:
          summary: {{`"Pod {{ $labels.pod }} of tenant`}} {{ .Values.tenant.slug }} {{`restarts repeatedly"`}}
      - alert: TenantDeploymentUnavailable
        expr: kube_deployment_status_replicas_available{namespace="{{ $ns }}"} < kube_deployment_spec_replicas{namespace="{{ $ns }}"}
        for: 10m
        labels:
          severity: {{ $profile.severity }}
          tenant: {{ .Values.tenant.slug }}
        annotations:
          summary: {{`"Deployment {{ $labels.deployment }} of tenant`}} {{ .Values.tenant.slug }} {{`is missing replicas"`}}
      - alert: TenantQuotaNearlyExhausted
        expr: kube_resourcequota{namespace="{{ $ns }}", type="used"} / ignoring(type) kube_resourcequota{namespace="{{ $ns }}", type="hard"} > {{ $profile.quotaWarningRatio }}
        for: 15m
        labels:
          severity: warning
          tenant: {{ .Values.tenant.slug }}
        annotations:
          summary: {{`"Tenant`}} {{ .Values.tenant.slug }} {{`uses over`}} {{ mulf $profile.quotaWarningRatio 100 | int }}{{`% of its {{ $labels.resource }} quota"`}}
      - alert: TenantHighErrorRate
        expr: sum(rate(nginx_ingress_controller_requests{exported_namespace="{{ $ns }}", status=~"5.."}[5m])) / sum(rate(nginx_ingress_controller_requests{exported_namespace="{{ $ns }}"}[5m])) > {{ $profile.errorRateRatio }}
        for: 10m
        labels:
          severity: {{ $profile.severity }}
          tenant: {{ .Values.tenant.slug }}
        annotations:
          summary: {{`"Tenant`}} {{ .Values.tenant.slug }} {{`answers more than`}} {{ mulf $profile.errorRateRatio 100 | int }}{{`% of requests with 5xx"`}}
{{- end -}}
