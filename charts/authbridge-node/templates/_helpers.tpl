{{/* The labels manifests/base puts on every object. */}}
{{- define "authbridge-node.labels" -}}
app.kubernetes.io/name: authbridge-node
app.kubernetes.io/part-of: kagenti
{{- end }}

{{/* The agent's config: values.config, with OpenShift's paths in OpenShift mode. */}}
{{- define "authbridge-node.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- if .Values.openshift.enabled -}}
{{- $_ := set $c "cniBinDir" .Values.openshift.cniBinDir -}}
{{- $_ := set $c "cniConfDir" .Values.openshift.cniConfDir -}}
{{- $_ := set $c "hostCNIConfDir" .Values.openshift.hostCNIConfDir -}}
{{- end -}}
{{- toYaml $c -}}
{{- end }}

{{- define "authbridge-node.kubeletConfig" -}}
{{- if .Values.openshift.enabled -}}
{{- .Values.openshift.kubeletConfig -}}
{{- else -}}
{{- .Values.kubeletConfig -}}
{{- end -}}
{{- end }}
