package bench

import (
	"fmt"
	"strings"
)

// OpKind is the kind of one operation.
type OpKind uint8

// The operation kinds.
const (
	OpRead   OpKind = iota // read one key
	OpUpdate               // overwrite an existing key
	OpInsert               // write a new key
	OpBatch                // read Workload.Batch keys in one call
)

func (k OpKind) String() string {
	switch k {
	case OpRead:
		return "read"
	case OpUpdate:
		return "update"
	case OpInsert:
		return "insert"
	case OpBatch:
		return "batchget"
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Workload is an operation mix.
type Workload struct {
	// Name is how --workloads names it.
	Name string
	// Description says what it models.
	Description string
	// Read, Update and Insert are the fractions of each operation (they add
	// up to 1); a batch workload has none.
	Read, Update, Insert float64
	// Latest draws reads from the newest keys (YCSB D).
	Latest bool
	// Batch, when > 0, makes every operation one BatchGet of this many keys.
	Batch int
}

// BatchKeys is the BATCHGET workload's keys per call, the pipeline depth of
// the Redis pipelined peer it is compared with.
const BatchKeys = 16

// Workloads are the workloads in the order they run. D runs after the
// others because its inserts grow the key space.
var Workloads = []Workload{
	{Name: "C", Description: "read only (YCSB C)", Read: 1},
	{Name: "B", Description: "95% read, 5% update (YCSB B)", Read: 0.95, Update: 0.05},
	{Name: "A", Description: "50% read, 50% update (YCSB A)", Read: 0.5, Update: 0.5},
	{Name: "PUT", Description: "update only", Update: 1},
	{Name: "BATCHGET", Description: fmt.Sprintf("BatchGet of %d keys (pipelined GETs on Redis)", BatchKeys), Batch: BatchKeys},
	{Name: "D", Description: "95% read latest, 5% insert (YCSB D)", Read: 0.95, Insert: 0.05, Latest: true},
}

// ImportWorkload names the bulk import in --workloads.
const ImportWorkload = "IMPORT"

// WorkloadByName finds a workload, case-insensitively.
func WorkloadByName(name string) (Workload, bool) {
	for _, w := range Workloads {
		if strings.EqualFold(w.Name, name) {
			return w, true
		}
	}
	return Workload{}, false
}

// pick chooses the kind of the next operation from u in [0, 1).
func (w Workload) pick(u float64) OpKind {
	switch {
	case w.Batch > 0:
		return OpBatch
	case u < w.Read:
		return OpRead
	case u < w.Read+w.Update:
		return OpUpdate
	case w.Insert > 0:
		return OpInsert
	}
	return OpUpdate
}
