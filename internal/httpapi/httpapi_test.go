package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Latency is recorded by the route that matched, never by the raw path (an
// attacker's paths must not grow the label set), with the status code.
func TestInstrumentLabelsByRoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	seconds := NewLatencyHistogram("test")
	reg.MustRegister(seconds)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := Instrument(seconds, mux)
	for _, path := range []string{"/v1/things/a", "/v1/things/b", "/nowhere/1", "/nowhere/2"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, m := range mfs[0].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		got[labels["route"]+" "+labels["method"]+" "+labels["code"]] = m.GetHistogram().GetSampleCount()
	}
	want := map[string]uint64{"GET /v1/things/{id} GET 418": 2, "unmatched GET 404": 2}
	if len(got) != len(want) || got["GET /v1/things/{id} GET 418"] != 2 || got["unmatched GET 404"] != 2 {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

func TestQueryIntBounds(t *testing.T) {
	for query, ok := range map[string]bool{"": true, "m=": true, "n=5": true, "n=1": true, "n=10": true, "n=0": false, "n=11": false, "n=x": false, "n=5.0": false,
		"n=": false, "n": false, "n=&n=5": false} {
		_, p := QueryInt(httptest.NewRequest(http.MethodGet, "/?"+query, nil), "n", 3, 1, 10)
		if (p == nil) != ok {
			t.Errorf("%q: problem %v, want ok=%v", query, p, ok)
		}
	}
}

// Query tells an absent parameter ("") from an empty one (a problem).
func TestQueryRefusesAnEmptyValue(t *testing.T) {
	for query, want := range map[string]string{"": "", "x=1": "", "q=a": "a", "q=a&q=b": "a", "q=%20": " "} {
		got, p := Query(httptest.NewRequest(http.MethodGet, "/?"+query, nil), "q")
		if p != nil || got != want {
			t.Errorf("%q: %q, problem %v; want %q", query, got, p, want)
		}
	}
	for _, query := range []string{"q", "q=", "q=&q=a", "x=1&q"} {
		got, p := Query(httptest.NewRequest(http.MethodGet, "/?"+query, nil), "q")
		if p == nil || p.Status != http.StatusBadRequest || got != "" {
			t.Errorf("%q: %q, problem %v; want a 400", query, got, p)
		}
	}
}

// A path served for other methods answers 405 with Allow; an unknown path
// 404; both as problem documents.
func TestUnmatchedSays405Or404(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v1/things/{id}/poke", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", Unmatched(mux, http.MethodGet, http.MethodPost))
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodDelete, "/v1/things/a", http.StatusMethodNotAllowed, "GET"},
		{http.MethodGet, "/v1/things/a/poke", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/v1/nothing", http.StatusNotFound, ""},
		{http.MethodPost, "/v1/things", http.StatusNotFound, ""},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d Allow %q %s; want %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"),
				rec.Header().Get("Content-Type"), tc.status, tc.allow)
		}
	}
}
