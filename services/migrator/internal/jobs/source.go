package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// manifestTimeout bounds reading an export's manifests, so an unreachable
// source fails the job instead of hanging it.
const manifestTimeout = 2 * time.Minute

// jobError is an error that ends the job (FAILED with its message).
type jobError struct{ msg string }

func (e *jobError) Error() string { return e.msg }

func fail(format string, args ...any) error { return &jobError{msg: fmt.Sprintf(format, args...)} }

func isJobError(err error) (string, bool) {
	var je *jobError
	if errors.As(err, &je) {
		return je.msg, true
	}
	return "", false
}

// ExportFormat maps the API's format override.
func ExportFormat(f migratorv1.ExportFormat) ddb.ExportFormat {
	switch f {
	case migratorv1.ExportFormat_EXPORT_FORMAT_DYNAMODB_JSON:
		return ddb.ExportDynamoDBJSON
	case migratorv1.ExportFormat_EXPORT_FORMAT_ION:
		return ddb.ExportIon
	}
	return ""
}

// openExport opens and loads an export source; every failure is a
// jobError naming the source.
func openExport(ctx context.Context, src *migratorv1.ExportSource) (*export.Export, error) {
	ctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	aws := export.AWSOptions{
		Region:          src.GetAws().GetRegion(),
		Endpoint:        src.GetAws().GetEndpoint(),
		PathStyle:       src.GetAws().GetS3PathStyle(),
		Profile:         src.GetAws().GetProfile(),
		CredentialsFile: src.GetAws().GetCredentialsFile(),
	}
	store, err := export.OpenStore(ctx, src.GetUri(), aws)
	if err != nil {
		return nil, fail("cannot open export source %s: %v", src.GetUri(), err)
	}
	exp, err := export.Load(ctx, store, ExportFormat(src.GetFormat()))
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			return nil, fail("cannot read the export at %s within %s: %v", src.GetUri(), manifestTimeout, err)
		}
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fail("cannot read the export at %s: %v", src.GetUri(), err)
	}
	return exp, nil
}

// ensureTable checks that the mapping's target table exists and suits the
// mapping (checkTable), creating it when the mapping says so. A table it
// creates for canonical items records the mapping's key schema and TTL
// attribute, so the DynamoDB endpoint serves the imported items with the
// same keys and expires them the same way; a table for items in another
// encoding gets no key schema, since the endpoint could not read them.
func ensureTable(ctx context.Context, t Target, m *mapping.Mapping) error {
	tb, err := t.DescribeTable(ctx, m.Table)
	if err == nil {
		return checkTable(tb, m)
	}
	if status.Code(err) != codes.NotFound {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("cannot check target table %q: %v", m.Table, err)
	}
	if !m.CreateTable {
		return fail("target table %q does not exist (create it, or set mapping.create_table)", m.Table)
	}
	var opts []client.TableOption
	if m.Encoding == mapping.Canonical {
		opts = append(opts, client.WithKeySchema(keySchemaProto(m.Keys)))
	}
	if _, err := t.CreateTable(ctx, m.Table, opts...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if status.Code(err) != codes.AlreadyExists {
			return fail("cannot create target table %q: %v", m.Table, err)
		}
		// Created meanwhile (by another job, or by a retried call that
		// took effect): it must suit this mapping all the same.
		if tb, err = t.DescribeTable(ctx, m.Table); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fail("cannot check target table %q: %v", m.Table, err)
		}
		if err := checkTable(tb, m); err != nil {
			return err
		}
	}
	if m.TTLAttr != "" && m.Encoding == mapping.Canonical {
		if _, err := t.UpdateTable(ctx, m.Table, client.WithTTLAttribute(m.TTLAttr)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fail("created target table %q but cannot set its TTL attribute to %q (the DynamoDB endpoint would not expire its items): %v", m.Table, m.TTLAttr, err)
		}
	}
	return nil
}

// checkTable checks an existing target table against the mapping. A table
// with a key schema is a DynamoDB table the endpoint serves: the mapping's
// keys must be its key attributes, with their types, and the items must
// be stored canonically (the endpoint decodes nothing else). A table
// without one holds whatever the mapping writes.
func checkTable(tb *kvv1.Table, m *mapping.Mapping) error {
	ks := tb.GetKeySchema()
	if ks.GetPartitionKey().GetName() == "" {
		return nil
	}
	have := ddb.KeySchema{PartitionKey: keyAttr(ks.GetPartitionKey())}
	if ks.GetSortKey().GetName() != "" {
		have.SortKey = keyAttr(ks.GetSortKey())
	}
	if have != m.Keys {
		return fail("target table %q has key schema %s but the job's mapping has %s: map the table's key attributes with their types, or import into another table",
			m.Table, schemaString(have), schemaString(m.Keys))
	}
	if m.Encoding != mapping.Canonical {
		return fail("target table %q has a DynamoDB key schema (%s), so the DynamoDB endpoint reads its items, and it reads only the canonical encoding: set mapping.encoding to VALUE_ENCODING_CANONICAL (the mapping has %s), or import into a table without a key schema",
			m.Table, schemaString(have), encodingName(m.Encoding))
	}
	return nil
}

func keySchemaProto(k ddb.KeySchema) *kvv1.KeySchema {
	ks := &kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: k.PartitionKey.Name, Type: attrType(k.PartitionKey.Type)}}
	if k.HasSortKey() {
		ks.SortKey = &kvv1.KeyAttribute{Name: k.SortKey.Name, Type: attrType(k.SortKey.Type)}
	}
	return ks
}

func keyAttr(a *kvv1.KeyAttribute) ddb.KeyAttribute {
	out := ddb.KeyAttribute{Name: a.GetName()}
	switch a.GetType() {
	case kvv1.AttributeType_ATTRIBUTE_TYPE_S:
		out.Type = ddb.TypeS
	case kvv1.AttributeType_ATTRIBUTE_TYPE_N:
		out.Type = ddb.TypeN
	case kvv1.AttributeType_ATTRIBUTE_TYPE_B:
		out.Type = ddb.TypeB
	}
	return out
}

// schemaString names a key schema's attributes and types for a person.
func schemaString(k ddb.KeySchema) string {
	s := "partition key " + attrString(k.PartitionKey)
	if k.HasSortKey() {
		return s + ", sort key " + attrString(k.SortKey)
	}
	return s + ", no sort key"
}

func attrString(a ddb.KeyAttribute) string {
	t := "unknown type"
	switch a.Type {
	case ddb.TypeS:
		t = "S"
	case ddb.TypeN:
		t = "N"
	case ddb.TypeB:
		t = "B"
	}
	return fmt.Sprintf("%q (%s)", a.Name, t)
}

func encodingName(e mapping.Encoding) string {
	switch e {
	case mapping.Attribute:
		return "VALUE_ENCODING_ATTRIBUTE"
	case mapping.JSON:
		return "VALUE_ENCODING_JSON"
	}
	return "VALUE_ENCODING_CANONICAL"
}

func attrType(t ddb.Type) kvv1.AttributeType {
	switch t {
	case ddb.TypeS:
		return kvv1.AttributeType_ATTRIBUTE_TYPE_S
	case ddb.TypeN:
		return kvv1.AttributeType_ATTRIBUTE_TYPE_N
	case ddb.TypeB:
		return kvv1.AttributeType_ATTRIBUTE_TYPE_B
	}
	return kvv1.AttributeType_ATTRIBUTE_TYPE_UNSPECIFIED
}

// excerpt is the start of a bad line for its reject, at most 1 KiB.
func excerpt(line []byte) []byte {
	return bytes.Clone(line[:min(len(line), export.ExcerptBytes)])
}

func isBlank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// newLimiter limits writes to itemsPerSecond, taken a batch at a time. The
// bucket holds one batch and starts empty: a full bucket of a second's
// worth let `--rate 1500` run at 2,070 items/s over a short import.
func newLimiter(itemsPerSecond float64, batch int) *rate.Limiter {
	l := rate.NewLimiter(rate.Limit(itemsPerSecond), batch)
	l.AllowN(time.Now(), batch)
	return l
}
