package projector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the projectors' Prometheus metrics, shared by every projection
// of a process. The lag gauges carry the labels of kafka_exporter's
// kafka_consumergroup_lag (consumergroup, topic, partition) beside the
// projection, so panels can be compared.
type Metrics struct {
	events      *prometheus.CounterVec   // projection, type, outcome
	apply       *prometheus.HistogramVec // projection
	deadLetters *prometheus.CounterVec   // projection, topic
	lagEvents   *prometheus.GaugeVec     // projection, consumergroup, topic, partition
	lagSeconds  *prometheus.GaugeVec     // projection, consumergroup, topic, partition
	active      *prometheus.GaugeVec     // projection: the generation readers use
	target      *prometheus.GaugeVec     // projection: the generation being written
	stepLanes   prometheus.Histogram     // lanes of one step call
	// rendezvousTimeouts counts rounds sent without a busy lane's step.
	rendezvousTimeouts prometheus.Counter
}

// Outcomes of an event, the "outcome" label of tributary_projection_events_total.
const (
	outcomeApplied      = "applied"
	outcomeDuplicate    = "duplicate"
	outcomeDeadLettered = "dead_lettered"
	outcomeReplayed     = "replayed" // applied from the dead-letter topic
)

func NewMetrics(reg prometheus.Registerer) *Metrics {
	lagLabels := []string{"projection", "consumergroup", "topic", "partition"}
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_projection_events_total",
			Help: "Events handled by a projection, by event type and outcome (applied, duplicate, dead_lettered, replayed).",
		}, []string{"projection", "type", "outcome"}),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_projection_apply_seconds",
			Help:    "Time to apply one batch of events and its position to Redis.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"projection"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_projection_dead_lettered_total",
			Help: "Events parked on the projection's dead-letter topic after their retries.",
		}, []string{"projection", "topic"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_projection_lag_events",
			Help: "Events on the partition not yet applied by the projection: end offset − position.",
		}, lagLabels),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_projection_lag_seconds",
			Help: "Age of the oldest event on the partition not yet applied by the projection; 0 when caught up.",
		}, lagLabels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_projection_active_generation",
			Help: "The generation of the projection that readers use (0: none yet).",
		}, []string{"projection"}),
		target: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_projection_target_generation",
			Help: "The generation of the projection being written; above the active one while a rebuild runs.",
		}, []string{"projection"}),
		stepLanes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tributary_projection_step_lanes",
			Help:    "Lanes (projections, generations) of one partition applied in one Redis step call: above 1 when fused (a single Redis server).",
			Buckets: []float64{1, 2, 3, 4, 6, 8},
		}),
		rendezvousTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_projection_rendezvous_timeouts_total",
			Help: "Rounds of a partition's steps sent after waiting the full 100 ms (rendezvousWait) for a projection that had records but did not hand its step over: a steady rate means one projection slows the others.",
		}),
	}
	reg.MustRegister(m.events, m.apply, m.deadLetters, m.lagEvents, m.lagSeconds, m.active, m.target, m.stepLanes, m.rendezvousTimeouts)
	return m
}
