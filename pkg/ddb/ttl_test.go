package ddb

import (
	"testing"
	"time"
)

func TestTTLExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	for _, tc := range []struct {
		v    Value
		want time.Time
		ok   bool
	}{
		{MustN("1800000100"), time.Unix(1_800_000_100, 0), true},
		{MustN("1800000100.25"), time.Unix(1_800_000_100, 250_000_000), true},
		{MustN("1799999999"), time.Unix(1_799_999_999, 0), true}, // expired, still an expiry
		{MustN("1"), time.Time{}, false},                         // more than five years ago
		{MustN("0"), time.Time{}, false},
		{MustN("-5"), time.Time{}, false},
		{MustN("1E40"), time.Time{}, false},
		{S("1800000100"), time.Time{}, false},
		{nil, time.Time{}, false},
	} {
		got, ok := TTLExpiry(tc.v, now)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("TTLExpiry(%v) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}
