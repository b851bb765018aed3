package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// Error is an error in DynamoDB's shape: __type (with the
// com.amazonaws.dynamodb.v20120810# prefix DynamoDB uses) and message,
// with HTTP 400 for client errors and 500 for server errors.
type Error struct {
	// Type is the short name: ValidationException, ResourceNotFoundException, ...
	Type    string
	Message string
	Status  int
	// Item is the item a ConditionalCheckFailedException returns when
	// ReturnValuesOnConditionCheckFailure is ALL_OLD.
	Item ddb.Item
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

type errorBody struct {
	Type    string   `json:"__type"`
	Message string   `json:"message"`
	Item    ddb.Item `json:"Item,omitempty"`
}

func (e *Error) body() errorBody {
	return errorBody{Type: "com.amazonaws.dynamodb.v20120810#" + e.Type, Message: e.Message, Item: e.Item}
}

func validationf(format string, args ...any) *Error {
	return &Error{Type: "ValidationException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func serializationf(format string, args ...any) *Error {
	return &Error{Type: "SerializationException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func notFoundf(format string, args ...any) *Error {
	return &Error{Type: "ResourceNotFoundException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func inUsef(format string, args ...any) *Error {
	return &Error{Type: "ResourceInUseException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func conditionFailed(item ddb.Item) *Error {
	return &Error{Type: "ConditionalCheckFailedException", Status: http.StatusBadRequest, Message: "The conditional request failed", Item: item}
}

func throttledf(format string, args ...any) *Error {
	return &Error{Type: "ThrottlingException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func internalf(format string, args ...any) *Error {
	return &Error{Type: "InternalServerError", Status: http.StatusInternalServerError, Message: fmt.Sprintf(format, args...)}
}

func unavailablef(format string, args ...any) *Error {
	return &Error{Type: "ServiceUnavailable", Status: http.StatusServiceUnavailable, Message: fmt.Sprintf(format, args...)}
}

// toError is the one place errors become DynamoDB errors.
func toError(err error) *Error {
	var e *Error
	var xe *expr.Error
	var de *ddb.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &xe):
		return validationf("%s", xe.Message)
	case errors.As(err, &de):
		return validationf("%s", de.Error())
	case errors.Is(err, coord.ErrInvalidArgument):
		return validationf("%v", err)
	case errors.Is(err, topology.ErrTableNotFound):
		return notFoundf("Requested resource not found")
	case errors.Is(err, topology.ErrTableExists):
		return inUsef("Table already exists")
	case errors.Is(err, coord.ErrLockContended):
		return throttledf("the item is being written by other requests (its lock is contended); retry: %v", err)
	case errors.Is(err, coord.ErrUnavailable), errors.Is(err, coord.ErrNotReady), errors.Is(err, ErrUpstream):
		return unavailablef("%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return internalf("request timed out: %v", err)
	}
	return internalf("%v", err)
}

// unsupported names the DynamoDB operations Veltrix does not offer yet and
// why, so a client gets a ValidationException naming the operation instead
// of silently partial behaviour.
var unsupported = map[string]string{
	"TransactWriteItems":                  "transactions are not implemented",
	"TransactGetItems":                    "transactions are not implemented",
	"ExecuteStatement":                    "PartiQL is not implemented",
	"BatchExecuteStatement":               "PartiQL is not implemented",
	"ExecuteTransaction":                  "PartiQL and transactions are not implemented",
	"CreateBackup":                        "backups are not implemented",
	"DeleteBackup":                        "backups are not implemented",
	"DescribeBackup":                      "backups are not implemented",
	"ListBackups":                         "backups are not implemented",
	"RestoreTableFromBackup":              "backups are not implemented",
	"RestoreTableToPointInTime":           "backups are not implemented",
	"DescribeContinuousBackups":           "backups are not implemented",
	"UpdateContinuousBackups":             "backups are not implemented",
	"ExportTableToPointInTime":            "exports are not implemented",
	"CreateGlobalTable":                   "global tables are not implemented",
	"UpdateGlobalTable":                   "global tables are not implemented",
	"DescribeGlobalTable":                 "global tables are not implemented",
	"ListGlobalTables":                    "global tables are not implemented",
	"EnableKinesisStreamingDestination":   "Kinesis streaming is not implemented",
	"DisableKinesisStreamingDestination":  "Kinesis streaming is not implemented",
	"DescribeKinesisStreamingDestination": "Kinesis streaming is not implemented",
	"UpdateKinesisStreamingDestination":   "Kinesis streaming is not implemented",
	"ImportTable":                         "imports from S3 are done with the Veltrix migrator (veltrix import)",
	"DescribeImport":                      "imports from S3 are done with the Veltrix migrator (veltrix import)",
	"ListImports":                         "imports from S3 are done with the Veltrix migrator (veltrix import)",
	"DescribeExport":                      "exports are not implemented",
	"ListExports":                         "exports are not implemented",
	"DescribeGlobalTableSettings":         "global tables are not implemented",
	"UpdateGlobalTableSettings":           "global tables are not implemented",
	"DescribeTableReplicaAutoScaling":     "replica auto scaling is not implemented",
	"UpdateTableReplicaAutoScaling":       "replica auto scaling is not implemented",
	"DescribeContributorInsights":         "contributor insights are not implemented",
	"ListContributorInsights":             "contributor insights are not implemented",
	"UpdateContributorInsights":           "contributor insights are not implemented",
	"GetResourcePolicy":                   "resource policies are not implemented",
	"PutResourcePolicy":                   "resource policies are not implemented",
	"DeleteResourcePolicy":                "resource policies are not implemented",
	"DescribeEndpoints":                   "endpoint discovery is not needed: use the endpoint you called",
	"TagResource":                         "tags are not implemented",
	"UntagResource":                       "tags are not implemented",
	"ListTagsOfResource":                  "tags are not implemented",
}
