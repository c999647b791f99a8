{{/*
Authentication of the writer's and the reader's API: the auth values become
their AUTH_* settings (internal/config/auth.go). Nothing here is secret: a key
set given by reference is mounted from the ConfigMap or Secret it names.
*/}}

{{/* Where a referenced JWKS is mounted, and the file AUTH_JWKS_FILE names. */}}
{{- define "tributary.authDir" -}}/etc/tributary/auth{{- end }}
{{- define "tributary.authJWKSFile" -}}{{ include "tributary.authDir" . }}/jwks.json{{- end }}

{{/*
True (non-empty) when the key set comes from a ConfigMap or Secret.
*/}}
{{- define "tributary.authJWKSRef" -}}
{{- with .Values.auth }}
{{- if and (eq .mode "jwt") (or .jwks.configMap .jwks.secret) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The checks of the auth values; fails naming every value that is missing or in
conflict. Called from checks.yaml.
*/}}
{{- define "tributary.checkAuth" -}}
{{- $a := .Values.auth }}
{{- $problems := list }}
{{- if eq $a.mode "off" }}
{{- if not $a.allowInsecureOff }}
{{- $problems = append $problems "auth.mode=off turns authentication off: every caller would act as the operator 'anonymous' on every stream. Set auth.allowInsecureOff=true as well to mean it (local experiments only), or use auth.mode=jwt (auth.issuer, auth.audience, auth.jwksUrl) or auth.mode=proxy (auth.proxy.trustedProxies)" }}
{{- end }}
{{- else if eq $a.mode "jwt" }}
{{- if not $a.issuer }}
{{- $problems = append $problems "auth.issuer is required with auth.mode=jwt: the iss claim every token must carry (AUTH_ISSUER)" }}
{{- end }}
{{- if not $a.audience }}
{{- $problems = append $problems "auth.audience is required with auth.mode=jwt: an aud value every token must carry (AUTH_AUDIENCE)" }}
{{- end }}
{{- $ref := or $a.jwks.configMap $a.jwks.secret }}
{{- if and $a.jwks.configMap $a.jwks.secret }}
{{- $problems = append $problems "auth.jwks.configMap and auth.jwks.secret exclude each other: name the one that holds the key set" }}
{{- end }}
{{- if and $a.jwksUrl $ref }}
{{- $problems = append $problems "auth.jwksUrl and auth.jwks.configMap/auth.jwks.secret exclude each other: verify tokens against the issuer's JWKS URL or against a key set from a ConfigMap or Secret, not both" }}
{{- else if not (or $a.jwksUrl $ref) }}
{{- $problems = append $problems "auth.jwksUrl (the issuer's JWKS endpoint) or auth.jwks.configMap / auth.jwks.secret (an existing ConfigMap or Secret holding the key set under auth.jwks.key) is required with auth.mode=jwt: the key set tokens are verified with (AUTH_JWKS_URL or AUTH_JWKS_FILE)" }}
{{- end }}
{{- else if eq $a.mode "proxy" }}
{{- if not $a.proxy.trustedProxies }}
{{- $problems = append $problems "auth.proxy.trustedProxies is required with auth.mode=proxy: the addresses or CIDR ranges the authenticating proxy's requests come from (AUTH_TRUSTED_PROXIES); identity headers from anywhere else are ignored" }}
{{- end }}
{{- end }}
{{- if $problems }}
{{- fail (join "; " $problems) }}
{{- end }}
{{- end }}

{{/*
The ConfigMap data of the auth settings (writer and reader).
*/}}
{{- define "tributary.authConfig" -}}
{{- with .Values.auth -}}
AUTH_MODE: {{ .mode | quote }}
{{- if eq .mode "jwt" }}
AUTH_ISSUER: {{ .issuer | quote }}
AUTH_AUDIENCE: {{ .audience | quote }}
{{- if .jwksUrl }}
AUTH_JWKS_URL: {{ .jwksUrl | quote }}
{{- else }}
AUTH_JWKS_FILE: {{ include "tributary.authJWKSFile" $ | quote }}
{{- end }}
AUTH_ALGORITHMS: {{ join "," .algorithms | quote }}
AUTH_CLOCK_SKEW: {{ .clockSkew | quote }}
AUTH_ROLES_CLAIM: {{ .rolesClaim | quote }}
{{- else if eq .mode "proxy" }}
AUTH_PROXY_PRINCIPAL_HEADER: {{ .proxy.principalHeader | quote }}
AUTH_PROXY_ROLES_HEADER: {{ .proxy.rolesHeader | quote }}
AUTH_TRUSTED_PROXIES: {{ join "," .proxy.trustedProxies | quote }}
{{- end }}
{{- if ne .mode "off" }}
AUTH_OPERATOR_ROLES: {{ join "," .operatorRoles | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The volume of a referenced key set, its key mapped to jwks.json.
*/}}
{{- define "tributary.authVolumes" -}}
{{- if include "tributary.authJWKSRef" . }}
{{- with .Values.auth.jwks }}
- name: auth-jwks
  {{- if .configMap }}
  configMap:
    name: {{ .configMap }}
  {{- else }}
  secret:
    secretName: {{ .secret }}
  {{- end }}
    items:
      - key: {{ .key | quote }}
        path: jwks.json
    defaultMode: 0444
{{- end }}
{{- end }}
{{- end }}

{{- define "tributary.authVolumeMounts" -}}
{{- if include "tributary.authJWKSRef" . }}
- name: auth-jwks
  mountPath: {{ include "tributary.authDir" . }}
  readOnly: true
{{- end }}
{{- end }}
