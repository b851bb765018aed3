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

// ensureTable checks that the mapping's target table exists, creating it
// when the mapping says so.
func ensureTable(ctx context.Context, t Target, m *mapping.Mapping) error {
	_, err := t.DescribeTable(ctx, m.Table)
	if err == nil {
		return nil
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
	ks := &kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: m.Keys.PartitionKey.Name, Type: attrType(m.Keys.PartitionKey.Type)}}
	if m.Keys.HasSortKey() {
		ks.SortKey = &kvv1.KeyAttribute{Name: m.Keys.SortKey.Name, Type: attrType(m.Keys.SortKey.Type)}
	}
	if _, err := t.CreateTable(ctx, m.Table, client.WithKeySchema(ks)); err != nil && status.Code(err) != codes.AlreadyExists {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("cannot create target table %q: %v", m.Table, err)
	}
	return nil
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
