package placement

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven pins small placements and partition hashes, so that any
// change to PartitionOf or to the placement scores shows up as a diff in
// testdata. Commands:
//
//	compute partitions=P rf=K   nodes ("id [zone]") one a line as input
//	add id=X [zone=Z]           add a node and recompute
//	remove id=X                 remove a node and recompute
//	partition-of table=T partitions=P   keys one a line (or Go-quoted) as input
//	document epoch=E            the current placement as a JSON document
//	unmarshal                   decode and validate a JSON document
//
// Placements print one partition a line, with the replicas that joined (+)
// and left (-) since the previous placement.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var (
			nodes      []Node
			partitions uint32
			rf         int
			prev       *Table
		)
		recompute := func() string {
			tab, err := Compute(nodes, partitions, rf)
			if err != nil {
				return fmt.Sprintf("error: %v\n", err)
			}
			out := formatTable(tab, prev)
			prev = &tab
			return out
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "compute":
				d.ScanArgs(t, "partitions", &partitions)
				d.ScanArgs(t, "rf", &rf)
				nodes = nil
				prev = nil
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					f := strings.Fields(line)
					switch len(f) {
					case 0:
					case 1:
						nodes = append(nodes, Node{ID: f[0]})
					case 2:
						nodes = append(nodes, Node{ID: f[0], Zone: f[1]})
					default:
						d.Fatalf(t, "bad node line %q", line)
					}
				}
				return recompute()
			case "add":
				var n Node
				d.ScanArgs(t, "id", &n.ID)
				d.MaybeScanArgs(t, "zone", &n.Zone)
				nodes = append(nodes, n)
				return recompute()
			case "remove":
				var id string
				d.ScanArgs(t, "id", &id)
				nodes = slices.DeleteFunc(nodes, func(n Node) bool { return n.ID == id })
				return recompute()
			case "partition-of":
				var table uint64
				var p uint32
				d.ScanArgs(t, "table", &table)
				d.ScanArgs(t, "partitions", &p)
				var b strings.Builder
				for _, key := range strings.Split(d.Input, "\n") {
					if strings.HasPrefix(key, `"`) {
						var err error
						if key, err = strconv.Unquote(key); err != nil {
							d.Fatalf(t, "bad key: %v", err)
						}
					}
					fmt.Fprintf(&b, "%q -> %d\n", key, PartitionOf(table, []byte(key), p))
				}
				return b.String()
			case "document":
				var epoch uint64
				d.ScanArgs(t, "epoch", &epoch)
				if prev == nil {
					d.Fatalf(t, "no placement")
				}
				data, err := NewDocument(epoch, *prev).Marshal()
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				return string(data) + "\n"
			case "unmarshal":
				doc, err := Unmarshal([]byte(d.Input))
				if err != nil {
					return fmt.Sprintf("error: %v\nhash mismatch: %t\n", err, errors.Is(err, ErrHashFunctionMismatch))
				}
				return fmt.Sprintf("epoch %d\n%s", doc.Epoch, formatTable(doc.Table(), nil))
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
				return ""
			}
		})
	})
}

func formatTable(tab Table, prev *Table) string {
	var b strings.Builder
	for p, set := range tab.Replicas {
		fmt.Fprintf(&b, "%d: %s", p, strings.Join(set, " "))
		if prev != nil {
			old := prev.ReplicasOf(uint32(p))
			var changes []string
			for _, id := range set {
				if !slices.Contains(old, id) {
					changes = append(changes, "+"+id)
				}
			}
			for _, id := range old {
				if !slices.Contains(set, id) {
					changes = append(changes, "-"+id)
				}
			}
			if len(changes) > 0 {
				fmt.Fprintf(&b, "  (%s)", strings.Join(changes, " "))
			}
		}
		b.WriteByte('\n')
	}
	replicas, primaries := tab.PartitionsPerNode(), tab.PrimariesPerNode()
	ids := make([]string, 0, len(replicas))
	for id := range replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b.WriteString("load (replicas/primaries):")
	for _, id := range ids {
		fmt.Fprintf(&b, " %s=%d/%d", id, replicas[id], primaries[id])
	}
	b.WriteByte('\n')
	if prev != nil {
		fmt.Fprintf(&b, "moved: %d\n", Diff(*prev, tab))
	}
	return b.String()
}
