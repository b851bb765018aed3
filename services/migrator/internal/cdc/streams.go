package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/ddbattr"
)

// DynamoDBStreamsAPI is the part of the DynamoDB Streams API the consumer
// calls; *dynamodbstreams.Client implements it.
type DynamoDBStreamsAPI interface {
	ListStreams(ctx context.Context, in *dynamodbstreams.ListStreamsInput, opts ...func(*dynamodbstreams.Options)) (*dynamodbstreams.ListStreamsOutput, error)
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, opts ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, opts ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, opts ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

var _ DynamoDBStreamsAPI = (*dynamodbstreams.Client)(nil)

// StreamsConsumer reads a DynamoDB stream: every shard in lineage order
// (a parent to its end before its children), each shard's records in
// order, checkpointed per shard.
type StreamsConsumer struct {
	c   *consumer
	src *streamsSource
}

// NewStreamsConsumer returns a consumer of the stream streamARN. A value
// that is not an ARN is taken as a table name and resolved, when Run
// starts, to the table's newest stream (ListStreams). The stream must have
// the NEW_IMAGE or NEW_AND_OLD_IMAGES view type.
func NewStreamsConsumer(client DynamoDBStreamsAPI, streamARN string, start StartPosition, cp checkpoint.Store, opts Options) (*StreamsConsumer, error) {
	if client == nil || streamARN == "" {
		return nil, errors.New("cdc: NewStreamsConsumer needs a client and a stream ARN")
	}
	src := &streamsSource{client: client, arn: streamARN}
	c, err := newConsumer(src, cp, start, opts, StreamsVersion)
	if err != nil {
		return nil, err
	}
	return &StreamsConsumer{c: c, src: src}, nil
}

// Run reads the stream and calls apply with each page of each shard's
// changes, until ctx ends (it returns ctx.Err()), an error stops it, or
// the stream is disabled and every shard is read to its end (it returns
// nil). Run resumes from the checkpoints, so calling it again after an
// error or a restart loses nothing. See ApplyFunc for the contract.
func (s *StreamsConsumer) Run(ctx context.Context, apply ApplyFunc) error {
	return s.c.run(ctx, apply)
}

// Stats returns the consumer's counters and lag. Safe to call while Run
// runs.
func (s *StreamsConsumer) Stats() Stats { return s.c.Stats() }

// StreamARN returns the stream read, once Run has resolved it.
func (s *StreamsConsumer) StreamARN() string { return s.src.arn }

// streamsSource is the DynamoDB Streams side of a consumer.
type streamsSource struct {
	client DynamoDBStreamsAPI
	arn    string
	table  string
}

func (s *streamsSource) describe() string { return "DynamoDB stream " + s.arn }

// prepare resolves a table name to its newest stream and checks the view
// type.
func (s *streamsSource) prepare(ctx context.Context) error {
	if !strings.HasPrefix(s.arn, "arn:") {
		arn, err := LatestStreamARN(ctx, s.client, s.arn)
		if err != nil {
			return err
		}
		s.arn = arn
	}
	out, err := s.client.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(s.arn), Limit: aws.Int32(1)})
	if err != nil {
		if rnf := new(types.ResourceNotFoundException); errors.As(err, &rnf) {
			return fmt.Errorf("%w: %s: %v", ErrStreamNotFound, s.arn, err)
		}
		return err // the consumer's retry names the call and the stream
	}
	d := out.StreamDescription
	if d == nil {
		return fmt.Errorf("cdc: describe %s: no stream description", s.describe())
	}
	switch d.StreamViewType {
	case types.StreamViewTypeNewImage, types.StreamViewTypeNewAndOldImages:
	default:
		return fmt.Errorf("%w: %s has view type %s; enable the stream with NEW_IMAGE or NEW_AND_OLD_IMAGES", ErrViewType, s.describe(), d.StreamViewType)
	}
	s.table = aws.ToString(d.TableName)
	return nil
}

// LatestStreamARN returns the newest stream of table (by stream label,
// which is its creation time).
func LatestStreamARN(ctx context.Context, client DynamoDBStreamsAPI, table string) (string, error) {
	var best types.Stream
	in := &dynamodbstreams.ListStreamsInput{TableName: aws.String(table)}
	for page := 0; page < 1000; page++ {
		out, err := client.ListStreams(ctx, in)
		if err != nil {
			return "", fmt.Errorf("cdc: list the streams of table %s: %w", table, err)
		}
		for _, st := range out.Streams {
			if aws.ToString(st.TableName) == table && aws.ToString(st.StreamLabel) >= aws.ToString(best.StreamLabel) {
				best = st
			}
		}
		if out.LastEvaluatedStreamArn == nil {
			break
		}
		in.ExclusiveStartStreamArn = out.LastEvaluatedStreamArn
	}
	if best.StreamArn == nil {
		return "", fmt.Errorf("%w: table %s has no stream (enable DynamoDB Streams on it)", ErrStreamNotFound, table)
	}
	return aws.ToString(best.StreamArn), nil
}

func (s *streamsSource) listShards(ctx context.Context) ([]shardInfo, error) {
	var shards []shardInfo
	in := &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(s.arn), Limit: aws.Int32(100)}
	// A stream has at most a few thousand shards in its 24 hours; the
	// bound only stops a server that never ends its pages.
	for page := 0; page < 10000; page++ {
		out, err := s.client.DescribeStream(ctx, in)
		if err != nil {
			return nil, err
		}
		d := out.StreamDescription
		if d == nil {
			return nil, errors.New("no stream description")
		}
		for _, sh := range d.Shards {
			info := shardInfo{ID: aws.ToString(sh.ShardId)}
			if p := aws.ToString(sh.ParentShardId); p != "" {
				info.Parents = []string{p}
			}
			info.Closed = sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil
			shards = append(shards, info)
		}
		if d.LastEvaluatedShardId == nil {
			return shards, nil
		}
		in.ExclusiveStartShardId = d.LastEvaluatedShardId
	}
	return nil, fmt.Errorf("DescribeStream of %s did not end after 10000 pages", s.arn)
}

func (s *streamsSource) iterator(ctx context.Context, shard string, pos position) (string, error) {
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(s.arn), ShardId: aws.String(shard)}
	switch pos.typ {
	case posTrimHorizon:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	case posLatest:
		in.ShardIteratorType = types.ShardIteratorTypeLatest
	case posAt:
		in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeAtSequenceNumber, aws.String(pos.seq)
	case posAfter:
		in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(pos.seq)
	case posAtTime:
		in.ShardIteratorType, in.Timestamp = types.ShardIteratorTypeAtTimestamp, aws.Time(pos.at)
	}
	out, err := s.client.GetShardIterator(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ShardIterator), nil
}

func (s *streamsSource) getRecords(ctx context.Context, shard, iter string, limit int32) (page, error) {
	out, err := s.client.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(min(limit, 1000))})
	if err != nil {
		return page{}, err
	}
	pg := page{next: aws.ToString(out.NextShardIterator), caughtUp: len(out.Records) == 0}
	pg.records = make([]record, len(out.Records))
	for i, r := range out.Records {
		pg.records[i] = decodeStreamsRecord(r, s.table)
	}
	return pg, nil
}

// decodeStreamsRecord turns a DynamoDB Streams record into a change
// (without its version), or a record with the reason it cannot be one.
func decodeStreamsRecord(r types.Record, table string) record {
	var rec record
	sr := r.Dynamodb
	if sr == nil {
		rec.bad = "no dynamodb field"
		return rec
	}
	rec.seq = aws.ToString(sr.SequenceNumber)
	if rec.seq == "" {
		rec.bad = "no SequenceNumber"
		return rec
	}
	if sr.ApproximateCreationDateTime == nil {
		rec.bad = "no ApproximateCreationDateTime"
		return rec
	}
	t := *sr.ApproximateCreationDateTime
	// DynamoDB Streams truncates to the second. A value with a fraction
	// is taken at the coarsest unit it fits, which only ever errs late.
	prec := Second
	switch {
	case t.Nanosecond()%1_000_000 != 0:
		prec = Microsecond
	case t.Nanosecond() != 0:
		prec = Millisecond
	}
	rec.ts = Timestamp{Micros: t.UnixMicro(), Precision: prec}
	keys, err := ddbattr.StreamsItem(sr.Keys)
	if err != nil {
		rec.bad = "Keys: " + err.Error()
		return rec
	}
	if len(keys) == 0 {
		rec.bad = "no Keys"
		return rec
	}
	ch := Change{Keys: keys, ApproximateTime: rec.ts.Time(), Table: table, EventID: aws.ToString(r.EventID)}
	switch r.EventName {
	case types.OperationTypeInsert, types.OperationTypeModify:
		img, err := ddbattr.StreamsItem(sr.NewImage)
		if err != nil {
			rec.bad = "NewImage: " + err.Error()
			return rec
		}
		if img == nil {
			rec.bad = fmt.Sprintf("%s without NewImage (stream view type %s has no new images)", r.EventName, sr.StreamViewType)
			return rec
		}
		ch.Kind, ch.NewImage = Put, img
	case types.OperationTypeRemove:
		ch.Kind = Delete
		if id := r.UserIdentity; id != nil {
			ch.TTLDelete = isTTLDelete(aws.ToString(id.Type), aws.ToString(id.PrincipalId))
		}
	default:
		rec.bad = fmt.Sprintf("unknown eventName %q", r.EventName)
		return rec
	}
	rec.change = ch
	return rec
}

func (s *streamsSource) classify(err error) errClass {
	var (
		expired   *types.ExpiredIteratorException
		trimmed   *types.TrimmedDataAccessException
		limit     *types.LimitExceededException
		apiErr    smithy.APIError
		throttles = []string{"ThrottlingException", "Throttling", "RequestLimitExceeded", "ProvisionedThroughputExceededException"}
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errFatal
	case errors.As(err, &expired):
		return errExpired
	case errors.As(err, &trimmed):
		return errTrimmed
	case errors.As(err, &limit):
		return errThrottled
	case errors.As(err, &apiErr):
		for _, code := range throttles {
			if apiErr.ErrorCode() == code {
				return errThrottled
			}
		}
		// A server error, and also a stream not found or access denied:
		// a stream may be enabled and a policy fixed while the job waits,
		// and the job's health shows the error meanwhile.
		return errRetry
	}
	// Not an answer from the service: the network, a timeout.
	return errRetry
}
