package migration

import (
	"fmt"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/topology"
)

// Keys builds the etcd keys of migration mode, below the cluster's prefix:
//
//	migration/tables/<table>                  Migration (protojson)
//	migration/sync/<table>/<id>               queued re-sync of one item
//	migration/mismatches/<table>/<id>         kept shadow-read mismatch (at most 1000)
//	migration/mismatch_total/<table>          every mismatch recorded, kept or not
//	migration/stats/<table>/<router>          a router's figures, under its lease
//	migration/imports/<table>/<job>           a completed import into the table
//
// Ids of queue entries and mismatches sort in time order.
type Keys struct {
	prefix string
}

// NewKeys returns the migration keys of cluster.
func NewKeys(cluster string) Keys {
	return Keys{prefix: topology.NewKeys(cluster).Prefix() + "migration/"}
}

// Prefix is the prefix of every migration key.
func (k Keys) Prefix() string { return k.prefix }

// TablesPrefix is the prefix of the migration documents.
func (k Keys) TablesPrefix() string { return k.prefix + "tables/" }

// Migration is the key of table's migration.
func (k Keys) Migration(table string) string { return k.TablesPrefix() + table }

// SyncPrefix is the prefix of the re-sync queue of every table.
func (k Keys) SyncPrefix() string { return k.prefix + "sync/" }

// SyncTablePrefix is the prefix of table's queued re-syncs.
func (k Keys) SyncTablePrefix(table string) string { return k.SyncPrefix() + table + "/" }

// MismatchesPrefix is the prefix of table's mismatch sample.
func (k Keys) MismatchesPrefix(table string) string { return k.prefix + "mismatches/" + table + "/" }

// MismatchTotal is the key of table's mismatch counter.
func (k Keys) MismatchTotal(table string) string { return k.prefix + "mismatch_total/" + table }

// StatsPrefix is the prefix of the routers' figures for table.
func (k Keys) StatsPrefix(table string) string { return k.prefix + "stats/" + table + "/" }

// Stats is the key of router's figures for table.
func (k Keys) Stats(table, router string) string { return k.StatsPrefix(table) + router }

// ImportsPrefix is the prefix of table's import records.
func (k Keys) ImportsPrefix(table string) string { return k.prefix + "imports/" + table + "/" }

// Import is the key of the record of import job into table.
func (k Keys) Import(table, job string) string { return k.ImportsPrefix(table) + job }

// validName rejects names that would break the key layout.
func validName(what, name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%w: %s %q: want a non-empty name without '/'", ErrInvalid, what, name)
	}
	return nil
}
