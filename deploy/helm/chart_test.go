// Package helm holds the tests of the Helm chart in tributary/: helm lint,
// helm template with the default and the production-like values, the rendered
// manifests validated offline with kubeconform against strict schemas made
// from Kubernetes' own OpenAPI document, and checks of what matters in them.
package helm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v4"
)

const (
	chartDir         = "tributary"
	productionValues = "tributary/ci/production-values.yaml"
	// The defaults plus the auth settings the chart requires.
	minimalValues = "tributary/ci/minimal-values.yaml"
	release       = "tributary"
)

// minimal is the --values of the least a release needs.
var minimal = []string{"--values", minimalValues}

// The Prometheus Operator's APIs, as a cluster that has them reports them.
var operatorAPIs = []string{
	"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
	"--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
}

var components = []string{"writer", "projector", "reader"}

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"minimal values", minimal},
		{"production values", []string{"--values", productionValues}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmCmd(t, append([]string{"lint", "--strict", chartDir}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint:\n%s", out)
			}
		})
	}
}

// TestSchemas validates the rendered manifests with kubeconform in strict
// mode: unknown fields, wrong types and missing required fields fail.
func TestSchemas(t *testing.T) {
	ts := needTools(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"minimal values", minimal},
		{"production values", append([]string{"--values", productionValues}, operatorAPIs...)},
		{"development secrets", append(slices.Clone(minimal), "--set", "devSecrets.create=true,devSecrets.databaseURL=postgres://u:p@pg/db,devSecrets.redisURL=redis://r:6379/0,postgres.existingSecret=,redis.existingSecret=")},
		{"key set from a ConfigMap", append(slices.Clone(minimal), "--set", "auth.jwksUrl=,auth.jwks.configMap=tributary-jwks")},
		{"key set from a Secret", append(slices.Clone(minimal), "--set", "auth.jwksUrl=,auth.jwks.secret=tributary-jwks,auth.jwks.key=keys.json")},
		{"proxy mode", []string{"--set", "auth.mode=proxy,auth.proxy.trustedProxies={10.0.0.0/8}",
			"--set-json", `networkPolicy.api.extraFrom=[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}},{"namespaceSelector":{"matchExpressions":[{"key":"team","operator":"In","values":["edge"]}]}}]`,
			"--set-json", `networkPolicy.egress.extra=[{"ports":[{"protocol":"TCP","port":8443}],"to":[{"ipBlock":{"cidr":"192.168.0.0/24"}}]}]`}},
		{"authentication off, no network policies", []string{"--set", "auth.mode=off,auth.allowInsecureOff=true,networkPolicy.enabled=false,tests.enabled=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, objs := render(t, tc.args...)
			cmd := exec.Command(ts.kubeconform, "-strict", "-summary", "-output", "text",
				"-schema-location", filepath.Join(ts.schemaDir, "{{ .ResourceKind }}{{ .KindSuffix }}.json"), "-")
			cmd.Stdin = strings.NewReader(out)
			res, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubeconform: %v\n%s", err, res)
			}
			// Every object was validated: none skipped for want of a schema.
			want := fmt.Sprintf("Valid: %d, Invalid: 0, Errors: 0, Skipped: 0", len(objs))
			if !strings.Contains(string(res), want) {
				t.Fatalf("kubeconform: want %q\n%s", want, res)
			}
		})
	}
}

// TestSchemasCatchMistakes makes sure the validation can fail: a misspelt
// field and a wrong type are refused.
func TestSchemasCatchMistakes(t *testing.T) {
	ts := needTools(t)
	for name, doc := range map[string]string{
		"unknown field":                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
		"wrong type":                   "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: \"eighty\"}]}\n",
		"unknown CRD field":            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoint: []}\n",
		"NetworkPolicy port as a list": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: [80]}]}]}\n",
		"NetworkPolicy misspelt peer":  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}, egress: [{to: [{podSelectors: {}}]}]}\n",
	} {
		cmd := exec.Command(ts.kubeconform, "-strict", "-schema-location", filepath.Join(ts.schemaDir, "{{ .ResourceKind }}{{ .KindSuffix }}.json"), "-")
		cmd.Stdin = strings.NewReader(doc)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%s: kubeconform accepted it:\n%s", name, out)
		}
	}
}

// TestDefaultValues renders the defaults with the one thing they lack, the
// auth settings (TestBadValues: without them the chart refuses).
func TestDefaultValues(t *testing.T) {
	_, objs := render(t, minimal...)
	checkCommon(t, objs)
	for _, c := range components {
		d := find(objs, "Deployment", release+"-"+c)
		if n, _ := num(d, "spec", "replicas"); n != 1 {
			t.Errorf("%s: replicas %d, want 1 by default", d, n)
		}
	}
	if hpas := ofKind(objs, "HorizontalPodAutoscaler"); len(hpas) != 0 {
		t.Errorf("autoscalers by default: %v", hpas)
	}
	if pdbs := ofKind(objs, "PodDisruptionBudget"); len(pdbs) != 0 {
		t.Errorf("disruption budgets by default (they block drains of single replicas): %v", pdbs)
	}
	for _, k := range []string{"ServiceMonitor", "PrometheusRule", "Secret"} {
		if got := ofKind(objs, k); len(got) != 0 {
			t.Errorf("%s rendered by default: %v", k, got)
		}
	}
	if got := ofKind(objs, "NetworkPolicy"); len(got) != len(components) {
		t.Errorf("%d NetworkPolicies by default, want one per component", len(got))
	}
}

func TestProductionValues(t *testing.T) {
	_, objs := render(t, append([]string{"--values", productionValues}, operatorAPIs...)...)
	checkCommon(t, objs)

	for _, c := range []string{"writer", "reader"} {
		d := find(objs, "Deployment", release+"-"+c)
		if _, ok := get(d, "spec", "replicas").(int); ok {
			t.Errorf("%s sets replicas although an autoscaler owns them", d)
		}
		h := find(objs, "HorizontalPodAutoscaler", release+"-"+c)
		if h == nil {
			t.Fatalf("no HorizontalPodAutoscaler for the %s", c)
		}
		lo, _ := num(h, "spec", "minReplicas")
		hi, _ := num(h, "spec", "maxReplicas")
		if lo < 2 || hi < lo {
			t.Errorf("%s: replicas %d..%d, want at least 2 and min <= max", h, lo, hi)
		}
		if str(h, "spec", "scaleTargetRef", "name") != d.name() || str(h, "spec", "scaleTargetRef", "kind") != "Deployment" {
			t.Errorf("%s scales %v", h, get(h, "spec", "scaleTargetRef"))
		}
	}
	p := find(objs, "Deployment", release+"-projector")
	if n, _ := num(p, "spec", "replicas"); n != 3 {
		t.Errorf("projector replicas %d, want 3", n)
	}

	for _, c := range components {
		pdb := find(objs, "PodDisruptionBudget", release+"-"+c)
		if pdb == nil {
			t.Errorf("no PodDisruptionBudget for the %s", c)
			continue
		}
		if str(pdb, "apiVersion") != "policy/v1" {
			t.Errorf("%s: apiVersion %s", pdb, str(pdb, "apiVersion"))
		}
		if str(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != c {
			t.Errorf("%s selects %v", pdb, get(pdb, "spec", "selector"))
		}
	}

	sm := find(objs, "ServiceMonitor", release)
	if sm == nil {
		t.Fatal("no ServiceMonitor with metrics.serviceMonitor.enabled and the API present")
	}
	if str(sm, "spec", "endpoints", "0", "path") != "/metrics" || str(sm, "spec", "endpoints", "0", "port") != "http" {
		t.Errorf("ServiceMonitor endpoints %v", get(sm, "spec", "endpoints"))
	}
	// Each component's Service is selected by the ServiceMonitor and names the port it scrapes.
	for _, c := range components {
		svc := find(objs, "Service", release+"-"+c)
		if str(svc, "spec", "ports", "0", "name") != "http" || str(svc, "metadata", "labels", "app.kubernetes.io/instance") != release {
			t.Errorf("%s: ports %v", svc, get(svc, "spec", "ports"))
		}
	}

	// Kafka over TLS with SASL, the credentials from their Secret.
	w := find(objs, "Deployment", release+"-writer")
	cm := find(objs, "ConfigMap", release+"-writer")
	if str(cm, "data", "KAFKA_TLS") != "true" || str(cm, "data", "KAFKA_SASL_MECHANISM") != "SCRAM-SHA-512" ||
		!strings.HasPrefix(str(cm, "data", "KAFKA_TLS_CA_FILE"), "/etc/tributary/kafka-tls/") {
		t.Errorf("writer Kafka settings: %v", get(cm, "data"))
	}
	env := containerEnv(w)
	if env["KAFKA_SASL_PASSWORD"] != "secret:tributary-kafka-sasl/password" {
		t.Errorf("KAFKA_SASL_PASSWORD of the writer: %q", env["KAFKA_SASL_PASSWORD"])
	}
	if !slices.ContainsFunc(list(w, "spec", "template", "spec", "volumes"), func(v any) bool {
		return str(v, "secret", "secretName") == "tributary-kafka-tls"
	}) {
		t.Error("the writer does not mount the Kafka TLS Secret")
	}

	// Without the operator's API, neither ServiceMonitor nor PrometheusRule is rendered.
	_, objs = render(t, "--values", productionValues)
	for _, k := range []string{"ServiceMonitor", "PrometheusRule"} {
		if got := ofKind(objs, k); len(got) != 0 {
			t.Errorf("%s rendered without its API: %v", k, got)
		}
	}
}

// checkCommon checks what every configuration must get right.
func checkCommon(t *testing.T, objs []object) {
	t.Helper()
	for _, o := range objs {
		labels, _ := get(o, "metadata", "labels").(map[string]any)
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"} {
			if labels[l] == nil || labels[l] == "" {
				t.Errorf("%s has no label %s", o, l)
			}
		}
	}

	for _, c := range components {
		d := find(objs, "Deployment", release+"-"+c)
		if d == nil {
			t.Fatalf("no Deployment for the %s", c)
		}
		for _, l := range []string{"metadata", "spec.selector.matchLabels", "spec.template.metadata"} {
			path := strings.Split(l, ".")
			if !strings.HasSuffix(l, "matchLabels") {
				path = append(path, "labels")
			}
			if got := str(d, append(path, "app.kubernetes.io/component")...); got != c {
				t.Errorf("%s: %s app.kubernetes.io/component=%q, want %q", d, l, got, c)
			}
		}
		pod := get(d, "spec", "template", "spec")
		if v, _ := get(pod, "securityContext", "runAsNonRoot").(bool); !v {
			t.Errorf("%s: pod not runAsNonRoot", d)
		}
		grace, _ := num(pod, "terminationGracePeriodSeconds")
		cm := find(objs, "ConfigMap", release+"-"+c)
		shutdown := str(cm, "data", "SHUTDOWN_TIMEOUT")
		secs, err := strconv.Atoi(strings.TrimSuffix(shutdown, "s"))
		if err != nil || grace <= secs {
			t.Errorf("%s: terminationGracePeriodSeconds %d not above SHUTDOWN_TIMEOUT %q", d, grace, shutdown)
		}
		containers := list(pod, "containers")
		if len(containers) == 0 {
			t.Fatalf("%s has no containers", d)
		}
		for _, ctr := range containers {
			name := str(ctr, "name")
			for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
				if get(ctr, probe, "httpGet") == nil {
					t.Errorf("%s container %s: no HTTP %s", d, name, probe)
				}
			}
			if p := str(ctr, "readinessProbe", "httpGet", "path"); p != "/readyz" {
				t.Errorf("%s container %s: readiness on %q, want /readyz", d, name, p)
			}
			if p := str(ctr, "livenessProbe", "httpGet", "path"); p != "/healthz" {
				t.Errorf("%s container %s: liveness on %q, want /healthz", d, name, p)
			}
			if cmd := list(ctr, "command"); len(cmd) == 0 || cmd[0] != imageBinDir(t)+c {
				t.Errorf("%s container %s: command %v, want %s%s (where the Dockerfile puts it)", d, name, cmd, imageBinDir(t), c)
			}
			sc := get(ctr, "securityContext")
			if ro, _ := get(sc, "readOnlyRootFilesystem").(bool); !ro {
				t.Errorf("%s container %s: root file system writable", d, name)
			}
			if esc, ok := get(sc, "allowPrivilegeEscalation").(bool); !ok || esc {
				t.Errorf("%s container %s: privilege escalation allowed", d, name)
			}
			if drop := list(sc, "capabilities", "drop"); !slices.Contains(drop, any("ALL")) {
				t.Errorf("%s container %s: capabilities not all dropped: %v", d, name, drop)
			}
			if get(ctr, "resources", "requests") == nil {
				t.Errorf("%s container %s: no resource requests", d, name)
			}
			// The port the probes use is the one the process listens on.
			port, _ := num(ctr, "ports", "0", "containerPort")
			addr := str(cm, "data", strings.ToUpper(c)+"_HTTP_ADDR")
			if addr != fmt.Sprintf(":%d", port) {
				t.Errorf("%s: %s_HTTP_ADDR %q, container port %d", d, strings.ToUpper(c), addr, port)
			}
		}
		if got := str(cm, "data", "OTEL_SERVICE_NAME"); got != "tributary-"+c {
			t.Errorf("%s: OTEL_SERVICE_NAME %q", cm, got)
		}
		if !strings.Contains(containerEnv(d)["OTEL_RESOURCE_ATTRIBUTES"], "k8s.pod.name=$(POD_NAME)") {
			t.Errorf("%s: OTEL_RESOURCE_ATTRIBUTES %q", d, containerEnv(d)["OTEL_RESOURCE_ATTRIBUTES"])
		}
		if str(d, "spec", "template", "spec", "containers", "0", "envFrom", "0", "configMapRef", "name") != cm.name() {
			t.Errorf("%s does not take its settings from ConfigMap %s", d, cm.name())
		}
	}

	// Secrets are referenced, never inlined: no rendered value looks like a
	// connection string with a password, and the URLs come from secretKeyRefs.
	for _, c := range components {
		env := containerEnv(find(objs, "Deployment", release+"-"+c))
		wantSecret := map[string][]string{"writer": {"DATABASE_URL"}, "projector": {"REDIS_URL"}, "reader": {"REDIS_URL"}}[c]
		for _, k := range wantSecret {
			if !strings.HasPrefix(env[k], "secret:") {
				t.Errorf("%s: %s is %q, not a Secret reference", c, k, env[k])
			}
		}
		for k := range env {
			if strings.Contains(k, "PASSWORD") && !strings.HasPrefix(env[k], "secret:") {
				t.Errorf("%s: %s inline", c, k)
			}
		}
		for k, v := range get(find(objs, "ConfigMap", release+"-"+c), "data").(map[string]any) {
			if strings.Contains(k, "PASSWORD") || k == "DATABASE_URL" || k == "REDIS_URL" || strings.Contains(fmt.Sprint(v), "@") {
				t.Errorf("ConfigMap of the %s holds %s", c, k)
			}
		}
	}

	if len(ofKind(objs, "NetworkPolicy")) > 0 {
		checkNetworkPolicies(t, objs)
	}

	// The projector: readiness is "consuming", and never more replicas than partitions.
	partitions, _ := strconv.Atoi(str(find(objs, "ConfigMap", release+"-projector"), "data", "KAFKA_PARTITIONS"))
	if n, ok := num(find(objs, "Deployment", release+"-projector"), "spec", "replicas"); ok && n > partitions {
		t.Errorf("projector replicas %d above KAFKA_PARTITIONS %d", n, partitions)
	}

	// The migrations: a hook that runs `writer migrate` before install and
	// upgrade, before the Deployments, after the chart's own Secret if any.
	job := find(objs, "Job", release+"-migrate")
	if job == nil {
		t.Fatal("no migrations Job")
	}
	ann, _ := get(job, "metadata", "annotations").(map[string]any)
	if ann["helm.sh/hook"] != "pre-install,pre-upgrade" {
		t.Errorf("migrations hook %q", ann["helm.sh/hook"])
	}
	if !strings.Contains(fmt.Sprint(ann["helm.sh/hook-delete-policy"]), "before-hook-creation") {
		t.Errorf("migrations hook delete policy %q", ann["helm.sh/hook-delete-policy"])
	}
	jobWeight, err := strconv.Atoi(fmt.Sprint(ann["helm.sh/hook-weight"]))
	if err != nil {
		t.Errorf("migrations hook weight %q", ann["helm.sh/hook-weight"])
	}
	for _, o := range objs {
		a, _ := get(o, "metadata", "annotations").(map[string]any)
		hook := fmt.Sprint(a["helm.sh/hook"])
		switch {
		case o.kind() == "Deployment" && a["helm.sh/hook"] != nil:
			t.Errorf("%s is a hook: it must be installed after the migrations", o)
		case o.kind() == "Secret" && strings.Contains(hook, "pre-install"):
			if w, _ := strconv.Atoi(fmt.Sprint(a["helm.sh/hook-weight"])); w >= jobWeight {
				t.Errorf("%s (hook weight %d) is not created before the migrations (weight %d)", o, w, jobWeight)
			}
		}
	}
	cmd := list(job, "spec", "template", "spec", "containers", "0", "command")
	if fmt.Sprint(cmd) != "["+imageBinDir(t)+"writer migrate]" {
		t.Errorf("migrations command %v", cmd)
	}
	if env := containerEnv(job); !strings.HasPrefix(env["DATABASE_URL"], "secret:") {
		t.Errorf("migrations DATABASE_URL %q", env["DATABASE_URL"])
	}
	if get(job, "spec", "template", "spec", "containers", "0", "envFrom") != nil {
		t.Error("the migrations read a ConfigMap, which does not exist yet when a pre-install hook runs")
	}
}

// TestDevSecrets renders the development-only Secret: created by the chart
// only when asked, as a hook before the migrations, and referenced by key.
func TestDevSecrets(t *testing.T) {
	_, objs := render(t, append(slices.Clone(minimal), "--set", "devSecrets.create=true,devSecrets.databaseURL=postgres://u:p@pg/db,devSecrets.redisURL=redis://r:6379/0,postgres.existingSecret=,redis.existingSecret=")...)
	checkCommon(t, objs)
	s := find(objs, "Secret", release+"-dev")
	if s == nil {
		t.Fatal("no development Secret")
	}
	if str(s, "metadata", "annotations", "helm.sh/hook") != "pre-install,pre-upgrade" {
		t.Errorf("development Secret is not a pre-install hook: %v", get(s, "metadata", "annotations"))
	}
	if str(s, "stringData", "DATABASE_URL") != "postgres://u:p@pg/db" {
		t.Errorf("development Secret data %v", get(s, "stringData"))
	}
	if env := containerEnv(find(objs, "Deployment", release+"-writer")); env["DATABASE_URL"] != "secret:"+release+"-dev/DATABASE_URL" {
		t.Errorf("writer DATABASE_URL %q", env["DATABASE_URL"])
	}
	if env := containerEnv(find(objs, "Job", release+"-migrate")); env["DATABASE_URL"] != "secret:"+release+"-dev/DATABASE_URL" {
		t.Errorf("migrations DATABASE_URL %q", env["DATABASE_URL"])
	}
}

// TestBadValues checks that a bad configuration fails helm template with a
// message naming the setting.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		// The auth settings: none by default, and each mode's requirements.
		{"no auth settings", nil, "auth.issuer is required with auth.mode=jwt"},
		{"no auth settings names the audience", nil, "auth.audience is required with auth.mode=jwt"},
		{"no auth settings names the key set", nil, "auth.jwksUrl (the issuer's JWKS endpoint) or auth.jwks.configMap / auth.jwks.secret"},
		{"jwt without an issuer", []string{"--set", "auth.issuer="}, "auth.issuer is required with auth.mode=jwt"},
		{"jwt without an audience", []string{"--set", "auth.audience="}, "auth.audience is required with auth.mode=jwt"},
		{"jwt without a key set", []string{"--set", "auth.jwksUrl="},
			"auth.jwksUrl (the issuer's JWKS endpoint) or auth.jwks.configMap / auth.jwks.secret"},
		{"jwt with a URL and a key set reference", []string{"--set", "auth.jwks.secret=jwks"},
			"auth.jwksUrl and auth.jwks.configMap/auth.jwks.secret exclude each other"},
		{"key set from a ConfigMap and a Secret", []string{"--set", "auth.jwksUrl=,auth.jwks.configMap=a,auth.jwks.secret=b"},
			"auth.jwks.configMap and auth.jwks.secret exclude each other"},
		{"proxy without trusted proxies", []string{"--set", "auth.mode=proxy"},
			"auth.proxy.trustedProxies is required with auth.mode=proxy"},
		{"off without allowInsecureOff", []string{"--set", "auth.mode=off"},
			"auth.mode=off turns authentication off"},
		{"unknown auth mode", []string{"--set", "auth.mode=basic"}, "mode"},
		{"a symmetric algorithm", []string{"--set-json", `auth.algorithms=["HS256"]`}, "algorithms"},
		{"credentials in the JWKS URL", []string{"--set", "auth.jwksUrl=https://user:pass@idp.example.com/jwks"}, "jwksUrl"},
		{"a trusted proxy that is no address", []string{"--set", "auth.mode=proxy,auth.proxy.trustedProxies={proxy.example.com}"}, "trustedProxies"},
		{"an auth setting as plain env", []string{"--set", "reader.env.AUTH_JWKS_URL=https://elsewhere.example.com/jwks"}, "AUTH_JWKS_URL"},
		{"an auth setting in otel.env", []string{"--set", "otel.env.AUTH_MODE=off"}, "AUTH_MODE"},
		{"an auth setting as extra env", []string{"--set-json", `writer.extraEnv=[{"name":"AUTH_ISSUER","value":"x"}]`}, "extraEnv"},
		{"the removed principal header", []string{"--set", "writer.env.WRITER_PRINCIPAL_HEADER=X-User"}, "WRITER_PRINCIPAL_HEADER"},
		{"network policy letting no one in", []string{"--set", "networkPolicy.api.allowSameNamespace=false"},
			"networkPolicy.api lets no one call the writer and the reader"},
		{"network policy peer without a selector", []string{"--set-json", `networkPolicy.api.extraFrom=[{}]`}, "extraFrom"},
		{"network policy port out of range", []string{"--set-json", `networkPolicy.egress.postgres.ports=[70000]`}, "ports"},

		{"no Postgres Secret", []string{"--set", "postgres.existingSecret="},
			"postgres.existingSecret is required: the Secret holding DATABASE_URL"},
		{"no Postgres key", []string{"--set", "postgres.urlKey="}, "postgres.urlKey"},
		{"no Redis Secret", []string{"--set", "redis.existingSecret="},
			"redis.existingSecret is required: the Secret holding REDIS_URL"},
		{"no Kafka brokers", []string{"--set-json", "kafka.brokers=[]"}, "kafka.brokers is required"},
		{"SASL without a Secret", []string{"--set", "kafka.sasl.mechanism=PLAIN"},
			"kafka.sasl.existingSecret is required: the Secret holding KAFKA_SASL_USERNAME"},
		{"dev Secret without its URL", []string{"--set", "devSecrets.create=true,postgres.existingSecret="},
			"devSecrets.databaseURL is required"},
		{"more projectors than partitions", []string{"--set", "projector.replicaCount=13"},
			"projector.replicaCount (13) must not exceed kafka.partitions (12)"},
		{"projector autoscaling beyond partitions", []string{"--set", "kafka.partitions=4,projector.autoscaling.enabled=true,projector.autoscaling.maxReplicas=6"},
			"projector.autoscaling.maxReplicas (6) must not exceed kafka.partitions (4)"},
		{"grace period too short", []string{"--set", "writer.terminationGracePeriodSeconds=10"},
			"writer.terminationGracePeriodSeconds (10) must exceed writer.shutdownTimeoutSeconds"},
		{"autoscaling bounds", []string{"--set", "reader.autoscaling.enabled=true,reader.autoscaling.minReplicas=5,reader.autoscaling.maxReplicas=2"},
			"reader.autoscaling.minReplicas (5) must not exceed reader.autoscaling.maxReplicas (2)"},
		{"misspelt value", []string{"--set", "writer.replicas=3"}, "replicas"},
		{"wrong type", []string{"--set-string", "writer.replicaCount=three"}, "replicaCount"},
		{"unknown projection", []string{"--set", "projector.projections={account-balance}"}, "projections"},
		{"bad SASL mechanism", []string{"--set", "kafka.sasl.mechanism=GSSAPI"}, "mechanism"},
		{"a secret as plain env", []string{"--set", "writer.env.DATABASE_URL=postgres://u:p@h/db"}, "DATABASE_URL"},
		{"mutual TLS half set", []string{"--set", "kafka.tls.enabled=true,kafka.tls.existingSecret=k,kafka.tls.certKey=tls.crt"},
			"kafka.tls.certKey and kafka.tls.keyKey go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", release, chartDir}
			if tc.args != nil { // the minimal values, so that only the case's own mistake fails
				args = append(args, minimal...)
			}
			out, err := helmCmd(t, append(args, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template succeeded:\n%.400s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a message with %q, got:\n%v", tc.want, err)
			}
		})
	}
}

// TestDashboardsAndRules renders the Grafana dashboards and the alert rules
// from the chart's files/: one ConfigMap per dashboard, labelled for the
// sidecar, and the rule groups as the PrometheusRule's spec.
func TestDashboardsAndRules(t *testing.T) {
	dashboards, _ := filepath.Glob(filepath.Join(chartDir, "files", "dashboards", "*.json"))
	_, objs := render(t, append([]string{"--values", productionValues}, operatorAPIs...)...)
	var cms []object
	for _, o := range ofKind(objs, "ConfigMap") {
		if str(o, "metadata", "labels", "grafana_dashboard") == "1" {
			cms = append(cms, o)
		}
	}
	if len(cms) != len(dashboards) {
		t.Errorf("%d dashboard ConfigMaps for %d files/dashboards/*.json", len(cms), len(dashboards))
	}
	for _, f := range dashboards {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cms, func(o object) bool {
			return strings.TrimSpace(str(o, "data", filepath.Base(f))) == strings.TrimSpace(string(want))
		}) {
			t.Errorf("no ConfigMap carries %s as it is", f)
		}
	}

	var rules struct {
		Groups []any `yaml:"groups"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "files", "prometheus", "rules.yml"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("files/prometheus/rules.yml: %v", err)
	}
	pr := find(objs, "PrometheusRule", release)
	switch {
	case len(rules.Groups) == 0 && pr != nil:
		t.Error("a PrometheusRule without rule groups")
	case len(rules.Groups) > 0 && pr == nil:
		t.Error("no PrometheusRule although files/prometheus/rules.yml has groups")
	case pr != nil && len(list(pr, "spec", "groups")) != len(rules.Groups):
		t.Errorf("PrometheusRule has %d groups, the file %d", len(list(pr, "spec", "groups")), len(rules.Groups))
	}
}

// imageBinDir is where the repository's Dockerfile puts the binaries (the
// destination of its final stage's COPY --from=build /out/), ending in "/".
func imageBinDir(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, line := range strings.Split(df[strings.LastIndex(df, "\nFROM "):], "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "COPY" && f[1] == "--from=build" && f[2] == "/out/" {
			return strings.TrimSuffix(f[3], "/") + "/"
		}
	}
	t.Fatal("the Dockerfile's final stage has no COPY --from=build /out/ <dir>")
	return ""
}
