//go:build tributary_broken_relay

package relay

// checkpointBeforeAck, in this deliberately broken build, moves the
// checkpoint before Kafka acknowledged the batch: a relay that dies between
// the two loses the batch. Only `chaos --broken` builds it, to show that
// the chaos checker reports the loss; never ship it.
const checkpointBeforeAck = true
