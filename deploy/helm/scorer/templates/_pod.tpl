{{/* The pod template shared by the worker, the monitor and the retrainer:
(dict "root" $ "component" "worker" "command" "run" "static" false) */}}
{{- define "scorer.podTemplate" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
{{- $port := include "scorer.setting" (dict "root" $root "component" .component "name" "metrics_port" "default" 9464) | int -}}
{{- $secretSettings := splitList " " (include "scorer.secretSettings" $root) -}}
{{- $settings := include "scorer.settingsJson" (dict "root" $root "component" .component) | fromJson -}}
metadata:
  labels:
    {{- include "scorer.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
    app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "scorer.toml" (dict "root" $root "component" .component) | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "scorer.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .command | quote }}]
      env:
        - name: SCORER_CONFIG
          value: /etc/scorer/worker.toml
        {{- if .static }}
        # static membership: the StatefulSet pod name, stable across restarts and rollouts
        - name: SCORER_GROUP_INSTANCE_ID
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- if eq (index $settings "processing_guarantee" | default "") "exactly-once" }}
        - name: SCORER_TRANSACTIONAL_ID
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- end }}
        {{- end }}
        {{- range $name, $ref := $root.Values.secretFiles }}
        {{- if and $ref.secretName (has $name $secretSettings) }}
        - name: SCORER_{{ upper $name }}_FILE
          value: {{ printf "%s/%s/%s" (include "scorer.secretDir" $root) $name $ref.key }}
        {{- end }}
        {{- end }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $port }}
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/scorer/worker.toml
          subPath: worker.toml
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- range $name, $ref := $root.Values.secretFiles }}
        {{- if $ref.secretName }}
        - name: {{ $name | replace "_" "-" }}
          mountPath: {{ printf "%s/%s" (include "scorer.secretDir" $root) $name }}
          readOnly: true
        {{- end }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "scorer.fullname" $root }}-config
        items:
          - {key: {{ .component }}.toml, path: worker.toml}
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
    {{- range $name, $ref := $root.Values.secretFiles }}
    {{- if $ref.secretName }}
    - name: {{ $name | replace "_" "-" }}
      secret:
        secretName: {{ $ref.secretName }}
        defaultMode: 0440
        items:
          - {key: {{ $ref.key | quote }}, path: {{ $ref.key | quote }}}
    {{- end }}
    {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
