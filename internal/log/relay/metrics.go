package relay

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	backlog     prometheus.Gauge
	leader      prometheus.Gauge
	published   *prometheus.CounterVec
	failed      prometheus.Counter
	commitToAck prometheus.Histogram
	// heldSeconds and holder: the oldest transaction holding the
	// watermark back, how long it has been open and who it is.
	heldSeconds prometheus.Gauge
	holder      *prometheus.GaugeVec
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
		heldSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_relay_oldest_transaction_seconds",
			Help: "How long the oldest transaction on the Postgres server that holds a transaction id has been open (0: none). " +
				"The relay cannot pass it: events committed after it started wait until it ends.",
		}),
		holder: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_relay_oldest_transaction_info",
			Help: "1 for the oldest transaction holding the relay's watermark back, by its backend pid and application_name " +
				"(pid 0 and an empty name where the relay's role may not read them); no series when none is.",
		}, []string{"pid", "application_name"}),
	}
	reg.MustRegister(m.backlog, m.leader, m.published, m.failed, m.commitToAck, m.heldSeconds, m.holder)
	return m
}
