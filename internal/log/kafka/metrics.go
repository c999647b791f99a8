package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// ClientMetrics is the option that gives a client franz-go's Prometheus
// metrics (kprom) in reg, named tributary_kafka_*: connections, bytes and
// records produced and fetched by topic, buffered records. constLabels
// tell clients of one process apart (nil for a process's only client); the
// metrics leave reg when the client closes.
func ClientMetrics(reg prometheus.Registerer, constLabels prometheus.Labels) kgo.Opt {
	opts := []kprom.Opt{
		kprom.Registerer(reg),
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.UncompressedBytes, kprom.ConsistentNaming),
	}
	if len(constLabels) > 0 {
		opts = append(opts, kprom.WithStaticLabel(constLabels))
	}
	return kgo.WithHooks(kprom.NewMetrics("tributary_kafka", opts...))
}
