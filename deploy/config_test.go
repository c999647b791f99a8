package deploy

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// The files docker-compose.yml mounts into Prometheus, the OpenTelemetry
// collector and Grafana.

// mountSource returns the repository path mounted at target in a service.
func mountSource(t *testing.T, p *types.Project, svc, target string) string {
	t.Helper()
	for _, v := range service(t, p, svc).Volumes {
		if v.Target == target {
			if filepath.IsAbs(v.Source) {
				return v.Source
			}
			return filepath.Join(repoRoot(t), v.Source)
		}
	}
	t.Fatalf("%s mounts nothing at %s", svc, target)
	return ""
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
}

func TestPrometheusScrapesTheThreeProcessesAndLoadsTheRules(t *testing.T) {
	p := loadCompose(t)
	cfgPath := mountSource(t, p, "prometheus", "/etc/prometheus/prometheus.yml")
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, cfgPath, &cfg)
	targets := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	for name, app := range apps {
		if tg := name + ":" + strconv.Itoa(int(app.port)); !targets[tg] {
			t.Errorf("Prometheus does not scrape %s/metrics", tg)
		}
	}
	// The rule files come from the chart, mounted into the container.
	rulesDir := mountSource(t, p, "prometheus", "/etc/prometheus/rules")
	if want := filepath.Join(repoRoot(t), "deploy", "helm", "tributary", "files", "prometheus"); rulesDir != want {
		t.Errorf("Prometheus rules are mounted from %s, want %s", rulesDir, want)
	}
	if !slices.ContainsFunc(cfg.RuleFiles, func(f string) bool { return strings.HasPrefix(f, "/etc/prometheus/rules/") }) {
		t.Errorf("rule_files %q load nothing from /etc/prometheus/rules", cfg.RuleFiles)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: config and rules checked as YAML only")
		return
	}
	if out, err := exec.Command(promtool, "check", "config", "--syntax-only", cfgPath).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
	rules, _ := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	if len(rules) == 0 {
		t.Logf("no rule files in %s yet", rulesDir)
		return
	}
	if out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput(); err != nil {
		t.Errorf("the chart's rule files do not load as Prometheus rule files: %v\n%s", err, out)
	}
}

func TestOtelCollectorForwardsTracesToTheTraceUI(t *testing.T) {
	p := loadCompose(t)
	s := service(t, p, "otel-collector")
	var cfgTarget string
	for _, arg := range s.Command {
		if v, ok := strings.CutPrefix(arg, "--config="); ok {
			cfgTarget = v
		}
	}
	if cfgTarget == "" {
		t.Fatalf("otel-collector command %q has no --config=", s.Command)
	}
	var cfg struct {
		Receivers  map[string]map[string]any `yaml:"receivers"`
		Processors map[string]any            `yaml:"processors"`
		Exporters  map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Extensions map[string]any `yaml:"extensions"`
		Service    struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, mountSource(t, p, "otel-collector", cfgTarget), &cfg)

	var otlp struct {
		Protocols struct {
			GRPC struct{ Endpoint string } `yaml:"grpc"`
			HTTP struct{ Endpoint string } `yaml:"http"`
		} `yaml:"protocols"`
	}
	b, _ := yaml.Marshal(cfg.Receivers["otlp"])
	if err := yaml.Unmarshal(b, &otlp); err != nil {
		t.Fatal(err)
	}
	// The collector listens on localhost unless told otherwise.
	if otlp.Protocols.HTTP.Endpoint != "0.0.0.0:4318" || otlp.Protocols.GRPC.Endpoint != "0.0.0.0:4317" {
		t.Errorf("otlp receiver listens on http %q, grpc %q; want 0.0.0.0:4318 and 0.0.0.0:4317",
			otlp.Protocols.HTTP.Endpoint, otlp.Protocols.GRPC.Endpoint)
	}

	traces, ok := cfg.Service.Pipelines["traces"]
	if !ok {
		t.Fatal("the collector has no traces pipeline")
	}
	if !slices.Contains(traces.Receivers, "otlp") {
		t.Errorf("traces pipeline receives from %q, want otlp", traces.Receivers)
	}
	for _, r := range traces.Receivers {
		if _, ok := cfg.Receivers[r]; !ok {
			t.Errorf("traces pipeline names receiver %s, which is not configured", r)
		}
	}
	for _, pr := range traces.Processors {
		if _, ok := cfg.Processors[pr]; !ok {
			t.Errorf("traces pipeline names processor %s, which is not configured", pr)
		}
	}
	for _, e := range cfg.Service.Extensions {
		if _, ok := cfg.Extensions[e]; !ok {
			t.Errorf("service names extension %s, which is not configured", e)
		}
	}
	toUI := false
	for _, e := range traces.Exporters {
		exp, ok := cfg.Exporters[e]
		if !ok {
			t.Errorf("traces pipeline names exporter %s, which is not configured", e)
			continue
		}
		host := exp.Endpoint
		if u, err := url.Parse(exp.Endpoint); err == nil && u.Host != "" {
			host = u.Host
		}
		if strings.HasPrefix(host, "jaeger:") {
			toUI = true
		}
	}
	if !toUI {
		t.Errorf("no exporter of the traces pipeline sends to jaeger")
	}
}

func TestGrafanaProvisionsPrometheusAndTheDashboards(t *testing.T) {
	p := loadCompose(t)
	prov := mountSource(t, p, "grafana", "/etc/grafana/provisioning")

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			IsDefault            bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "datasources.yml"), &ds)
	if ds.APIVersion != 1 {
		t.Errorf("datasources apiVersion %d, want 1", ds.APIVersion)
	}
	prom := false
	for _, d := range ds.Datasources {
		if d.Type == "prometheus" {
			prom = true
			if d.UID == "" || !d.IsDefault || d.URL != "http://prometheus:9090" {
				t.Errorf("Prometheus datasource %+v: want a uid, isDefault and url http://prometheus:9090", d)
			}
		}
	}
	if !prom {
		t.Error("no Prometheus datasource is provisioned")
	}

	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string
			Options struct{ Path string }
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "dashboards.yml"), &dash)
	if dash.APIVersion != 1 || len(dash.Providers) == 0 {
		t.Fatalf("dashboards provisioning: apiVersion %d with %d providers, want 1 with one or more", dash.APIVersion, len(dash.Providers))
	}
	src := mountSource(t, p, "grafana", dash.Providers[0].Options.Path)
	if want := filepath.Join(repoRoot(t), "deploy", "helm", "tributary", "files", "dashboards"); src != want {
		t.Errorf("Grafana loads dashboards from %s, want the chart's %s", src, want)
	}
}
