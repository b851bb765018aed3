// Package sample is the dev stack's sample data: a DynamoDB export of a
// sessions-like table (composite keys user_id + session_id, TTLs, every
// DynamoDB type), generated on first run, and the import spec that maps it
// into the Veltrix table "sessions".
package sample

import (
	"os"
	"path/filepath"

	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// Table is the Veltrix table the sample is imported into.
const Table = "sessions"

// Items is the number of items in the sample export.
const Items = 3000

// Generate writes the sample export into dir unless a complete one is there
// already. TTLs are relative to now, so most items live for days.
func Generate(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "manifest-summary.json")); err == nil {
		return nil
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if _, err := exportgen.Generate(tmp, options); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// options generate the sample.
var options = exportgen.Options{Items: Items, Files: 3, WithTTL: true, Seed: 7}

// ExampleUser and ExampleSession are the key of the first live item of the
// sample, for the commands the dev stack prints.
var ExampleUser, ExampleSession = exampleKey()

func exampleKey() (string, string) {
	for i := 0; i < Items; i++ {
		if options.Kind(i) == exportgen.KindLive {
			return options.Key(i)
		}
	}
	return options.Key(0)
}

// ImportSpec maps the export in dir into Table.
func ImportSpec(dir string) *migratorv1.ImportSpec {
	return &migratorv1.ImportSpec{
		Source: &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: dir}},
		Mapping: &migratorv1.Mapping{
			TargetTable:  Table,
			CreateTable:  true,
			PartitionKey: &migratorv1.KeyAttribute{Name: exportgen.PartitionKey, Type: migratorv1.KeyType_KEY_TYPE_S},
			SortKey:      &migratorv1.KeyAttribute{Name: exportgen.SortKey, Type: migratorv1.KeyType_KEY_TYPE_S},
			Encoding:     migratorv1.ValueEncoding_VALUE_ENCODING_JSON,
			TtlAttribute: exportgen.TTLAttribute,
		},
	}
}
