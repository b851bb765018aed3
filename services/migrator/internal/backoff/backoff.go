// Package backoff is the wait between the attempts of the migrator's
// AWS-facing retry loops (the CDC consumers and the Scan), which are the
// only retry of their calls: the SDK clients under them make one attempt
// per call (awsconf.CallerRetries).
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exponential is the wait before retry attempt+1 (attempt 0 is the first
// retry): lo doubled attempt times, capped at hi, with jitter in its upper
// half ("equal jitter").
func Exponential(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// Sleep waits d, returning ctx's error if it ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
