{{/* Names: <release>-control-tower (or the release name when it holds the chart's), cut to leave
room for the longest service suffix ("-dlq-categoriser") within 63 characters. */}}
{{- define "ct.name" -}}
{{- .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "ct.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ct.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ct.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: control-tower
{{- end -}}

{{/* (list $ "edge"): the selector labels of one service's pods. */}}
{{- define "ct.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "ct.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* (list $ "registry"): the in-cluster URL of a service, for CT_*__URL values. */}}
{{- define "ct.url" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- printf "http://%s-%s:%d" (include "ct.fullname" $root) $name (int (index $root.Values.services $name).port) -}}
{{- end -}}

{{/* A service is on unless it says `enabled: false`. */}}
{{- define "ct.enabled" -}}
{{- if or (not (hasKey . "enabled")) .enabled -}}true{{- end -}}
{{- end -}}

{{/* (list $ group key): the Secret that holds `key` of secrets.<group>, or nothing when neither an
existing Secret nor a value gives it. */}}
{{- define "ct.secretName" -}}
{{- $root := index . 0 -}}
{{- $group := index . 1 -}}
{{- $key := index . 2 -}}
{{- $g := index $root.Values.secrets $group -}}
{{- if $g.existingSecret -}}
{{- $g.existingSecret -}}
{{- else if index $g $key -}}
{{- printf "%s-%s" (include "ct.fullname" $root) $group -}}
{{- end -}}
{{- end -}}

{{/* (list $ name service): the non-secret CT_ settings of a service, the data of its ConfigMap. */}}
{{- define "ct.envData" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 2 -}}
CT_PROFILE: {{ $root.Values.profile | quote }}
CT_HTTP__LISTEN: {{ printf "0.0.0.0:%d" (int $svc.port) | quote }}
{{- range $key, $value := $root.Values.commonEnv }}
{{ $key }}: {{ tpl (toString $value) $root | quote }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{ $key }}: {{ tpl (toString $value) $root | quote }}
{{- end }}
{{- end -}}

{{/* Refuses values that cannot work, before anything is rendered. */}}
{{- define "ct.validate" -}}
{{- $root := . -}}
{{- if not (has .Values.profile (list "dev" "production")) -}}
{{- fail (printf "profile is %q: dev or production" .Values.profile) -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if include "ct.enabled" $svc -}}
{{- $replicas := int (ternary $svc.replicas 1 (hasKey $svc "replicas")) -}}
{{- if $svc.scaleTopic -}}
{{- $topic := index $root.Values.topics $svc.scaleTopic -}}
{{- if not $topic -}}
{{- fail (printf "services.%s.scaleTopic names %s, which is not in topics" $name $svc.scaleTopic) -}}
{{- end -}}
{{- if gt $replicas (int $topic.partitions) -}}
{{- fail (printf "services.%s asks for %d replicas: more replicas than %s has partitions (%d), so the consumer group would leave the extra ones idle. Raise the topic's partitions (topics and deploy/topics.toml) first, or ask for fewer." $name $replicas $svc.scaleTopic (int $topic.partitions)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $name "registry") (gt $replicas 1) -}}
{{- fail (printf "services.registry asks for %d replicas: the registry must have one writer (it has no leader election, see ARCHITECTURE.md), so run 1" $replicas) -}}
{{- end -}}
{{- if and $svc.artifacts (gt $replicas 1) (not $svc.artifacts.existingClaim) -}}
{{- fail (printf "services.%s asks for %d replicas: they must share the stored artifacts, so give services.%s.artifacts.existingClaim (a ReadWriteMany claim)" $name $replicas $name) -}}
{{- end -}}
{{- if $svc.sidecarOf -}}
{{- $host := index $root.Values.services $svc.sidecarOf -}}
{{- if or (not $host) (not (include "ct.enabled" $host)) $host.sidecarOf -}}
{{- fail (printf "services.%s.sidecarOf names %s, which is no enabled service of its own" $name $svc.sidecarOf) -}}
{{- end -}}
{{- end -}}
{{- range $var, $ref := $svc.secretEnv -}}
{{- if not (hasKey $root.Values.secrets $ref.secret) -}}
{{- fail (printf "services.%s.secretEnv.%s names secrets.%s, which is not defined" $name $var $ref.secret) -}}
{{- end -}}
{{- if and (eq $root.Values.profile "production") (not (include "ct.secretName" (list $root $ref.secret $ref.key))) -}}
{{- fail (printf "profile production needs secrets.%s.%s (%s of %s): give secrets.%s.existingSecret or the value" $ref.secret $ref.key $var $name $ref.secret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* (list $ name service portName): one service's container. */}}
{{- define "ct.container" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index . 2 -}}
{{- $port := index . 3 -}}
{{- $timing := $root.Values.probeTiming -}}
- name: {{ $name }}
  image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: [{{ $svc.binary | quote }}]
  ports:
    - name: {{ $port }}
      containerPort: {{ int $svc.port }}
      protocol: TCP
  envFrom:
    - configMapRef:
        name: {{ include "ct.fullname" $root }}-{{ $name }}-env
  {{- $secretEnv := list }}
  {{- range $var, $ref := $svc.secretEnv }}
  {{- $secret := include "ct.secretName" (list $root $ref.secret $ref.key) }}
  {{- if $secret }}
  {{- $secretEnv = append $secretEnv (dict "name" $var "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $ref.key))) }}
  {{- end }}
  {{- end }}
  {{- $env := concat $secretEnv ($svc.extraEnv | default list) }}
  {{- if $env }}
  env:
    {{- toYaml $env | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet: {path: {{ $svc.probes.liveness | quote }}, port: {{ $port }}}
    periodSeconds: {{ $timing.startupPeriodSeconds }}
    timeoutSeconds: {{ $timing.timeoutSeconds }}
    failureThreshold: {{ $timing.startupFailureThreshold }}
  livenessProbe:
    httpGet: {path: {{ $svc.probes.liveness | quote }}, port: {{ $port }}}
    periodSeconds: {{ $timing.periodSeconds }}
    timeoutSeconds: {{ $timing.timeoutSeconds }}
    failureThreshold: {{ $timing.failureThreshold }}
  readinessProbe:
    httpGet: {path: {{ $svc.probes.readiness | quote }}, port: {{ $port }}}
    periodSeconds: {{ $timing.periodSeconds }}
    timeoutSeconds: {{ $timing.timeoutSeconds }}
    failureThreshold: {{ $timing.failureThreshold }}
  resources:
    {{- toYaml $svc.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    {{- if $svc.artifacts }}
    - {name: artifacts, mountPath: {{ $svc.env.CT_ARTIFACTS__ROOT | quote }}}
    {{- end }}
    {{- with $svc.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "ct.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "ct.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}
