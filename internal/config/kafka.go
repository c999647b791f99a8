package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/log/kafka"
)

// Kafka are the settings that reach Kafka and name the event topics, the
// same for every command that talks to it.
type Kafka struct {
	Brokers           string
	Partitions        int
	ReplicationFactor int
	TopicPrefix       string
	StartTimeout      time.Duration
	TLS               bool
	TLSCAFile         string
	TLSCertFile       string
	TLSKeyFile        string
	SASLMechanism     string
	SASLUsername      string
	SASLPassword      string
}

// Register adds the Kafka flags and their environment variables to fs.
func (k *Kafka) Register(fs *Set) {
	fs.StringVar(&k.Brokers, "kafka-brokers", "", "comma-separated Kafka brokers, host:port")
	fs.Env("kafka-brokers", "KAFKA_BROKERS")
	fs.IntVar(&k.Partitions, "kafka-partitions", 12, "partitions of each event topic; fixed for the topic's life")
	fs.Env("kafka-partitions", "KAFKA_PARTITIONS")
	fs.IntVar(&k.ReplicationFactor, "kafka-replication-factor", -1, "replication factor of new topics (-1: the broker's default)")
	fs.Env("kafka-replication-factor", "KAFKA_REPLICATION_FACTOR")
	fs.StringVar(&k.TopicPrefix, "kafka-topic-prefix", "tributary", "prefix of the event topics: <prefix>.<aggregate type>.events")
	fs.Env("kafka-topic-prefix", "KAFKA_TOPIC_PREFIX")
	fs.DurationVar(&k.StartTimeout, "kafka-start-timeout", 15*time.Second, "how long the start may wait for Kafka before it gives up")
	fs.Env("kafka-start-timeout", "KAFKA_START_TIMEOUT")
	fs.BoolVar(&k.TLS, "kafka-tls", false, "connect to Kafka with TLS")
	fs.Env("kafka-tls", "KAFKA_TLS")
	fs.StringVar(&k.TLSCAFile, "kafka-tls-ca-file", "", "PEM file of the CAs that sign the brokers' certificates (empty: system roots)")
	fs.Env("kafka-tls-ca-file", "KAFKA_TLS_CA_FILE")
	fs.StringVar(&k.TLSCertFile, "kafka-tls-cert-file", "", "PEM client certificate for mutual TLS")
	fs.Env("kafka-tls-cert-file", "KAFKA_TLS_CERT_FILE")
	fs.StringVar(&k.TLSKeyFile, "kafka-tls-key-file", "", "PEM key of the client certificate")
	fs.Env("kafka-tls-key-file", "KAFKA_TLS_KEY_FILE")
	fs.StringVar(&k.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.Env("kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM")
	fs.StringVar(&k.SASLUsername, "kafka-sasl-username", "", "SASL user name")
	fs.Env("kafka-sasl-username", "KAFKA_SASL_USERNAME")
	fs.StringVar(&k.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer the environment variable)")
	fs.Env("kafka-sasl-password", "KAFKA_SASL_PASSWORD")
}

// Check validates the topic settings, naming the setting at fault.
func (k Kafka) Check(fs *Set) error {
	switch {
	case k.Partitions < 1 || k.Partitions > 10_000:
		return fmt.Errorf("%s must be from 1 to 10000", fs.Setting("kafka-partitions"))
	case k.ReplicationFactor == 0 || k.ReplicationFactor < -1 || k.ReplicationFactor > 32:
		return fmt.Errorf("%s must be -1 or from 1 to 32", fs.Setting("kafka-replication-factor"))
	case k.TopicPrefix == "" || strings.ContainsAny(k.TopicPrefix, " /\\"):
		return fmt.Errorf("%s must be a non-empty topic name prefix", fs.Setting("kafka-topic-prefix"))
	}
	return nil
}

// Client returns the client settings, naming the client clientID.
func (k Kafka) Client(clientID string) kafka.ClientConfig {
	var brokers []string
	for _, b := range strings.Split(k.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return kafka.ClientConfig{
		Brokers: brokers, ClientID: clientID,
		TLS: k.TLS, CAFile: k.TLSCAFile, CertFile: k.TLSCertFile, KeyFile: k.TLSKeyFile,
		SASLMechanism: k.SASLMechanism, SASLUsername: k.SASLUsername, SASLPassword: k.SASLPassword,
	}
}

// Topics names the event topics.
func (k Kafka) Topics() kafka.Topics {
	return kafka.Topics{Prefix: k.TopicPrefix, Partitions: int32(k.Partitions), ReplicationFactor: int16(k.ReplicationFactor)}
}
