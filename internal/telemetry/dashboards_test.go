package telemetry_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v4"
)

// parsePromQL parses PromQL as Prometheus does, without experimental
// functions.
func parsePromQL(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// query is one PromQL expression of a dashboard panel or an alert rule.
type query struct {
	where string // "overview.json: Relay backlog", "rules.yml: TributaryRelayNoLeader"
	expr  string
}

// loadDashboards reads every dashboard of the chart.
func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(filesDir, "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v (want at least overview and projection lag)", files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardQueries are the expressions of every panel, Grafana's variables
// left in.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var out []query
	for file, d := range loadDashboards(t) {
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				out = append(out, query{where: file + ": " + p.Title, expr: tg.Expr})
			}
		}
	}
	return out
}

// ruleQueries are the expressions of every alert rule.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filesDir, "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: "rules.yml: " + r.Alert + r.Record, expr: r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("rules.yml has no rules")
	}
	return out
}

// substitute replaces Grafana's variables as a query against a Prometheus
// scraping every second would see them; projection selects the projection
// variable's value (".*" is All).
func substitute(expr, rateInterval, projection string) string {
	return strings.NewReplacer(
		"$__rate_interval", rateInterval,
		"${__rate_interval}", rateInterval,
		"$__range", "2m",
		"$__interval", "1s",
		"${projection}", projection,
		"$projection", projection,
	).Replace(expr)
}

// Every dashboard takes its data source from a `datasource` variable (the
// exported ${DS_...} inputs do not work with file provisioning), every
// panel and target uses it, rates use $__rate_interval, and every panel's
// expression is valid PromQL.
func TestDashboards(t *testing.T) {
	for file, d := range loadDashboards(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", file)
		}
		hasDS := false
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" && strings.Contains(string(v.Query), "prometheus") {
				hasDS = true
			}
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("%s: variable %s does not query ${datasource}", file, v.Name)
			}
		}
		if !hasDS {
			t.Errorf("%s: no `datasource` variable of type datasource (prometheus)", file)
		}
		raw, _ := os.ReadFile(filepath.Join(filesDir, "dashboards", file))
		if strings.Contains(string(raw), "DS_") || strings.Contains(string(raw), "__inputs") {
			t.Errorf("%s: exported ${DS_*} inputs do not work with file provisioning", file)
		}
		targets := 0
		for _, p := range allPanels(d.Panels) {
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use ${datasource}", file, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				targets++
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s: a target of %q uses data source %q", file, p.Title, tg.Datasource.UID)
				}
				if strings.Contains(tg.Expr, "rate(") && !strings.Contains(tg.Expr, "$__rate_interval") {
					t.Errorf("%s: %q: a rate without $__rate_interval: %s", file, p.Title, tg.Expr)
				}
				if _, err := parsePromQL(substitute(tg.Expr, "1m", ".*")); err != nil {
					t.Errorf("%s: %q: %s: %v", file, p.Title, tg.Expr, err)
				}
			}
		}
		if targets == 0 {
			t.Errorf("%s: no queries", file)
		}
	}
	for _, q := range ruleQueries(t) {
		if _, err := parsePromQL(q.expr); err != nil {
			t.Errorf("%s: %v", q.where, err)
		}
	}
}
