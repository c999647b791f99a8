{{/*
The chart's name, or nameOverride.
*/}}
{{- define "tributary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: fullnameOverride, or <release>-<chart> unless the
release name already contains the chart's. Truncated so that
"<fullname>-projector" stays within 63 characters.
*/}}
{{- define "tributary.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tributary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag: the tag value, or the chart's appVersion.
*/}}
{{- define "tributary.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tributary.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Labels of every object. Call with (dict "ctx" $ "component" "writer"); the
component may be empty for objects shared by the components.
*/}}
{{- define "tributary.labels" -}}
helm.sh/chart: {{ include "tributary.chart" .ctx }}
{{ include "tributary.selectorLabels" . }}
app.kubernetes.io/version: {{ include "tributary.version" .ctx | quote }}
app.kubernetes.io/part-of: tributary
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/*
Selector labels, with the component when one is given.
*/}}
{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tributary.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "tributary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tributary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The name of the development Secret the chart creates when devSecrets.create.
*/}}
{{- define "tributary.devSecretName" -}}
{{- printf "%s-dev" (include "tributary.fullname" .) }}
{{- end }}

{{/*
secretRef returns "<secret name>/<key>" for a setting: the existing Secret, or
the development Secret when devSecrets.create and the existing one is empty,
or fails naming the value. Call with (dict "ctx" $ "secret" <existingSecret>
"key" <key> "keyValue" "<values path of the key>" "devKey" <key in the dev Secret> "devValue" <dev value>
"value" "<values path>" "setting" "<ENV>" "hint" "<example>").
*/}}
{{- define "tributary.secretRef" -}}
{{- if .secret }}
{{- printf "%s/%s" .secret (required (printf "%s is required: the key of %s in Secret %s" .keyValue .setting .secret) .key) }}
{{- else if .ctx.Values.devSecrets.create }}
{{- $_ := required (printf "devSecrets.%s is required when devSecrets.create is true and %s is empty: the %s" .devKey .value .setting) .devValue }}
{{- printf "%s/%s" (include "tributary.devSecretName" .ctx) .setting }}
{{- else }}
{{- fail (printf "%s is required: the Secret holding %s%s (or, for development only, devSecrets.create=true with devSecrets.%s)" .value .setting .hint .devKey) }}
{{- end }}
{{- end }}

{{/*
envFromSecret renders one env entry taking name from secretRef's answer.
Call with (dict "name" "DATABASE_URL" "ref" "<secret>/<key>").
*/}}
{{- define "tributary.envFromSecret" -}}
{{- $parts := splitn "/" 2 .ref }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $parts._0 }}
      key: {{ $parts._1 | quote }}
{{- end }}

{{- define "tributary.postgresRef" -}}
{{- include "tributary.secretRef" (dict "ctx" . "secret" .Values.postgres.existingSecret "key" .Values.postgres.urlKey "devKey" "databaseURL" "devValue" .Values.devSecrets.databaseURL "value" "postgres.existingSecret" "keyValue" "postgres.urlKey" "setting" "DATABASE_URL" "hint" " (a postgres:// URL, under key postgres.urlKey)") }}
{{- end }}

{{- define "tributary.redisRef" -}}
{{- include "tributary.secretRef" (dict "ctx" . "secret" .Values.redis.existingSecret "key" .Values.redis.urlKey "devKey" "redisURL" "devValue" .Values.devSecrets.redisURL "value" "redis.existingSecret" "keyValue" "redis.urlKey" "setting" "REDIS_URL" "hint" " (a redis:// or rediss:// URL, under key redis.urlKey)") }}
{{- end }}

{{/*
The Kafka settings every Kafka client of the chart shares, as env entries:
SASL credentials from their Secret, TLS files from the mounted Secret.
*/}}
{{- define "tributary.kafkaSecretEnv" -}}
{{- with .Values.kafka.sasl }}
{{- if .mechanism }}
{{- $user := include "tributary.secretRef" (dict "ctx" $ "secret" .existingSecret "key" .usernameKey "keyValue" "kafka.sasl.usernameKey" "devKey" "kafkaSASLUsername" "devValue" $.Values.devSecrets.kafkaSASLUsername "value" "kafka.sasl.existingSecret" "setting" "KAFKA_SASL_USERNAME" "hint" (printf " and KAFKA_SASL_PASSWORD for SASL %s" .mechanism)) }}
{{- $pass := include "tributary.secretRef" (dict "ctx" $ "secret" .existingSecret "key" .passwordKey "keyValue" "kafka.sasl.passwordKey" "devKey" "kafkaSASLPassword" "devValue" $.Values.devSecrets.kafkaSASLPassword "value" "kafka.sasl.existingSecret" "setting" "KAFKA_SASL_PASSWORD" "hint" (printf " and KAFKA_SASL_USERNAME for SASL %s" .mechanism)) }}
{{ include "tributary.envFromSecret" (dict "name" "KAFKA_SASL_USERNAME" "ref" $user) }}
{{ include "tributary.envFromSecret" (dict "name" "KAFKA_SASL_PASSWORD" "ref" $pass) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volumes and mounts of the Kafka TLS Secret, and a writable /tmp (the root
file system is read-only).
*/}}
{{- define "tributary.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "tributary.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/tributary/kafka-tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
The ConfigMap data of the Kafka settings.
*/}}
{{- define "tributary.kafkaConfig" -}}
{{- $brokers := required "kafka.brokers is required: the Kafka bootstrap servers (KAFKA_BROKERS), e.g. [kafka-0.kafka:9092]" (join "," .Values.kafka.brokers) -}}
KAFKA_BROKERS: {{ $brokers | quote }}
KAFKA_PARTITIONS: {{ .Values.kafka.partitions | quote }}
KAFKA_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | quote }}
KAFKA_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
KAFKA_START_TIMEOUT: {{ .Values.kafka.startTimeout | quote }}
KAFKA_TLS: {{ .Values.kafka.tls.enabled | quote }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
{{- with .Values.kafka.tls }}
{{- if .caKey }}
KAFKA_TLS_CA_FILE: {{ printf "/etc/tributary/kafka-tls/%s" .caKey | quote }}
{{- end }}
{{- if or .certKey .keyKey }}
{{- if not (and .certKey .keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together: set both for mutual TLS (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE), or neither" }}
{{- end }}
KAFKA_TLS_CERT_FILE: {{ printf "/etc/tributary/kafka-tls/%s" .certKey | quote }}
KAFKA_TLS_KEY_FILE: {{ printf "/etc/tributary/kafka-tls/%s" .keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.kafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The OpenTelemetry settings of a component: (dict "ctx" $ "component" "writer").
*/}}
{{- define "tributary.otelConfig" -}}
OTEL_SERVICE_NAME: {{ printf "tributary-%s" .component | quote }}
{{- with .ctx.Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- range $k, $v := .ctx.Values.otel.env }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES: the pod, namespace and version, then any given in
otel.env.
*/}}
{{- define "tributary.otelResource" -}}
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" (printf "k8s.namespace.name=%s" .Release.Namespace) (printf "service.version=%s" (include "tributary.version" .)) }}
{{- with .Values.otel.env.OTEL_RESOURCE_ATTRIBUTES }}
{{- $attrs = append $attrs (toString .) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
A component's HTTP probes: (dict "port" "http" "startup" true).
*/}}
{{- define "tributary.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}

{{/*
Pod-level scheduling fields of a component's values.
*/}}
{{- define "tributary.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/*
Checks of a component's shutdown timing and replica bounds:
(dict "ctx" $ "component" "writer" "values" .Values.writer).
*/}}
{{- define "tributary.checkComponent" -}}
{{- $v := .values }}
{{- $min := add $v.shutdownTimeoutSeconds (default 0 $v.preStopSleepSeconds) }}
{{- if le (int $v.terminationGracePeriodSeconds) (int $min) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed %s.shutdownTimeoutSeconds (SHUTDOWN_TIMEOUT, %v) plus %s.preStopSleepSeconds (%v), or Kubernetes kills the process before it has drained" .component $v.terminationGracePeriodSeconds .component $v.shutdownTimeoutSeconds .component (default 0 $v.preStopSleepSeconds)) }}
{{- end }}
{{- if and $v.autoscaling $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) must not exceed %s.autoscaling.maxReplicas (%v)" .component $v.autoscaling.minReplicas .component $v.autoscaling.maxReplicas) }}
{{- end }}
{{- end }}

{{/*
The TCP port of a URL: its explicit port, else 443 for https and 80 for http.
*/}}
{{- define "tributary.urlPort" -}}
{{- $u := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" }}
{{- if $port }}{{ $port }}{{ else if eq $u.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/*
Non-empty when the writer talks to Kafka: it runs the relay (writer.relay) or
the domains' process managers (WRITER_PROCESSES, on unless writer.env turns
them off), which consume the event topics.
*/}}
{{- define "tributary.writerUsesKafka" -}}
{{- $processes := "true" }}
{{- if hasKey .Values.writer.env "WRITER_PROCESSES" }}
{{- $processes = toString (index .Values.writer.env "WRITER_PROCESSES") | lower }}
{{- end }}
{{- if or .Values.writer.relay (not (has $processes (list "false" "0" "f"))) }}true{{ end }}
{{- end }}
