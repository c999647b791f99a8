package testenv

import "fmt"

// KafkaPartition returns the partition, among partitions, that Kafka's
// default partitioner gives a record with a non-nil key:
// toPositive(murmur2(key)) % partitions, as in the Java client's
// BuiltInPartitioner.partitionForKey and franz-go's StickyKeyPartitioner.
//
// It is written from the algorithm, not taken from franz-go, so tests can
// check independently where the client put a record (and non-Go producers
// using librdkafka's partitioner=murmur2_random place keys the same way).
// It panics if partitions is not positive, a bug in the calling test.
func KafkaPartition(key []byte, partitions int32) int32 {
	if partitions <= 0 {
		panic(fmt.Sprintf("testenv.KafkaPartition: %d partitions", partitions))
	}
	// Utils.toPositive clears the sign bit; it is not Math.abs.
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is Austin Appleby's MurmurHash2 (32-bit, endian-neutral) with
// Kafka's seed, bit for bit the Java client's Utils.murmur2 read as unsigned.
// Java's unsigned shifts (>>>) on int are plain shifts on uint32 here.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)

	// Body: little-endian 4-byte blocks.
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}

	// Tail: the last len%4 bytes, highest first, then one multiplication.
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}

	// Final avalanche.
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
