package client

import (
	"testing"
	"time"
)

func TestBackoffEqualJitter(t *testing.T) {
	c := &Client{opts: options{backoffBase: 10 * time.Millisecond, backoffMax: 100 * time.Millisecond}}
	for _, tc := range []struct {
		retry int
		ceil  time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{4, 80 * time.Millisecond},
		{5, 100 * time.Millisecond},
		{64, 100 * time.Millisecond}, // the doubling must not overflow
		{1000, 100 * time.Millisecond},
	} {
		var hi time.Duration
		for range 2000 {
			d := c.backoff(tc.retry)
			if d < tc.ceil/2 || d > tc.ceil {
				t.Fatalf("retry %d: wait %v outside [%v, %v]", tc.retry, d, tc.ceil/2, tc.ceil)
			}
			hi = max(hi, d)
		}
		// Jitter spreads waits over the whole upper half.
		if hi < tc.ceil*9/10 {
			t.Errorf("retry %d: longest of 2000 waits %v, want close to %v", tc.retry, hi, tc.ceil)
		}
	}
}
