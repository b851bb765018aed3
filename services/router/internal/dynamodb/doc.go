// Package dynamodb is the router's DynamoDB-compatible endpoint: the
// DynamoDB JSON 1.0 wire protocol (POST / with X-Amz-Target:
// DynamoDB_20120810.<Operation>, application/x-amz-json-1.0) over the same
// tables and items the gRPC API and the migrator use. Items are stored in
// pkg/ddb's canonical encoding under the keys ddb.KeySchema.Key derives, so
// a table imported from a DynamoDB export is served here unchanged;
// expressions are pkg/ddb/expr's.
//
// Files: handler.go is the protocol (framing, errors, gzip, x-amz-crc32,
// signature shape, dispatch); tables.go the table operations; reads.go
// GetItem, BatchGetItem, Query and Scan; writes.go PutItem, DeleteItem,
// UpdateItem and BatchWriteItem. Migration mode (a table being migrated
// from DynamoDB, routed by its phase): migration.go the routing,
// upstream.go forwarding to DynamoDB, resync.go re-sync from source and
// the replay of queued re-syncs, shadow.go shadow reads, compare.go item
// comparison.
package dynamodb
