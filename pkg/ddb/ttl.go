package ddb

import (
	"strconv"
	"strings"
	"time"
)

// ttlIgnoredAfter mirrors DynamoDB: an expiry more than five years in the
// past is not treated as an expiry at all (DynamoDB never deletes such
// items).
const ttlIgnoredAfter = 5 * 365 * 24 * time.Hour

// maxTTL is the latest expiry Veltrix stores (int64 Unix nanoseconds).
var maxTTL = time.Unix(0, 1<<63-1).UTC()

// TTLExpiry reads the value of a table's TTL attribute as DynamoDB does: a
// number of Unix epoch seconds (possibly fractional) is the item's expiry.
// ok is false when the value is no expiry at all: absent, not a number,
// zero or negative, more than five years in the past at now, or past what
// Veltrix can store. An expiry at or before now means the item has
// expired.
func TTLExpiry(v Value, now time.Time) (exp time.Time, ok bool) {
	n, isN := v.(N)
	if !isN {
		return time.Time{}, false
	}
	s := n.String()
	if strings.HasPrefix(s, "-") || s == "0" {
		return time.Time{}, false
	}
	intPart, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > maxTTL.Unix() {
		return time.Time{}, false
	}
	var nsec int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		nsec, _ = strconv.ParseInt(frac, 10, 64)
	}
	if sec == 0 && nsec == 0 {
		return time.Time{}, false
	}
	exp = time.Unix(sec, nsec).UTC()
	if exp.After(maxTTL) || now.Sub(exp) >= ttlIgnoredAfter {
		return time.Time{}, false
	}
	return exp, true
}
