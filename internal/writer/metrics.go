package writer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/httpapi"
)

type metrics struct {
	commands       *prometheus.CounterVec
	commandSeconds *prometheus.HistogramVec
	eventsAppended *prometheus.CounterVec
	httpSeconds    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_commands_total",
			Help: "Commands handled, by aggregate type, command and outcome (accepted, rejected, conflict, replayed, cancelled, forbidden, shed: refused unread for too many in flight, error).",
		}, []string{"aggregate_type", "command", "outcome"}),
		commandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_command_duration_seconds",
			Help:    "Time to handle a command: load, decide, append.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"aggregate_type", "command"}),
		eventsAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_events_appended_total",
			Help: "Events appended to the event store, by aggregate type and event type.",
		}, []string{"aggregate_type", "event_type"}),
		httpSeconds: httpapi.NewLatencyHistogram("writer"),
	}
	reg.MustRegister(m.commands, m.commandSeconds, m.eventsAppended, m.httpSeconds)
	return m
}
