package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Vectors from Apache Kafka's own test of the Java client's hash:
// clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
// testMurmur2 (apache/kafka). The values are Java ints (signed).
var javaVectors = []struct {
	key  string
	want int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

// Vectors from librdkafka's unit test of its partitioner hash, which it checks
// against the Java client: src/rdmurmur2.c, unittest_murmur2
// (confluentinc/librdkafka). The suffixes of "1234" and of the long string
// cover every tail length (0 to 3 bytes) and odd alignments.
var librdkafkaVectors = []struct {
	key  []byte
	want uint32
}{
	{[]byte("kafka"), 0xd067cf64},
	{[]byte("giberish123456789"), 0x8f552b0c},
	{[]byte("1234"), 0x9fc97b14},
	{[]byte("234"), 0xe7c009ca},
	{[]byte("34"), 0x873930da},
	{[]byte("4"), 0x5a4b5ca1},
	{[]byte("PreAmbleWillBeRemoved,ThePrePartThatIs"), 0x78424f1c},
	{[]byte("reAmbleWillBeRemoved,ThePrePartThatIs"), 0x4a62b377},
	{[]byte("eAmbleWillBeRemoved,ThePrePartThatIs"), 0xe0e4e09e},
	{[]byte("AmbleWillBeRemoved,ThePrePartThatIs"), 0x62b8b43f},
	{[]byte(""), 0x106e08d9},
	{nil, 0x106e08d9},
}

func TestMurmur2JavaVectors(t *testing.T) {
	for _, v := range javaVectors {
		if got := int32(murmur2([]byte(v.key))); got != v.want {
			t.Errorf("murmur2(%q) = %d, want %d", v.key, got, v.want)
		}
	}
}

func TestMurmur2LibrdkafkaVectors(t *testing.T) {
	for _, v := range librdkafkaVectors {
		if got := murmur2(v.key); got != v.want {
			t.Errorf("murmur2(%q) = %#08x, want %#08x", v.key, got, v.want)
		}
	}
}

// The partition is toPositive (sign bit cleared, not abs) of the Java hash,
// modulo the count; negative hashes are where abs and toPositive differ.
func TestKafkaPartitionFromVectors(t *testing.T) {
	for _, v := range javaVectors {
		for n := int32(1); n <= 64; n++ {
			want := (v.want & 0x7fffffff) % n
			if got := KafkaPartition([]byte(v.key), n); got != want {
				t.Errorf("KafkaPartition(%q, %d) = %d, want %d", v.key, n, got, want)
			}
		}
	}
	// -973932308 & 0x7fffffff = 1173551340; 1173551340 % 6 = 0 (abs would give 2).
	if got := KafkaPartition([]byte("21"), 6); got != 0 {
		t.Errorf(`KafkaPartition("21", 6) = %d, want 0`, got)
	}
}

func TestKafkaPartitionPanicsOnNonPositiveCount(t *testing.T) {
	for _, n := range []int32{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("KafkaPartition(key, %d) did not panic", n)
				}
			}()
			KafkaPartition([]byte("k"), n)
		}()
	}
}

// franz-go's partitioners must place every keyed record where KafkaPartition
// says: both the explicit StickyKeyPartitioner and the client's default
// UniformBytesPartitioner(64KiB, true, true, nil), whose keyed path never
// consults the backup iterator.
func TestKafkaPartitionMatchesFranzGo(t *testing.T) {
	sticky := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	hasher := kgo.KafkaHasher(murmur2)
	uniform, ok := kgo.UniformBytesPartitioner(64<<10, true, true, nil).ForTopic("t").(kgo.TopicBackupPartitioner)
	if !ok {
		t.Fatal("UniformBytesPartitioner's topic partitioner is not a TopicBackupPartitioner")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		key := make([]byte, rng.IntN(65))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		r := &kgo.Record{Key: key}
		for n := 1; n <= 64; n++ {
			want := int(KafkaPartition(key, int32(n)))
			if got := sticky.Partition(r, n); got != want {
				t.Fatalf("key %x, %d partitions: StickyKeyPartitioner chose %d, KafkaPartition %d", key, n, got, want)
			}
			if got := uniform.PartitionByBackup(r, n, nil); got != want {
				t.Fatalf("key %x, %d partitions: UniformBytesPartitioner chose %d, KafkaPartition %d", key, n, got, want)
			}
			if got := hasher(key, n); got != want {
				t.Fatalf("key %x, %d partitions: KafkaHasher(our murmur2) chose %d, KafkaPartition %d", key, n, got, want)
			}
		}
	}
}

// A default franz-go client producing to a kfake cluster puts each keyed
// record on the partition KafkaPartition predicts.
func TestKafkaPartitionMatchesProducedRecords(t *testing.T) {
	const topic, partitions = "murmur2", 6
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []*kgo.Record
	for i := 0; i < 200; i++ {
		rs = append(rs, kgo.KeySliceRecord([]byte(fmt.Sprintf("account-%d", i)), []byte("{}")))
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if want := KafkaPartition(r.Key, partitions); r.Partition != want {
			t.Errorf("key %s: produced to partition %d, KafkaPartition says %d", r.Key, r.Partition, want)
		}
	}
}
