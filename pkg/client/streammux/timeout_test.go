package streammux

import (
	"math"
	"testing"
	"time"
)

func TestMicrosTimeout(t *testing.T) {
	for _, tc := range []struct {
		us   int64
		want time.Duration
	}{
		{1, time.Microsecond},
		{1_500_000, 1500 * time.Millisecond},
		{math.MaxInt64 / 1000, time.Duration(math.MaxInt64/1000) * time.Microsecond},
		{math.MaxInt64/1000 + 1, time.Duration(math.MaxInt64)},
		{math.MaxInt64, time.Duration(math.MaxInt64)},
	} {
		if got := MicrosTimeout(tc.us); got != tc.want {
			t.Errorf("MicrosTimeout(%d) = %v, want %v", tc.us, got, tc.want)
		}
	}
}
