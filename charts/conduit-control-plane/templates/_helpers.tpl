{{/* Version of the images: image.tag, else the chart's appVersion. */}}
{{- define "conduit.version" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/*
Image reference. Call with (dict "root" $ "name" "controller" "version" "").
A name with a "/" is a full repository (e.g. my.registry/team/proxy); otherwise
it lives under image.registry.
*/}}
{{- define "conduit.image" -}}
{{- $v := .version | default (include "conduit.version" .root) -}}
{{- if contains "/" .name -}}
{{ .name }}:{{ $v }}
{{- else -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ $v }}
{{- end -}}
{{- end -}}

{{- define "conduit.proxyVersion" -}}
{{- .Values.proxy.image.version | default (include "conduit.version" .) -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "conduit.labels" -}}
app.kubernetes.io/part-of: conduit
app.kubernetes.io/version: {{ include "conduit.version" . | quote }}
conduit.dev/control-plane-ns: {{ .Values.controlPlaneNamespace }}
{{- range $k, $v := .Values.commonLabels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Labels of one component's objects. Call with (dict "root" $ "component" "identity") */}}
{{- define "conduit.componentLabels" -}}
{{ include "conduit.labels" .root }}
app.kubernetes.io/name: conduit-{{ .component }}
conduit.dev/control-plane-component: {{ .component }}
{{- end -}}

{{/* Workload identity of a ServiceAccount of the control plane. */}}
{{- define "conduit.identityName" -}}
{{ .sa }}.{{ .root.Values.controlPlaneNamespace }}.serviceaccount.identity.{{ .root.Values.controlPlaneNamespace }}.{{ .root.Values.identityTrustDomain }}
{{- end -}}

{{- define "conduit.svcAddr" -}}
conduit-{{ .component }}.{{ .root.Values.controlPlaneNamespace }}.svc.{{ .root.Values.clusterDomain }}:{{ .port }}
{{- end -}}

{{/* Security context of every non-root container. */}}
{{- define "conduit.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The control plane's proxies get proxy.ipv6, as injected pods do (proxy-init's
  --ipv6 and the proxy's CONDUIT_PROXY_IPV6 together): "- --ipv6=<mode>", or
  nothing for auto, the default of both, so that a default install renders as
  before the value existed. Call with .Values. */}}
{{- define "conduit.ipv6Mode" -}}
{{- if and .proxy.ipv6 (ne .proxy.ipv6 "auto") }}
- --ipv6={{ .proxy.ipv6 }}
{{- end }}
{{- end -}}

{{/* proxy-init: the init container that programs the pod's nat table. Call with (dict "root" $ "skipInbound" "8443") */}}
{{- define "conduit.proxyInit" -}}
{{- $v := .root.Values -}}
- name: conduit-init
  image: {{ include "conduit.image" (dict "root" .root "name" $v.proxyInit.image.name "version" (include "conduit.proxyVersion" .root)) }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
  - --incoming-proxy-port={{ $v.proxy.ports.inbound }}
  - --outgoing-proxy-port={{ $v.proxy.ports.outbound }}
  - --proxy-uid={{ $v.proxy.uid }}
  - --inbound-ports-to-ignore={{ .skipInbound | default (printf "%d" (int $v.proxy.ports.admin)) }}
  - --outbound-ports-to-ignore={{ $v.controlPlaneSkipOutboundPorts }}
  {{- with $v.proxyInit.skipSubnets }}
  - --subnets-to-ignore={{ . }}
  {{- end }}
  - --iptables-mode={{ $v.proxyInit.iptablesMode }}
  {{- with include "conduit.ipv6Mode" $v | trim }}
  {{ . }}
  {{- end }}
  - --log-format={{ $v.proxy.logFormat }}
  resources:
    {{- toYaml $v.proxyInit.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: false
    runAsUser: 0
    capabilities:
      add: [NET_ADMIN, NET_RAW]
      drop: [ALL]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
  - name: conduit-init-run
    mountPath: /run
{{- end -}}

{{/* The proxy, a native sidecar. Call with (dict "root" $ "sa" "conduit-identity" "identityAddr" "" "identityServerName" nil) */}}
{{- define "conduit.proxy" -}}
{{- $v := .root.Values -}}
{{- $ns := $v.controlPlaneNamespace -}}
- name: conduit-proxy
  image: {{ include "conduit.image" (dict "root" .root "name" $v.proxy.image.name "version" $v.proxy.image.version) }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  env:
  - name: CONDUIT_PROXY_LOG_LEVEL
    value: {{ $v.proxy.logLevel | quote }}
  - name: CONDUIT_PROXY_LOG_FORMAT
    value: {{ $v.proxy.logFormat | quote }}
  - name: CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR
    value: "127.0.0.1:{{ $v.proxy.ports.outbound }}"
  - name: CONDUIT_PROXY_INBOUND_LISTEN_ADDR
    value: "0.0.0.0:{{ $v.proxy.ports.inbound }}"
  - name: CONDUIT_PROXY_ADMIN_LISTEN_ADDR
    value: "0.0.0.0:{{ $v.proxy.ports.admin }}"
  - name: CONDUIT_PROXY_POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - name: CONDUIT_PROXY_POD_NAMESPACE
    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  - name: CONDUIT_PROXY_NODE_NAME
    valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
  - name: CONDUIT_PROXY_CLUSTER_DOMAIN
    value: {{ $v.clusterDomain | quote }}
  - name: CONDUIT_PROXY_DESTINATION_ADDR
    value: {{ include "conduit.svcAddr" (dict "root" .root "component" "destination" "port" 8086) | quote }}
  - name: CONDUIT_PROXY_DESTINATION_NAME
    value: {{ include "conduit.identityName" (dict "root" .root "sa" "conduit-destination") | quote }}
  - name: CONDUIT_PROXY_DESTINATION_CONTEXT
    value: '{"ns":"$(CONDUIT_PROXY_POD_NAMESPACE)","nodeName":"$(CONDUIT_PROXY_NODE_NAME)","pod":"$(CONDUIT_PROXY_POD_NAME)"}'
  - name: CONDUIT_PROXY_IDENTITY_ADDR
    value: {{ .identityAddr | default (include "conduit.svcAddr" (dict "root" .root "component" "identity" "port" 8080)) | quote }}
  - name: CONDUIT_PROXY_IDENTITY_SERVER_NAME
    value: {{ if .plaintextIdentity }}""{{ else }}{{ include "conduit.identityName" (dict "root" .root "sa" "conduit-identity") | quote }}{{ end }}
  - name: CONDUIT_PROXY_IDENTITY_NAME
    value: {{ include "conduit.identityName" (dict "root" .root "sa" .sa) | quote }}
  - name: CONDUIT_PROXY_IDENTITY_TOKEN_FILE
    value: /var/run/conduit/identity/token
  - name: CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS
    valueFrom:
      configMapKeyRef: {name: conduit-identity-trust-roots, key: ca-bundle.crt}
  - name: CONDUIT_PROXY_INBOUND_OPAQUE_PORTS
    value: {{ $v.proxy.defaultOpaquePorts | quote }}
  - name: CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD
    value: {{ $v.proxy.shutdownGracePeriod | quote }}
  {{- with $v.clusterNetworks }}
  - name: CONDUIT_PROXY_CLUSTER_NETWORKS
    value: {{ . | quote }}
  {{- end }}
  {{- with ($v.proxy.discovery | default dict) }}
  {{- with .idleTimeout }}
  - name: CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT
    value: {{ . | quote }}
  {{- end }}
  {{- with .lastKnownMaxAge }}
  - name: CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE
    value: {{ . | quote }}
  {{- end }}
  {{- end }}
  {{- with include "conduit.ipv6Mode" $v | trim }}
  - name: CONDUIT_PROXY_IPV6
    value: {{ trimPrefix "- --ipv6=" . | quote }}
  {{- end }}
  {{- if not $v.proxy.resources.cpu.limit }}
  {{- /* One core without a CPU limit, as the injector does (docs/proxy.md, Tuning). */}}
  - name: GOMAXPROCS
    value: "1"
  {{- end }}
  ports:
  - name: conduit-proxy
    containerPort: {{ $v.proxy.ports.inbound }}
  - name: conduit-admin
    containerPort: {{ $v.proxy.ports.admin }}
  livenessProbe:
    httpGet: {path: /live, port: {{ $v.proxy.ports.admin }}}
    initialDelaySeconds: 10
  readinessProbe:
    httpGet: {path: /ready, port: {{ $v.proxy.ports.admin }}}
    initialDelaySeconds: 2
  resources:
    requests:
      cpu: {{ $v.proxy.resources.cpu.request | quote }}
      memory: {{ $v.proxy.resources.memory.request | quote }}
    {{- if or $v.proxy.resources.cpu.limit $v.proxy.resources.memory.limit }}
    limits:
      {{- with $v.proxy.resources.cpu.limit }}
      cpu: {{ . | quote }}
      {{- end }}
      {{- with $v.proxy.resources.memory.limit }}
      memory: {{ . | quote }}
      {{- end }}
    {{- end }}
  securityContext:
    {{- include "conduit.containerSecurity" . | nindent 4 }}
    runAsUser: {{ $v.proxy.uid }}
    runAsGroup: {{ $v.proxy.uid }}
  volumeMounts:
  - name: conduit-identity-token
    mountPath: /var/run/conduit/identity
    readOnly: true
{{- end -}}

{{/*
A controller Deployment with its meshed pod. Call with
(dict "root" $ "component" "identity" "port" 8080 "portName" "grpc" "adminPort" 9990 "args" (list) "extraArgs" (list) "plaintextIdentity" false "skipInbound" "")
*/}}
{{- define "conduit.deployment" -}}
{{- $v := .root.Values -}}
{{- $name := printf "conduit-%s" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $v.controlPlaneNamespace }}
  labels:
    {{- include "conduit.componentLabels" . | nindent 4 }}
spec:
  replicas: {{ $v.highAvailability | ternary 3 $v.controllerReplicas }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      conduit.dev/control-plane-component: {{ .component }}
  {{- if $v.highAvailability }}
  strategy:
    rollingUpdate: {maxUnavailable: 1, maxSurge: 25%}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "conduit.componentLabels" . | nindent 8 }}
        conduit.dev/proxy-version: {{ include "conduit.proxyVersion" .root | quote }}
      annotations:
        conduit.dev/identity-mode: default
        conduit.dev/inject: disabled
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: true
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.highAvailability }}
      affinity:
        podAntiAffinity:
          {{- if eq $v.podAntiAffinity "required" }}
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                conduit.dev/control-plane-component: {{ .component }}
          {{- end }}
          preferredDuringSchedulingIgnoredDuringExecution:
          {{- if ne $v.podAntiAffinity "required" }}
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  conduit.dev/control-plane-component: {{ .component }}
          {{- end }}
          - weight: 100
            podAffinityTerm:
              topologyKey: topology.kubernetes.io/zone
              labelSelector:
                matchLabels:
                  conduit.dev/control-plane-component: {{ .component }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      terminationGracePeriodSeconds: 40
      initContainers:
      {{- include "conduit.proxyInit" . | nindent 6 }}
      {{- include "conduit.proxy" (dict "root" .root "sa" $name "identityAddr" .identityAddr "plaintextIdentity" .plaintextIdentity) | nindent 6 }}
      containers:
      - name: {{ .component }}
        image: {{ include "conduit.image" (dict "root" .root "name" "controller" "version" "") }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        args:
        - {{ .component }}
        {{- range .args }}
        - {{ . | quote }}
        {{- end }}
        - --log-level={{ $v.controllerLogLevel }}
        - --log-format={{ $v.controllerLogFormat }}
        {{- range .extraArgs }}
        - {{ . | quote }}
        {{- end }}
        env:
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        ports:
        - name: {{ .portName }}
          containerPort: {{ .port }}
        - name: admin
          containerPort: {{ .adminPort }}
        livenessProbe:
          httpGet: {path: /live, port: {{ .adminPort }}}
          initialDelaySeconds: 10
        readinessProbe:
          httpGet: {path: /ready, port: {{ .adminPort }}}
          initialDelaySeconds: 2
        resources:
          {{- toYaml $v.controllerResources | nindent 10 }}
        securityContext:
          {{- include "conduit.containerSecurity" . | nindent 10 }}
          runAsUser: 65532
          runAsGroup: 65532
        {{- with .volumeMounts }}
        volumeMounts:
          {{- toYaml . | nindent 8 }}
        {{- end }}
      volumes:
      - name: conduit-init-run
        emptyDir: {medium: Memory, sizeLimit: 1Mi}
      - name: conduit-identity-token
        projected:
          sources:
          - serviceAccountToken:
              audience: identity.conduit.dev
              expirationSeconds: 86400
              path: token
      {{- with .volumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end -}}

{{/* A controller's Service. */}}
{{- define "conduit.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: conduit-{{ .component }}
  namespace: {{ .root.Values.controlPlaneNamespace }}
  labels:
    {{- include "conduit.componentLabels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    conduit.dev/control-plane-component: {{ .component }}
  ports:
  - name: {{ .portName }}
    port: {{ .servicePort | default .port }}
    targetPort: {{ .port }}
{{- end -}}

{{/* A controller's PodDisruptionBudget (high availability only). */}}
{{- define "conduit.pdb" -}}
{{- if .root.Values.highAvailability }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: conduit-{{ .component }}
  namespace: {{ .root.Values.controlPlaneNamespace }}
  labels:
    {{- include "conduit.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      conduit.dev/control-plane-component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "conduit.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: conduit-{{ .component }}
  namespace: {{ .root.Values.controlPlaneNamespace }}
  labels:
    {{- include "conduit.componentLabels" . | nindent 4 }}
{{- end -}}

{{/* Where the injector and destination run the extensions' hook binaries
(pkg/pluginhost): fetched at run time, never part of the image. */}}
{{- define "conduit.pluginVolumes" -}}
- name: extension-plugins
  emptyDir: {sizeLimit: 512Mi}
{{- end -}}
{{- define "conduit.pluginMounts" -}}
- name: extension-plugins
  mountPath: /var/run/conduit/plugins
{{- end -}}
