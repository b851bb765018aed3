package cdc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
)

// KinesisAPI is the part of the Kinesis Data Streams API the consumer
// calls; *kinesis.Client implements it.
type KinesisAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, opts ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

var _ KinesisAPI = (*kinesis.Client)(nil)

// KinesisConsumer reads a Kinesis data stream fed by Kinesis Data Streams
// for DynamoDB: every shard in lineage order (parents, including a merge's
// adjacent parent, to their end before their children), checkpointed per
// shard. Records delivered twice or out of order are harmless: their
// versions come from their timestamps (see KinesisVersion).
type KinesisConsumer struct {
	c *consumer
}

// NewKinesisConsumer returns a consumer of the Kinesis stream stream (a
// name, or an ARN).
func NewKinesisConsumer(client KinesisAPI, stream string, start StartPosition, cp checkpoint.Store, opts Options) (*KinesisConsumer, error) {
	if client == nil || stream == "" {
		return nil, errors.New("cdc: NewKinesisConsumer needs a client and a stream name")
	}
	src := &kinesisSource{client: client, stream: stream, table: opts.TableName}
	c, err := newConsumer(src, cp, start, opts, KinesisVersion)
	if err != nil {
		return nil, err
	}
	return &KinesisConsumer{c: c}, nil
}

// Run reads the stream and calls apply with each page of each shard's
// changes, until ctx ends (it returns ctx.Err()), an error stops it, or
// every shard is closed and read to its end (it returns nil). Run resumes
// from the checkpoints, so calling it again after an error or a restart
// loses nothing. See ApplyFunc for the contract.
func (k *KinesisConsumer) Run(ctx context.Context, apply ApplyFunc) error {
	return k.c.run(ctx, apply)
}

// Stats returns the consumer's counters and lag. Safe to call while Run
// runs.
func (k *KinesisConsumer) Stats() Stats { return k.c.Stats() }

// kinesisSource is the Kinesis side of a consumer.
type kinesisSource struct {
	client KinesisAPI
	stream string
	table  string
}

func (s *kinesisSource) describe() string { return "Kinesis stream " + s.stream }

func (s *kinesisSource) prepare(context.Context) error { return nil }

// name sets the stream's name or ARN on a request.
func (s *kinesisSource) name() (name, arn *string) {
	if strings.HasPrefix(s.stream, "arn:") {
		return nil, aws.String(s.stream)
	}
	return aws.String(s.stream), nil
}

func (s *kinesisSource) listShards(ctx context.Context) ([]shardInfo, error) {
	var shards []shardInfo
	in := &kinesis.ListShardsInput{}
	in.StreamName, in.StreamARN = s.name()
	for page := 0; page < 10000; page++ {
		out, err := s.client.ListShards(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, sh := range out.Shards {
			info := shardInfo{ID: aws.ToString(sh.ShardId)}
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				if id := aws.ToString(p); id != "" {
					info.Parents = append(info.Parents, id)
				}
			}
			info.Closed = sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil
			shards = append(shards, info)
		}
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		// The next page is named by its token alone.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	return nil, fmt.Errorf("ListShards of %s did not end after 10000 pages", s.stream)
}

func (s *kinesisSource) iterator(ctx context.Context, shard string, pos position) (string, error) {
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(shard)}
	in.StreamName, in.StreamARN = s.name()
	switch pos.typ {
	case posTrimHorizon:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	case posLatest:
		in.ShardIteratorType = types.ShardIteratorTypeLatest
	case posAt:
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAtSequenceNumber, aws.String(pos.seq)
	case posAfter:
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(pos.seq)
	case posAtTime:
		in.ShardIteratorType, in.Timestamp = types.ShardIteratorTypeAtTimestamp, aws.Time(pos.at)
	}
	out, err := s.client.GetShardIterator(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ShardIterator), nil
}

func (s *kinesisSource) getRecords(ctx context.Context, shard, iter string, limit int32) (page, error) {
	in := &kinesis.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(limit)}
	if strings.HasPrefix(s.stream, "arn:") {
		in.StreamARN = aws.String(s.stream)
	}
	out, err := s.client.GetRecords(ctx, in)
	if err != nil {
		return page{}, err
	}
	pg := page{
		next:      aws.ToString(out.NextShardIterator),
		caughtUp:  len(out.Records) == 0 || out.MillisBehindLatest != nil && *out.MillisBehindLatest == 0,
		newShards: len(out.ChildShards) > 0,
	}
	pg.records = make([]record, len(out.Records))
	for i, r := range out.Records {
		rec := record{seq: aws.ToString(r.SequenceNumber), data: r.Data}
		kr, err := DecodeKinesisRecord(r.Data)
		switch {
		case rec.seq == "":
			rec.bad = "no SequenceNumber"
		case err != nil:
			rec.bad = err.Error()
		case s.table != "" && kr.Change.Table != s.table:
			rec.skip = true
		default:
			rec.change, rec.ts = kr.Change, kr.Timestamp
		}
		pg.records[i] = rec
	}
	return pg, nil
}

func (s *kinesisSource) classify(err error) errClass {
	var (
		expired  *types.ExpiredIteratorException
		pte      *types.ProvisionedThroughputExceededException
		limit    *types.LimitExceededException
		kmsThrot *types.KMSThrottlingException
		apiErr   smithy.APIError
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errFatal
	case errors.As(err, &expired):
		return errExpired
	case errors.As(err, &pte), errors.As(err, &limit), errors.As(err, &kmsThrot):
		return errThrottled
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode() {
		case "ThrottlingException", "Throttling", "RequestLimitExceeded":
			return errThrottled
		}
		// A server error, and also a stream not found or access denied:
		// retried (and reported) until the caller gives up.
		return errRetry
	}
	return errRetry
}

// KinesisRecord is a decoded Kinesis Data Streams for DynamoDB record.
type KinesisRecord struct {
	// Change is the change the record describes, without Version, Shard
	// and Seq (those come from the Kinesis record around it).
	Change Change
	// Timestamp is dynamodb.ApproximateCreationDateTime with its precision.
	Timestamp Timestamp
}

// kinesisPayload is the JSON of a Kinesis Data Streams for DynamoDB
// record's Data.
type kinesisPayload struct {
	EventID      string `json:"eventID"`
	EventName    string `json:"eventName"`
	TableName    string `json:"tableName"`
	RecordFormat string `json:"recordFormat"`
	UserIdentity *struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
	} `json:"userIdentity"`
	Dynamodb *struct {
		ApproximateCreationDateTime          json.Number `json:"ApproximateCreationDateTime"`
		ApproximateCreationDateTimePrecision string      `json:"ApproximateCreationDateTimePrecision"`
		Keys                                 ddb.Item    `json:"Keys"`
		NewImage                             ddb.Item    `json:"NewImage"`
	} `json:"dynamodb"`
}

// DecodeKinesisRecord decodes the Data of a Kinesis Data Streams for
// DynamoDB record: eventName INSERT or MODIFY is a Put of dynamodb.NewImage
// and REMOVE a Delete (a TTL delete when userIdentity is DynamoDB's
// service principal). ApproximateCreationDateTime is in milliseconds, or
// microseconds when ApproximateCreationDateTimePrecision says MICROSECOND;
// without that field the magnitude decides (>= 1e14 is microseconds,
// >= 1e11 milliseconds, below that seconds, as DynamoDB Streams writes
// them). OldImage is not needed and not decoded.
func DecodeKinesisRecord(data []byte) (KinesisRecord, error) {
	var p kinesisPayload
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return KinesisRecord{}, fmt.Errorf("not a Kinesis Data Streams for DynamoDB record: %w", err)
	}
	if dec.More() {
		return KinesisRecord{}, errors.New("not a Kinesis Data Streams for DynamoDB record: data after the JSON object")
	}
	if p.RecordFormat != "" && p.RecordFormat != "application/json" {
		return KinesisRecord{}, fmt.Errorf("recordFormat %q is not application/json", p.RecordFormat)
	}
	if p.Dynamodb == nil {
		return KinesisRecord{}, errors.New("no dynamodb field")
	}
	ts, err := parseApproximateTime(p.Dynamodb.ApproximateCreationDateTime, p.Dynamodb.ApproximateCreationDateTimePrecision)
	if err != nil {
		return KinesisRecord{}, err
	}
	if len(p.Dynamodb.Keys) == 0 {
		return KinesisRecord{}, errors.New("no dynamodb.Keys")
	}
	ch := Change{Keys: p.Dynamodb.Keys, ApproximateTime: ts.Time(), Table: p.TableName, EventID: p.EventID}
	switch p.EventName {
	case "INSERT", "MODIFY":
		if p.Dynamodb.NewImage == nil {
			return KinesisRecord{}, fmt.Errorf("%s without dynamodb.NewImage (the table's stream view must include new images)", p.EventName)
		}
		ch.Kind, ch.NewImage = Put, p.Dynamodb.NewImage
	case "REMOVE":
		ch.Kind = Delete
		if id := p.UserIdentity; id != nil {
			ch.TTLDelete = isTTLDelete(id.Type, id.PrincipalID)
		}
	default:
		return KinesisRecord{}, fmt.Errorf("unknown eventName %q", p.EventName)
	}
	return KinesisRecord{Change: ch, Timestamp: ts}, nil
}

// parseApproximateTime reads ApproximateCreationDateTime without going
// through float64 when it is an integer.
func parseApproximateTime(n json.Number, precision string) (Timestamp, error) {
	if n == "" {
		return Timestamp{}, errors.New("no dynamodb.ApproximateCreationDateTime")
	}
	s := string(n)
	var v int64
	integer := !strings.ContainsAny(s, ".eE")
	if integer {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Timestamp{}, fmt.Errorf("ApproximateCreationDateTime %s: %w", s, err)
		}
		v = i
	} else {
		// A fraction or an exponent (1.46480431E9): seconds as DynamoDB
		// Streams writes them. Exact decimal arithmetic, then micros.
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return Timestamp{}, fmt.Errorf("ApproximateCreationDateTime %s is not a number", s)
		}
		us := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
		if us.Sign() < 0 || us.Cmp(big.NewRat(1e17, 1)) > 0 {
			return Timestamp{}, fmt.Errorf("ApproximateCreationDateTime %s is out of range", s)
		}
		q := new(big.Int).Quo(us.Num(), us.Denom()).Int64()
		// The coarsest unit the value fits, which only ever errs late.
		prec := Microsecond
		switch {
		case !us.IsInt():
		case q%1_000_000 == 0:
			prec = Second
		case q%1000 == 0:
			prec = Millisecond
		}
		return Timestamp{Micros: q, Precision: prec}, nil
	}
	if v < 0 {
		return Timestamp{}, fmt.Errorf("ApproximateCreationDateTime %s is negative", s)
	}
	switch strings.ToUpper(precision) {
	case "MICROSECOND":
		return Timestamp{Micros: v, Precision: Microsecond}, nil
	case "MILLISECOND":
		if v > math.MaxInt64/1000 {
			return Timestamp{}, fmt.Errorf("ApproximateCreationDateTime %s is out of range", s)
		}
		return Timestamp{Micros: v * 1000, Precision: Millisecond}, nil
	case "":
	default:
		return Timestamp{}, fmt.Errorf("unknown ApproximateCreationDateTimePrecision %q", precision)
	}
	switch {
	case v >= 1e14:
		return Timestamp{Micros: v, Precision: Microsecond}, nil
	case v >= 1e11:
		return Timestamp{Micros: v * 1000, Precision: Millisecond}, nil
	}
	return Timestamp{Micros: v * 1_000_000, Precision: Second}, nil
}
