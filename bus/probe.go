package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/contactcenter/presence-provider/schemas"
)

// ErrNotConnected is Probe's answer while the connection is down.
var ErrNotConnected = errors.New("NATS is not connected")

// Probe reports whether NATS is connected and JetStream answers for each of
// the buckets of docs/contract.md, for a readiness check.
func (c *Conn) Probe(ctx context.Context) error {
	if !c.NC.IsConnected() {
		return ErrNotConnected
	}
	for _, bucket := range []string{schemas.BucketState, schemas.BucketInterest, schemas.BucketClaims,
		schemas.BucketWorkers, schemas.BucketCalls} {
		if _, err := c.JS.KeyValue(ctx, bucket); err != nil {
			return fmt.Errorf("bucket %s does not answer: %w", bucket, err)
		}
	}
	return nil
}
