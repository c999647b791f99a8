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
	for query, ok := range map[string]bool{"": true, "n=5": true, "n=1": true, "n=10": true, "n=0": false, "n=11": false, "n=x": false, "n=5.0": false} {
		_, p := QueryInt(httptest.NewRequest(http.MethodGet, "/?"+query, nil), "n", 3, 1, 10)
		if (p == nil) != ok {
			t.Errorf("%q: problem %v, want ok=%v", query, p, ok)
		}
	}
}
