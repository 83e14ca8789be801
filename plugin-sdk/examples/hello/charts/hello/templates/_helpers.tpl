{{- define "hello.labels" -}}
app.kubernetes.io/name: hello
app.kubernetes.io/part-of: conduit-hello
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
