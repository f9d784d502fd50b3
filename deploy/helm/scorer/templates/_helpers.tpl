{{/* Names and labels. */}}
{{- define "scorer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scorer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "scorer.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "scorer.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "scorer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "scorer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "scorer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scorer.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "scorer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scorer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The settings read through SCORER_<NAME>_FILE (worker/settings.py SECRET_SETTINGS); the
other secretFiles entries are file-path settings set to the mounted file. */}}
{{- define "scorer.secretSettings" -}}
kafka_sasl_password redis_url signing_key
{{- end -}}
{{- define "scorer.fileSettings" -}}
kafka_ssl_cafile kafka_ssl_certfile kafka_ssl_keyfile redis_ssl_ca_file
{{- end -}}

{{- define "scorer.secretDir" -}}/etc/scorer/secrets{{- end -}}

{{/* A component's settings as a dict: the file settings' mount paths, then `settings`, then
the component's own settings (later wins). (dict "root" $ "component" "worker") */}}
{{- define "scorer.settingsJson" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
{{- $merged := dict -}}
{{- $fileSettings := splitList " " (include "scorer.fileSettings" $root) -}}
{{- range $name, $ref := $root.Values.secretFiles -}}
{{- if and $ref.secretName (has $name $fileSettings) -}}
{{- $_ := set $merged $name (printf "%s/%s/%s" (include "scorer.secretDir" $root) $name $ref.key) -}}
{{- end -}}
{{- end -}}
{{- $merged = mergeOverwrite $merged (deepCopy $root.Values.settings) (deepCopy ($values.settings | default dict)) -}}
{{- toJson $merged -}}
{{- end -}}

{{/* worker.toml of a component: one `name = value` line per setting, values as JSON (a JSON
string, number or boolean is the same TOML value). */}}
{{- define "scorer.toml" -}}
# Rendered by the scorer chart for the {{ .component }} processes.
{{- range $name, $value := include "scorer.settingsJson" . | fromJson }}
{{- if not (kindIs "invalid" $value) }}
{{ $name }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/* One setting of a component, or a default. (dict "root" $ "component" "worker" "name"
"metrics_port" "default" 9464) */}}
{{- define "scorer.setting" -}}
{{- $settings := include "scorer.settingsJson" (dict "root" .root "component" .component) | fromJson -}}
{{- $value := index $settings .name -}}
{{- if kindIs "invalid" $value -}}{{ .default }}{{- else -}}{{ $value }}{{- end -}}
{{- end -}}

{{/* "true" where a boolean setting's value reads as false to the processes (false, 0, no, in
any case; worker/settings.py _coerce_bool). */}}
{{- define "scorer.falsy" -}}
{{- has (lower (trim (toString .))) (list "false" "0" "no") -}}
{{- end -}}

{{/* Render-time checks: a wrong value fails `helm template` / `helm install` with a reason. */}}
{{- define "scorer.validate" -}}
{{- $known := concat (splitList " " (include "scorer.secretSettings" .)) (splitList " " (include "scorer.fileSettings" .)) -}}
{{- range $name, $_ := .Values.secretFiles -}}
{{- if not (has $name $known) -}}
{{- fail (printf "secretFiles.%s: not a secret or file setting (%s)" $name (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.autoscaling.mode (list "none" "keda" "hpa")) -}}
{{- fail (printf "autoscaling.mode must be none, keda or hpa, got %v" .Values.autoscaling.mode) -}}
{{- end -}}
{{- $partitions := int .Values.inputTopicPartitions -}}
{{- if and (eq .Values.autoscaling.mode "none") (gt (int .Values.worker.replicas) $partitions) -}}
{{- fail (printf "worker.replicas (%d) exceeds inputTopicPartitions (%d): a worker beyond the partition count holds nothing" (int .Values.worker.replicas) $partitions) -}}
{{- end -}}
{{- if and (ne .Values.autoscaling.mode "none") (gt (int .Values.autoscaling.maxReplicas) $partitions) -}}
{{- fail (printf "autoscaling.maxReplicas (%d) exceeds inputTopicPartitions (%d)" (int .Values.autoscaling.maxReplicas) $partitions) -}}
{{- end -}}
{{- if .Values.retrainer.enabled -}}
{{- $retrainerPickle := include "scorer.setting" (dict "root" $ "component" "retrainer" "name" "allow_pickle" "default" true) -}}
{{- if eq (include "scorer.falsy" $retrainerPickle) "true" -}}
{{- fail "the retrainer clones the active estimator from its joblib bytes, so it needs allow_pickle true: set retrainer.settings.allow_pickle=true (retrain_format onnx still serves pickle-free workers) or retrainer.enabled=false" -}}
{{- end -}}
{{- $workerPickle := include "scorer.setting" (dict "root" $ "component" "worker" "name" "allow_pickle" "default" true) -}}
{{- $format := include "scorer.setting" (dict "root" $ "component" "retrainer" "name" "retrain_format" "default" "joblib") -}}
{{- if and (eq (include "scorer.falsy" $workerPickle) "true") (eq $format "joblib") -}}
{{- fail "the workers run with allow_pickle false, so every joblib-only candidate would be refused: set retrainer.settings.retrain_format to onnx or both" -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if eq .name "SCORER_ALLOW_PICKLE" -}}
{{- fail "extraEnv SCORER_ALLOW_PICKLE would override allow_pickle in every process, the retrainer's too: set it in settings or worker.settings instead" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $component := list "worker" "monitor" "retrainer" -}}
{{- $drain := include "scorer.setting" (dict "root" $ "component" $component "name" "delivery_timeout_s" "default" 30) | float64 -}}
{{- if le (float64 $.Values.terminationGracePeriodSeconds) (mulf 2 $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed 2 x delivery_timeout_s of the %s (%v s): the drain at stop" $.Values.terminationGracePeriodSeconds $component (mulf 2 $drain)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
