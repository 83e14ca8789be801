{{- define "viz.labels" -}}
conduit.dev/extension: viz
app.kubernetes.io/part-of: conduit-viz
{{- end -}}

{{- define "viz.image" -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "viz.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "viz.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "viz.prometheusUrl" -}}
{{- if .Values.prometheusUrl -}}
{{ .Values.prometheusUrl }}
{{- else -}}
http://prometheus.{{ .Values.namespace }}.svc.{{ .Values.clusterDomain }}:9090
{{- end -}}
{{- end -}}
