//go:build !tributary_broken_relay

package relay

// checkpointBeforeAck is false in every real build: the checkpoint moves
// only after Kafka acknowledged the batch. The tributary_broken_relay build
// tag turns it on to prove that the chaos checker catches the loss.
const checkpointBeforeAck = false
