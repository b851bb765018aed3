package jobs

import (
	"strings"
	"testing"
	"time"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

func keySchema(pk string, pt kvv1.AttributeType, sk string, st kvv1.AttributeType) *kvv1.KeySchema {
	ks := &kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: pk, Type: pt}}
	if sk != "" {
		ks.SortKey = &kvv1.KeyAttribute{Name: sk, Type: st}
	}
	return ks
}

const (
	typeS = kvv1.AttributeType_ATTRIBUTE_TYPE_S
	typeN = kvv1.AttributeType_ATTRIBUTE_TYPE_N
)

// TestTargetTableKeySchema: a job whose target table exists with a
// DynamoDB key schema runs only when its mapping has the same key
// attributes and types and stores items canonically; otherwise it fails
// at start naming both schemas (or the encoding) and writes nothing. A
// table without a key schema takes any mapping.
func TestTargetTableKeySchema(t *testing.T) {
	dir := t.TempDir()
	if _, err := testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("k", 3)}); err != nil {
		t.Fatal(err)
	}
	jsonEnc := func(m *migratorv1.Mapping) { m.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_JSON }
	for _, tc := range []struct {
		name   string
		schema *kvv1.KeySchema // nil: a table without one
		edit   func(*migratorv1.Mapping)
		want   []string // nil: the job succeeds
	}{
		{"same schema", keySchema("pk", typeS, "sk", typeN), nil, nil},
		{"no schema, JSON", nil, jsonEnc, nil},
		{"other partition key", keySchema("id", typeS, "", 0), nil,
			[]string{`target table "sessions" has key schema partition key "id" (S), no sort key but the job's mapping has partition key "pk" (S), sort key "sk" (N)`}},
		{"sort key type differs", keySchema("pk", typeS, "sk", typeS), nil,
			[]string{`key schema partition key "pk" (S), sort key "sk" (S) but the job's mapping has partition key "pk" (S), sort key "sk" (N)`}},
		{"mapping lacks the sort key", keySchema("pk", typeS, "sk", typeN), func(m *migratorv1.Mapping) { m.SortKey = nil },
			[]string{`sort key "sk" (N) but the job's mapping has partition key "pk" (S), no sort key`}},
		{"same schema, JSON", keySchema("pk", typeS, "sk", typeN), jsonEnc,
			[]string{"set mapping.encoding to VALUE_ENCODING_CANONICAL (the mapping has VALUE_ENCODING_JSON)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t)
			fake := newFake()
			fake.setTable(&kvv1.Table{Name: "sessions", KeySchema: tc.schema})
			startMigrator(t, store, fake, "m")
			for _, kind := range []string{"import", "verify"} {
				var j *migratorv1.Job
				if kind == "import" {
					j = importJob(dir, func(s *migratorv1.ImportSpec) {
						if tc.edit != nil {
							tc.edit(s.Mapping)
						}
					})
				} else {
					j = verifyJob(dir, false)
					if tc.edit != nil {
						tc.edit(j.GetVerifySpec().Mapping)
					}
				}
				got := waitJob(t, store, createJob(t, store, j).GetId(), 30*time.Second)
				if tc.want == nil {
					if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
						t.Fatalf("%s: %s %q, want SUCCEEDED", kind, got.GetState(), got.GetError())
					}
					continue
				}
				if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED {
					t.Fatalf("%s: %s, want FAILED", kind, got.GetState())
				}
				for _, w := range tc.want {
					if !strings.Contains(got.GetError(), w) {
						t.Errorf("%s: error %q\nwant it to contain %q", kind, got.GetError(), w)
					}
				}
				if n := len(fake.live("sessions")); n != 0 {
					t.Fatalf("%s: %d items written by a job refused at start", kind, n)
				}
			}
		})
	}
}

// TestCreatedTableSettings: a table the migrator creates for canonical
// items records the mapping's key schema and TTL attribute, so the
// DynamoDB endpoint serves and expires the imported items; one for JSON
// items gets neither, and a later job with the same mapping runs on it.
func TestCreatedTableSettings(t *testing.T) {
	dir := t.TempDir()
	if _, err := testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("c", 3)}); err != nil {
		t.Fatal(err)
	}
	t.Run("canonical", func(t *testing.T) {
		store := newStore(t)
		fake := newFake()
		startMigrator(t, store, fake, "m")
		got := waitJob(t, store, createJob(t, store, importJob(dir, nil)).GetId(), 30*time.Second)
		if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("%s %q", got.GetState(), got.GetError())
		}
		tb := fake.table("sessions")
		ks := tb.GetKeySchema()
		if ks.GetPartitionKey().GetName() != "pk" || ks.GetPartitionKey().GetType() != typeS ||
			ks.GetSortKey().GetName() != "sk" || ks.GetSortKey().GetType() != typeN || tb.GetTtlAttribute() != "exp" {
			t.Fatalf("created table %v; want key schema pk (S), sk (N) and TTL attribute exp", tb)
		}
		// A second import into the table it created runs.
		got = waitJob(t, store, createJob(t, store, importJob(dir, nil)).GetId(), 30*time.Second)
		if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("second import: %s %q", got.GetState(), got.GetError())
		}
	})
	t.Run("JSON", func(t *testing.T) {
		store := newStore(t)
		fake := newFake()
		startMigrator(t, store, fake, "m")
		j := importJob(dir, func(s *migratorv1.ImportSpec) {
			s.Mapping.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_JSON
		})
		got := waitJob(t, store, createJob(t, store, j).GetId(), 30*time.Second)
		if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("%s %q", got.GetState(), got.GetError())
		}
		if tb := fake.table("sessions"); tb.GetKeySchema() != nil || tb.GetTtlAttribute() != "" {
			t.Fatalf("created table %v; want neither key schema nor TTL attribute", tb)
		}
		v := verifyJob(dir, false)
		v.GetVerifySpec().Mapping.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_JSON
		if got := waitJob(t, store, createJob(t, store, v).GetId(), 30*time.Second); got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("verify: %s %q", got.GetState(), got.GetError())
		}
	})
}
