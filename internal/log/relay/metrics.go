package relay

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	backlog     prometheus.Gauge
	leader      prometheus.Gauge
	published   *prometheus.CounterVec
	failed      prometheus.Counter
	commitToAck prometheus.Histogram
}

// NewMetrics registers the relay's metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_relay_backlog_events",
			Help: "Events in the event store not yet acknowledged by Kafka (counted up to 10 million).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_relay_leader",
			Help: "1 while this process is the active relay, 0 while it stands by.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_relay_events_published_total",
			Help: "Events Kafka acknowledged, by topic (a retried batch counts again).",
		}, []string{"topic"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_relay_publish_failures_total",
			Help: "Events in batches whose publish failed and was retried.",
		}),
		commitToAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tributary_relay_commit_to_ack_seconds",
			Help:    "Time from an event's commit (recorded time) to Kafka's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	reg.MustRegister(m.backlog, m.leader, m.published, m.failed, m.commitToAck)
	return m
}
