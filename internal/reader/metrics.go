package reader

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	httpSeconds *prometheus.HistogramVec
	waitSeconds *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_reader_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "status"}),
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_reader_consistency_wait_seconds",
			Help:    "Time a query that named a version it must see waited for the projection, by outcome: fresh (reached) or stale (not within the bound).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.httpSeconds, m.waitSeconds)
	return m
}
