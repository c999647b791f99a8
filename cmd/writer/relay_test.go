package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/testenv"
)

// startWriter runs the writer with args until the test ends, and returns its
// base URL once it is ready.
func startWriter(t *testing.T, args []string, getenv func(string) string) (string, *testenv.SyncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	full := append([]string{"--http-addr", addr}, args...)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") { // a subcommand comes first
		full = append([]string{args[0], "--http-addr", addr}, args[1:]...)
	}
	go func() { done <- run(ctx, fixture, full, withoutAuth(getenv), out, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("writer stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("writer did not stop")
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if res, err := http.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base, out
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("writer stopped before it was ready: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer not ready:\n%s", out.String())
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func post(t *testing.T, url, body string, headers ...string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// consumeN reads n records from the topic, from the start.
func consumeN(t *testing.T, brokers []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := testenv.KafkaClient(t, brokers, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records of %s, want %d", len(got), topic, n)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	return got
}

// The writer relays what its commands append, by default in its own process,
// continuing each command's trace.
func TestWriterRelaysItsEventsToKafka(t *testing.T) {
	cluster := testenv.Kafka(t)
	brokers := cluster.ListenAddrs()
	base, _ := startWriter(t, []string{"--migrate"}, testenv.Getenv("DATABASE_URL", testenv.PostgresURL(t), "KAFKA_BROKERS", strings.Join(brokers, ","), "KAFKA_PARTITIONS", "4"))
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if s := post(t, base+"/v1/counters", `{"id":"a1","owner":"Ada","unit":"items","initial":100}`, "traceparent", traceparent); s != http.StatusCreated {
		t.Fatalf("create: %d", s)
	}
	if s := post(t, base+"/v1/counters/a1/start", ``); s != http.StatusOK {
		t.Fatalf("start: %d", s)
	}
	records := consumeN(t, brokers, "tributary.counter.events", 3)
	for i, r := range records {
		e, err := kafka.DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if e.AggregateID != "a1" || e.Version != int64(i+1) || r.Partition != testenv.KafkaPartition([]byte("a1"), 4) {
			t.Fatalf("record %d: %+v on partition %d", i, e, r.Partition)
		}
		if i < 2 && !strings.HasPrefix(e.TraceParent, "00-0af7651916cd43dd8448eb211c80319c-") {
			t.Errorf("record %d traceparent %q does not continue the command's trace", i, e.TraceParent)
		}
	}
}

// `writer relay` runs the relay alone, with metrics and health.
func TestRelaySubcommand(t *testing.T) {
	cluster := testenv.Kafka(t)
	brokers := cluster.ListenAddrs()
	dbURL := testenv.PostgresURL(t)
	api, _ := startWriter(t, []string{"--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", dbURL))
	if s := post(t, api+"/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`); s != http.StatusCreated {
		t.Fatalf("create: %d", s)
	}
	relayBase, _ := startWriter(t, []string{"relay"}, testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", strings.Join(brokers, ",")))
	consumeN(t, brokers, "tributary.counter.events", 1)
	res, err := http.Get(relayBase + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(body, []byte("tributary_relay_leader 1")) {
		t.Fatalf("relay metrics lack the leader gauge at 1:\n%s", body)
	}
	if s := post(t, relayBase+"/v1/counters", `{}`); s != http.StatusNotFound && s != http.StatusMethodNotAllowed {
		t.Fatalf("the relay-only process serves commands: %d", s)
	}
}

// Bad Kafka configuration fails fast, naming the setting.
func TestBadKafkaSettingsFailFast(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	run1 := func(getenv func(string) string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out bytes.Buffer
		return run(ctx, fixture, []string{"--http-addr", "127.0.0.1:0"}, withoutAuth(getenv), &out, &out)
	}
	t.Run("unreachable broker", func(t *testing.T) {
		err := run1(testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", freeAddr(t), "KAFKA_START_TIMEOUT", "2s"))
		if err == nil || !strings.Contains(err.Error(), "cannot reach Kafka at KAFKA_BROKERS=") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("partition count mismatch", func(t *testing.T) {
		cluster := testenv.Kafka(t, kfake.SeedTopics(3, "tributary.counter.events"))
		err := run1(testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","), "KAFKA_PARTITIONS", "12"))
		if err == nil || !strings.Contains(err.Error(), "has 3 partitions but KAFKA_PARTITIONS is 12") {
			t.Fatalf("got %v", err)
		}
	})
}

// Kafka down: commands are still accepted; the relay catches up later.
func TestCommandsSucceedWhileKafkaIsDown(t *testing.T) {
	cluster := testenv.Kafka(t)
	brokers := cluster.ListenAddrs()
	base, _ := startWriter(t, []string{"--migrate"}, testenv.Getenv("DATABASE_URL", testenv.PostgresURL(t), "KAFKA_BROKERS", strings.Join(brokers, ",")))
	testenv.CloseKafka(cluster)
	if s := post(t, base+"/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`); s != http.StatusCreated {
		t.Fatalf("create while Kafka is down: %d", s)
	}
	if s := post(t, base+"/v1/counters/a1/start", ``); s != http.StatusOK {
		t.Fatalf("start while Kafka is down: %d", s)
	}
}

// The relay authenticates with SASL (SCRAM-SHA-256 here); a wrong password
// stops the start with a message naming the brokers.
func TestRelayWithSASL(t *testing.T) {
	cluster := testenv.Kafka(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "relay", "s3cret"))
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	dbURL := testenv.PostgresURL(t)

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, fixture, []string{"--http-addr", "127.0.0.1:0"}, withoutAuth(testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", brokers,
		"KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", "KAFKA_SASL_USERNAME", "relay", "KAFKA_SASL_PASSWORD", "wrong", "KAFKA_START_TIMEOUT", "3s")), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Kafka at KAFKA_BROKERS=") {
		t.Fatalf("wrong password: got %v", err)
	}

	base, _ := startWriter(t, nil, testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", brokers,
		"KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", "KAFKA_SASL_USERNAME", "relay", "KAFKA_SASL_PASSWORD", "s3cret"))
	if s := post(t, base+"/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`); s != http.StatusCreated {
		t.Fatalf("create: %d", s)
	}
	consumeN(t, cluster.ListenAddrs(), "tributary.counter.events", 1, kgo.SASL(scramAuth("relay", "s3cret")))
}

func scramAuth(user, pass string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
}

// The relay reaches a TLS-only broker with KAFKA_TLS and a CA file; without
// the CA the start fails, naming the brokers.
func TestRelayWithTLS(t *testing.T) {
	caPEM, serverCert := selfSignedCA(t)
	cluster := testenv.Kafka(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := testenv.PostgresURL(t)

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, fixture, []string{"--http-addr", "127.0.0.1:0"}, withoutAuth(testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", brokers,
		"KAFKA_TLS", "true", "KAFKA_START_TIMEOUT", "3s")), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Kafka at KAFKA_BROKERS=") {
		t.Fatalf("untrusted broker certificate: got %v", err)
	}

	base, _ := startWriter(t, nil, testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", brokers, "KAFKA_TLS", "true", "KAFKA_TLS_CA_FILE", caFile))
	if s := post(t, base+"/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`); s != http.StatusCreated {
		t.Fatalf("create: %d", s)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	consumeN(t, cluster.ListenAddrs(), "tributary.counter.events", 1, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
}

// selfSignedCA makes a CA certificate (PEM) and a server certificate for
// 127.0.0.1 signed by it.
func selfSignedCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Kafka that comes up after the writer (within KAFKA_START_TIMEOUT) is
// waited for: the relay starts and relays, instead of the process exiting
// at the first refused connection (the chaos suite saw relays restarted in
// a loop while Kafka was down).
func TestRelayWaitsForKafkaToComeUp(t *testing.T) {
	_, portText, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(portText)
	late := make(chan *kfake.Cluster, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond) // the writer is trying to reach nobody
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
		if err != nil {
			c = nil
		}
		late <- c
	}()
	base, _ := startWriter(t, []string{"--migrate"}, testenv.Getenv("DATABASE_URL", testenv.PostgresURL(t),
		"KAFKA_BROKERS", "127.0.0.1:"+portText, "KAFKA_PARTITIONS", "4", "KAFKA_START_TIMEOUT", "20s"))
	cluster := <-late
	if cluster == nil {
		t.Fatal("kfake could not start on its port")
	}
	t.Cleanup(func() { testenv.CloseKafka(cluster) })
	if s := post(t, base+"/v1/counters", `{"id":"late","owner":"Ada","unit":"items"}`); s != http.StatusCreated {
		t.Fatalf("create: %d", s)
	}
	if r := consumeN(t, cluster.ListenAddrs(), "tributary.counter.events", 1); string(r[0].Key) != "late" {
		t.Fatalf("relayed %q, want the counter late", r[0].Key)
	}
}
