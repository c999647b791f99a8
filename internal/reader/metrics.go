package reader

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/httpapi"
)

type metrics struct {
	httpSeconds *prometheus.HistogramVec
	waitSeconds *prometheus.HistogramVec
	waitsShed   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		httpSeconds: httpapi.NewLatencyHistogram("reader"),
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_reader_consistency_wait_seconds",
			Help:    "Time a query that named a version it must see waited for the projection, by outcome: fresh (reached) or stale (not within the bound).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"outcome"}),
		waitsShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_reader_consistency_waits_shed_total",
			Help: "Queries that named a version their projection lacked and were answered at once (stale or not ready) because --max-waiting queries were already waiting.",
		}),
	}
	reg.MustRegister(m.httpSeconds, m.waitSeconds, m.waitsShed)
	return m
}
