package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Sentinel errors; use errors.Is.
var (
	// ErrTrimmed reports records the consumer needed that the stream no
	// longer holds (its retention passed while the job was stopped or
	// behind). Changes were missed: the target must be re-seeded from a
	// newer export before streaming again. A job must fail on it, never
	// skip.
	ErrTrimmed = errors.New("cdc: stream records were trimmed before they were applied")
	// ErrBadRecord reports a record that cannot become a Change (bad JSON,
	// no keys, an INSERT without its new image). Run returns it unless
	// Options.Reject takes the record.
	ErrBadRecord = errors.New("cdc: record cannot be applied")
	// ErrViewType reports a DynamoDB stream whose view type lacks new
	// images (KEYS_ONLY, OLD_IMAGE): puts cannot be replayed from it.
	ErrViewType = errors.New("cdc: stream view type has no new images")
	// ErrStreamNotFound reports a stream or table that does not exist.
	ErrStreamNotFound = errors.New("cdc: stream not found")
	// ErrInvalidStart reports a StartPosition that does not fit the stream.
	ErrInvalidStart = errors.New("cdc: invalid start position")
)

// Kind is what a Change does to its item.
type Kind uint8

const (
	// Put writes NewImage (an INSERT or MODIFY).
	Put Kind = iota + 1
	// Delete removes the item (a REMOVE).
	Delete
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Change is one source write, ready to apply with its version.
type Change struct {
	// Kind is Put or Delete.
	Kind Kind
	// Keys holds the item's key attributes.
	Keys ddb.Item
	// NewImage is the whole item after a Put; nil for a Delete.
	NewImage ddb.Item
	// Version orders this change against the snapshot and every other
	// change of the item (see the package documentation).
	Version uint64
	// ApproximateTime is the source's ApproximateCreationDateTime.
	ApproximateTime time.Time
	// TTLDelete says DynamoDB's TTL process made this Delete.
	TTLDelete bool
	// Table is the source table: the stream's table for DynamoDB Streams,
	// the record's tableName for Kinesis.
	Table string
	// Shard and Seq are the record's shard and sequence number.
	Shard, Seq string
	// EventID is the source's event id, for reports.
	EventID string
}

// ApplyFunc applies one batch of changes: the records of one GetRecords
// page of one shard, in shard order. It must return nil only when every
// change is durably applied; the shard is checkpointed after it returns
// nil, and nothing is checkpointed when it fails. Calls for different
// shards run concurrently (up to Options.MaxShards); calls for one shard
// never overlap. Replays of the same changes must be harmless, which the
// versions make so when changes are written with them.
type ApplyFunc func(ctx context.Context, changes []Change) error

// Reject is a record that cannot be applied.
type Reject struct {
	// Shard and Seq locate the record.
	Shard, Seq string
	// Reason says what is wrong, for a person.
	Reason string
	// Data is the start of the record's raw bytes (Kinesis), at most 1 KiB.
	Data []byte
}

// RejectFunc takes a record that cannot be applied (for a dead-letter
// report). Returning nil skips the record and goes on; an error stops Run
// with it.
type RejectFunc func(ctx context.Context, r Reject) error

// StartType is where a new job starts reading.
type StartType uint8

const (
	// TrimHorizon reads every record the stream still holds.
	TrimHorizon StartType = iota
	// Latest reads only records written after the job first starts.
	Latest
	// AtSequence starts at SequenceNumber in shard ShardID.
	AtSequence
	// AfterSequence starts just after SequenceNumber in shard ShardID.
	AfterSequence
)

func (s StartType) String() string {
	switch s {
	case TrimHorizon:
		return "TRIM_HORIZON"
	case Latest:
		return "LATEST"
	case AtSequence:
		return "AT_SEQUENCE_NUMBER"
	case AfterSequence:
		return "AFTER_SEQUENCE_NUMBER"
	}
	return fmt.Sprintf("StartType(%d)", s)
}

// StartPosition says where a job reads from the first time. Restarts
// resume from checkpoints and ignore it, except to tell which shards a
// LATEST start skipped.
//
// TrimHorizon reads every shard from its oldest record, parents before
// children. Latest reads the shards open when the job first starts from
// their newest record on, and every shard created later from its start;
// closed shards are skipped. AtSequence and AfterSequence start shard
// ShardID at SequenceNumber; that shard's ancestors are skipped and every
// other shard is read from TRIM_HORIZON.
type StartPosition struct {
	Type           StartType
	ShardID        string
	SequenceNumber string
}

func (p StartPosition) validate() error {
	switch p.Type {
	case TrimHorizon, Latest:
		if p.ShardID != "" || p.SequenceNumber != "" {
			return fmt.Errorf("%w: %s takes no shard or sequence number", ErrInvalidStart, p.Type)
		}
	case AtSequence, AfterSequence:
		if p.ShardID == "" || p.SequenceNumber == "" {
			return fmt.Errorf("%w: %s needs a shard id and a sequence number", ErrInvalidStart, p.Type)
		}
	default:
		return fmt.Errorf("%w: unknown type %d", ErrInvalidStart, p.Type)
	}
	return nil
}

// isTTLDelete reports whether a record's userIdentity is DynamoDB's TTL
// process: {"type":"Service","principalId":"dynamodb.amazonaws.com"}.
func isTTLDelete(typ, principal string) bool {
	return typ == "Service" && principal == "dynamodb.amazonaws.com"
}
