package migration

import (
	"hash/fnv"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// CutoverSteps are the cutover percentages, in order.
var CutoverSteps = []uint32{5, 25, 50, 100}

// Cohort places a partition key in one of 100 stable cohorts, so all of one
// user's requests are on one side during a cutover. pk is the partition key
// as Veltrix stores it (ddb.KeySchema's encoding).
func Cohort(pk []byte) uint32 {
	h := fnv.New64a()
	_, _ = h.Write(pk)
	return uint32(h.Sum64() % 100)
}

// Proxies reports whether every request is forwarded to DynamoDB unchanged.
func Proxies(m *migrationv1.Migration) bool {
	return m.GetPhase() == migrationv1.Phase_PHASE_PROXY
}

// WritesUpstream reports whether writes go to DynamoDB (first).
func WritesUpstream(m *migrationv1.Migration) bool {
	p := m.GetPhase()
	return p >= migrationv1.Phase_PHASE_PROXY && p <= migrationv1.Phase_PHASE_VELTRIX
}

// MirrorsWrites reports whether a write acknowledged by DynamoDB is then
// brought into Veltrix.
func MirrorsWrites(m *migrationv1.Migration) bool {
	p := m.GetPhase()
	return p >= migrationv1.Phase_PHASE_MIRROR && p <= migrationv1.Phase_PHASE_VELTRIX
}

// ReadsFromVeltrix reports whether a read of partition key pk is answered
// by Veltrix.
func ReadsFromVeltrix(m *migrationv1.Migration, pk []byte) bool {
	switch m.GetPhase() {
	case migrationv1.Phase_PHASE_CUTOVER:
		return Cohort(pk) < m.GetCutoverPercent()
	case migrationv1.Phase_PHASE_VELTRIX, migrationv1.Phase_PHASE_DONE:
		return true
	}
	return false
}

// ComparesReads reports whether a read of pk answered by DynamoDB is also
// served from Veltrix and compared.
func ComparesReads(m *migrationv1.Migration, pk []byte) bool {
	switch m.GetPhase() {
	case migrationv1.Phase_PHASE_SHADOW:
		return true
	case migrationv1.Phase_PHASE_CUTOVER:
		return !ReadsFromVeltrix(m, pk)
	}
	return false
}
