{{/*
Named templates that add leader-elector to your own chart's pod spec. Make
this chart a dependency of yours; each template takes your chart's root
context and reads the values under its key, leader-elector:

  spec:
    template:
      spec:
        {{- include "leader-elector.podSpec" . | nindent 6 }}
        volumes:
          {{- include "leader-elector.volumes" . | nindent 10 }}
        initContainers:
          {{- include "leader-elector.initContainer" . | nindent 10 }}
        containers:
          - name: app
            volumeMounts:
              {{- include "leader-elector.appVolumeMount" . | nindent 14 }}
*/}}

{{- define "leader-elector.values" -}}
{{- if hasKey .Values "leader-elector" }}{{ index .Values "leader-elector" | toYaml }}{{ else }}{{ .Values | toYaml }}{{ end }}
{{- end }}

{{- define "leader-elector.podSpec" -}}
{{- $v := include "leader-elector.values" . | fromYaml -}}
serviceAccountName: {{ $v.serviceAccount.name }}
# The token goes to the sidecar alone (the volume kube-api-access).
automountServiceAccountToken: false
{{- end }}

{{- define "leader-elector.volumes" -}}
- name: leader-elector-status
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: leader-elector-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: kube-api-access
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}

{{- define "leader-elector.appVolumeMount" -}}
{{- $v := include "leader-elector.values" . | fromYaml -}}
- name: leader-elector-status
  mountPath: {{ $v.statusDir }}
{{- end }}

{{- define "leader-elector.initContainer" -}}
{{- $v := include "leader-elector.values" . | fromYaml -}}
{{- if not $v.lease }}{{ fail "leader-elector.lease: set the Lease's name" }}{{ end -}}
- name: leader-elector
  image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  env:
    - name: LEASE_NAME
      value: {{ $v.lease | quote }}
    - name: LABEL_POD_ROLE
      value: {{ $v.labelPodRole | quote }}
    - name: STATUS_FILE
      value: {{ printf "%s/leader_status" (trimSuffix "/" $v.statusDir) | quote }}
    - name: HEALTH_PORT
      value: {{ $v.healthPort | quote }}
    - name: NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: POD_UID
      valueFrom:
        fieldRef:
          fieldPath: metadata.uid
    - name: CONTROL_SOCKET
      value: /run/leader-elector/leader-elector.sock
    - name: GOMEMLIMIT
      valueFrom:
        resourceFieldRef:
          containerName: leader-elector
          resource: limits.memory
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http-metrics
      containerPort: {{ $v.healthPort }}
  startupProbe:
    httpGet:
      path: /livez
      port: http-metrics
    periodSeconds: 1
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /livez
      port: http-metrics
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: /readyz
      port: http-metrics
    periodSeconds: 5
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    runAsUser: 65532
    runAsGroup: 65532
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: leader-elector-status
      mountPath: {{ $v.statusDir }}
    - name: leader-elector-run
      mountPath: /run/leader-elector
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
{{- end }}
