package streamsfake_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
)

// TestSemantics checks the fake's answers through the real SDK client.
func TestSemantics(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f := streamsfake.New(streamsfake.Options{Now: func() time.Time { return now }, IteratorTTL: time.Minute})
	c := streamsfake.NewClient(streamsfake.Serve(t, f))
	ctx := t.Context()
	arn := f.CreateStream("sessions", "NEW_IMAGE")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.CreateShard(arn, "shard-A", ""))
	var seqs []string
	for i := range 3 {
		s, err := f.Put(arn, "shard-A", streamsfake.NewRecord("INSERT", ddb.Item{"pk": ddb.S("k")}, ddb.Item{"pk": ddb.S("k"), "i": ddb.NFromInt64(int64(i))}, now, false))
		must(err)
		seqs = append(seqs, s...)
	}
	must(f.Split(arn, "shard-A", "shard-B"))

	ls, err := c.ListStreams(ctx, &dynamodbstreams.ListStreamsInput{TableName: aws.String("sessions")})
	must(err)
	if len(ls.Streams) != 1 || aws.ToString(ls.Streams[0].StreamArn) != arn {
		t.Fatalf("ListStreams = %+v", ls.Streams)
	}
	ds, err := c.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), Limit: aws.Int32(1)})
	must(err)
	d := ds.StreamDescription
	if len(d.Shards) != 1 || aws.ToString(d.LastEvaluatedShardId) != "shard-A" || d.Shards[0].SequenceNumberRange.EndingSequenceNumber == nil {
		t.Fatalf("DescribeStream page 1 = %+v", d)
	}
	ds, err = c.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), ExclusiveStartShardId: d.LastEvaluatedShardId})
	must(err)
	if sh := ds.StreamDescription.Shards; len(sh) != 1 || aws.ToString(sh[0].ParentShardId) != "shard-A" || ds.StreamDescription.LastEvaluatedShardId != nil {
		t.Fatalf("DescribeStream page 2 = %+v", ds.StreamDescription)
	}

	it, err := c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String("shard-A"), ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(seqs[0])})
	must(err)
	gr, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
	must(err)
	if len(gr.Records) != 2 || aws.ToString(gr.Records[0].Dynamodb.SequenceNumber) != seqs[1] || gr.NextShardIterator != nil {
		t.Fatalf("GetRecords of a closed shard = %d records, next %v", len(gr.Records), gr.NextShardIterator)
	}
	if !gr.Records[0].Dynamodb.ApproximateCreationDateTime.Equal(now) {
		t.Errorf("ApproximateCreationDateTime %v", gr.Records[0].Dynamodb.ApproximateCreationDateTime)
	}

	// An open shard answers an empty page with a live iterator.
	it, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String("shard-B"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	must(err)
	gr, err = c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
	must(err)
	if len(gr.Records) != 0 || gr.NextShardIterator == nil {
		t.Fatalf("empty open shard: %d records, next %v", len(gr.Records), gr.NextShardIterator)
	}

	// Limits, expiry and trimming come back as the SDK's typed errors.
	if _, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: gr.NextShardIterator, Limit: aws.Int32(1001)}); err == nil {
		t.Error("Limit 1001 accepted")
	}
	now = now.Add(2 * time.Minute)
	var expired *types.ExpiredIteratorException
	if _, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: gr.NextShardIterator}); !errors.As(err, &expired) {
		t.Errorf("old iterator: %v, want ExpiredIteratorException", err)
	}
	must(f.Trim(arn, "shard-A", 2))
	var trimmed *types.TrimmedDataAccessException
	_, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String("shard-A"), ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(seqs[0])})
	if !errors.As(err, &trimmed) {
		t.Errorf("trimmed sequence number: %v, want TrimmedDataAccessException", err)
	}
	f.InjectError("GetShardIterator", "LimitExceededException")
	var limit *types.LimitExceededException
	_, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String("shard-A"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if !errors.As(err, &limit) {
		t.Errorf("injected fault: %v, want LimitExceededException", err)
	}
	must(f.RemoveShard(arn, "shard-A"))
	var notFound *types.ResourceNotFoundException
	_, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String("shard-A"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if !errors.As(err, &notFound) {
		t.Errorf("removed shard: %v, want ResourceNotFoundException", err)
	}
}
