package cdc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
)

func TestDecodeKinesisRecordSamples(t *testing.T) {
	dir := sharedTestdata(t, "kinesis-records")
	for _, tc := range []struct {
		file  string
		kinds []cdc.Kind
		prec  cdc.Precision
		first int64 // ApproximateCreationDateTime of the first record, µs
	}{
		{"customer-insert-modify-remove-millis.jsonl", []cdc.Kind{cdc.Put, cdc.Put, cdc.Delete}, cdc.Millisecond, 1614669851662000},
		{"flight-microsecond.jsonl", []cdc.Kind{cdc.Put, cdc.Put, cdc.Put}, cdc.Microsecond, 1721011165891550},
		{"cities-modify.jsonl", []cdc.Kind{cdc.Put}, cdc.Millisecond, 1651495525900000},
	} {
		t.Run(tc.file, func(t *testing.T) {
			lines := readLines(t, filepath.Join(dir, tc.file))
			if len(lines) != len(tc.kinds) {
				t.Fatalf("%d lines", len(lines))
			}
			for i, line := range lines {
				r, err := cdc.DecodeKinesisRecord(line)
				if err != nil {
					t.Fatalf("line %d: %v", i+1, err)
				}
				if r.Change.Kind != tc.kinds[i] || r.Timestamp.Precision != tc.prec || len(r.Change.Keys) == 0 || r.Change.Table == "" {
					t.Errorf("line %d: %+v", i+1, r)
				}
				if r.Change.Kind == cdc.Put && r.Change.NewImage == nil {
					t.Errorf("line %d: a put without its image", i+1)
				}
			}
			r, _ := cdc.DecodeKinesisRecord(lines[0])
			if r.Timestamp.Micros != tc.first || !r.Change.ApproximateTime.Equal(time.UnixMicro(tc.first)) {
				t.Errorf("timestamp %+v", r.Timestamp)
			}
		})
	}
}

func TestDecodeKinesisRecord(t *testing.T) {
	base := `{"eventName":"%s","tableName":"t","userIdentity":%s,"recordFormat":"application/json","dynamodb":{"ApproximateCreationDateTime":%s%s,"Keys":{"id":{"S":"1"}}%s}}`
	rec := func(event, identity, ts, precision, image string) []byte {
		return []byte(fmt.Sprintf(base, event, identity, ts, precision, image))
	}
	img := `,"NewImage":{"id":{"S":"1"},"n":{"N":"01.50"}}`
	for _, tc := range []struct {
		name string
		data []byte
		want cdc.Timestamp
		ttl  bool
		err  string
	}{
		{"millis by magnitude", rec("INSERT", "null", "1614669851662", "", img), cdc.Timestamp{Micros: 1614669851662000, Precision: cdc.Millisecond}, false, ""},
		{"micros by magnitude", rec("MODIFY", "null", "1721011165891550", "", img), cdc.Timestamp{Micros: 1721011165891550, Precision: cdc.Microsecond}, false, ""},
		{"micros by field", rec("MODIFY", "null", "1721011165891550", `,"ApproximateCreationDateTimePrecision":"MICROSECOND"`, img), cdc.Timestamp{Micros: 1721011165891550, Precision: cdc.Microsecond}, false, ""},
		{"millis by field", rec("MODIFY", "null", "1614669851662", `,"ApproximateCreationDateTimePrecision":"MILLISECOND"`, img), cdc.Timestamp{Micros: 1614669851662000, Precision: cdc.Millisecond}, false, ""},
		{"seconds as a float", rec("INSERT", "null", "1.46480431E9", "", img), cdc.Timestamp{Micros: 1464804310000000, Precision: cdc.Second}, false, ""},
		{"ttl delete", rec("REMOVE", `{"type":"Service","principalId":"dynamodb.amazonaws.com"}`, "1614669851662", "", ""), cdc.Timestamp{Micros: 1614669851662000, Precision: cdc.Millisecond}, true, ""},
		{"user delete", rec("REMOVE", `{"type":"User","principalId":"someone"}`, "1614669851662", "", ""), cdc.Timestamp{Micros: 1614669851662000, Precision: cdc.Millisecond}, false, ""},
		{"insert without image", rec("INSERT", "null", "1614669851662", "", ""), cdc.Timestamp{}, false, "without dynamodb.NewImage"},
		{"unknown event", rec("TRUNCATE", "null", "1614669851662", "", img), cdc.Timestamp{}, false, "unknown eventName"},
		{"unknown precision", rec("INSERT", "null", "1614669851662", `,"ApproximateCreationDateTimePrecision":"NANOSECOND"`, img), cdc.Timestamp{}, false, "NANOSECOND"},
		{"bad number", rec("INSERT", "null", "1614669851662", "", `,"NewImage":{"n":{"N":"x"}}`), cdc.Timestamp{}, false, "number"},
		{"no keys", []byte(`{"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":1,"NewImage":{}}}`), cdc.Timestamp{}, false, "no dynamodb.Keys"},
		{"not json", []byte(`{"eventName":`), cdc.Timestamp{}, false, "not a Kinesis"},
		{"trailing data", append(rec("INSERT", "null", "1614669851662", "", img), "{}"...), cdc.Timestamp{}, false, "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := cdc.DecodeKinesisRecord(tc.data)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Timestamp != tc.want || r.Change.TTLDelete != tc.ttl {
				t.Errorf("got %+v ttl %v, want %+v ttl %v", r.Timestamp, r.Change.TTLDelete, tc.want, tc.ttl)
			}
			if r.Change.Kind == cdc.Put && !ddb.Equal(r.Change.NewImage["n"], ddb.MustN("1.5")) {
				t.Errorf("image %v", r.Change.NewImage)
			}
		})
	}
}

func FuzzDecodeKinesisRecord(f *testing.F) {
	f.Add([]byte(`{"eventName":"INSERT","tableName":"t","dynamodb":{"ApproximateCreationDateTime":1614669851662,"Keys":{"id":{"S":"1"}},"NewImage":{"id":{"S":"1"}}}}`))
	f.Add([]byte(`{"eventName":"REMOVE","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},"dynamodb":{"ApproximateCreationDateTime":1.5E9,"Keys":{"id":{"N":"1"}}}}`))
	f.Add([]byte(`{"eventName":"MODIFY","dynamodb":{"ApproximateCreationDateTime":1721011165891550,"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{"id":{"B":"AAE="}},"NewImage":{"id":{"B":"AAE="},"s":{"SS":["a","b"]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := cdc.DecodeKinesisRecord(data)
		if err != nil {
			return
		}
		if len(r.Change.Keys) == 0 || (r.Change.Kind == cdc.Put) == (r.Change.NewImage == nil) {
			t.Fatalf("decoded an unusable change %+v", r.Change)
		}
		if err := r.Change.Keys.Validate(); err != nil {
			t.Fatalf("invalid keys: %v", err)
		}
		if r.Timestamp.End() < r.Timestamp.Micros {
			t.Fatalf("timestamp %+v ends before it starts", r.Timestamp)
		}
	})
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	return lines
}

// kinesisPayload builds a Kinesis Data Streams for DynamoDB record for
// item id: a put of v, or a delete when v < 0, at t (milliseconds, or
// microseconds when micro).
func kinesisPayload(id string, v int, t time.Time, micro bool) []byte {
	rec := map[string]any{
		"awsRegion": "us-east-1", "eventID": fmt.Sprint(id, "-", v, "-", t.UnixNano()),
		"userIdentity": nil, "recordFormat": "application/json", "tableName": "sessions",
		"eventSource": "aws:dynamodb",
	}
	d := map[string]any{"Keys": json.RawMessage(mustJSON(key(id))), "SizeBytes": 40}
	if micro {
		d["ApproximateCreationDateTime"] = t.UnixMicro()
		d["ApproximateCreationDateTimePrecision"] = "MICROSECOND"
	} else {
		d["ApproximateCreationDateTime"] = t.UnixMilli()
	}
	if v < 0 {
		rec["eventName"] = "REMOVE"
	} else {
		rec["eventName"] = "MODIFY"
		d["NewImage"] = json.RawMessage(mustJSON(item(id, v)))
	}
	rec["dynamodb"] = d
	b, _ := json.Marshal(rec)
	return b
}

func mustJSON(it ddb.Item) []byte {
	b, err := ddb.MarshalDynamoDBJSON(it)
	if err != nil {
		panic(err)
	}
	return b
}

// kinesalite is a kinesalite stream and an SDK client.
type kinesalite struct {
	client *kinesis.Client
	stream string
}

func newKinesalite(t *testing.T, shards int32) *kinesalite {
	t.Helper()
	ep := peers.StartKinesalite(t)
	k := &kinesalite{
		client: kinesis.New(kinesis.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(ep),
			Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
		}),
		stream: "sessions-cdc",
	}
	if _, err := k.client.CreateStream(t.Context(), &kinesis.CreateStreamInput{StreamName: aws.String(k.stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	k.waitActive(t)
	return k
}

func (k *kinesalite) waitActive(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, "the stream to be ACTIVE", func() bool {
		out, err := k.client.DescribeStreamSummary(t.Context(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(k.stream)})
		return err == nil && out.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive
	})
}

func (k *kinesalite) put(t *testing.T, id string, data []byte) string {
	t.Helper()
	out, err := k.client.PutRecord(t.Context(), &kinesis.PutRecordInput{StreamName: aws.String(k.stream), PartitionKey: aws.String(id), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.SequenceNumber)
}

// TestKinesisKinesalite runs the Kinesis consumer against kinesalite: real
// record shapes, millisecond and microsecond timestamps, duplicates and
// out-of-order records, a shard split mid-stream, and a restart from etcd
// checkpoints. Every record is applied and the result is the source's
// final state.
func TestKinesisKinesalite(t *testing.T) {
	k := newKinesalite(t, 1)
	cli := startEtcd(t)
	store := checkpoint.NewEtcd(cli, topology.NewKeys("test").Job("kinesis-1")+"/shards/")

	final := map[string]string{}
	var seqs []string
	at := time.Date(2024, 7, 15, 2, 39, 25, 0, time.UTC)
	write := func(id string, v int, micro bool) {
		at = at.Add(1500 * time.Microsecond)
		seqs = append(seqs, k.put(t, id, kinesisPayload(id, v, at, micro)))
		if v < 0 {
			final[id] = "deleted"
		} else {
			final[id] = fmt.Sprint(v)
		}
	}
	// The real samples: the customer's insert, modify and remove.
	dir := sharedTestdata(t, "kinesis-records")
	for _, line := range readLines(t, filepath.Join(dir, "customer-insert-modify-remove-millis.jsonl")) {
		seqs = append(seqs, k.put(t, "customer", line))
	}
	for i := range 40 {
		write(fmt.Sprint("k", i%10), i, i%2 == 0)
	}
	// An out-of-order pair: the newer write arrives first.
	newer, older := at.Add(2*time.Millisecond), at.Add(time.Millisecond)
	seqs = append(seqs, k.put(t, "ooo", kinesisPayload("ooo", 2, newer, false)))
	seqs = append(seqs, k.put(t, "ooo", kinesisPayload("ooo", 1, older, false)))
	final["ooo"] = "2"
	at = newer
	// A duplicate delivery.
	dup := kinesisPayload("k3", 77, at.Add(time.Millisecond), true)
	at = at.Add(time.Millisecond)
	seqs = append(seqs, k.put(t, "k3", dup), k.put(t, "k3", dup))
	final["k3"] = "77"

	var mu sync.Mutex
	applied := lww{}
	versions := map[string]uint64{}
	order := map[string][]int{} // shard -> apply index of each change
	n := 0
	// The parent's second page waits until the shard is split and the
	// children hold records, so lineage decides what is read first.
	gate := make(chan struct{})
	parentPages := 0
	apply := func(_ context.Context, changes []cdc.Change) error {
		if changes[0].Shard == "shardId-000000000000" {
			if parentPages++; parentPages == 2 {
				<-gate
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range changes {
			n++
			order[c.Shard] = append(order[c.Shard], n)
			if v, ok := versions[c.Seq]; ok && v != c.Version {
				t.Errorf("record %s replayed with version %s, first %s", c.Seq, hlc.String(c.Version), hlc.String(v))
			}
			versions[c.Seq] = c.Version
			applied.apply(c)
		}
		return nil
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(versions)
	}
	opts := fastOptions()
	opts.Limit = 9
	opts.TableName = "" // the samples come from another table
	c, err := cdc.NewKinesisConsumer(k.client, k.stream, cdc.StartPosition{}, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, c.Run, apply)
	eventually(t, 20*time.Second, "the first page", func() bool { return count() > 0 })

	// Split the shard mid-stream; later writes go to the children.
	if _, err := k.client.SplitShard(t.Context(), &kinesis.SplitShardInput{
		StreamName: aws.String(k.stream), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728"), // 2^127
	}); err != nil {
		t.Fatal(err)
	}
	k.waitActive(t)
	for i := 40; i < 80; i++ {
		write(fmt.Sprint("k", i%10), i, i%3 == 0)
	}
	close(gate)
	eventually(t, 20*time.Second, "some records of the children", func() bool { return count() > len(seqs)-40 })

	// Restart mid-stream.
	if err := r.stop(t); !isCanceled(err) {
		t.Fatalf("Run = %v", err)
	}
	for i := 80; i < 120; i++ {
		v := i
		if i%7 == 0 {
			v = -1
		}
		write(fmt.Sprint("k", i%10), v, i%2 == 1)
	}
	// The restarted consumer meets throttling and an expired iterator.
	faulty := &faultyKinesis{KinesisAPI: k.client, faults: []error{
		&ktypes.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")},
		&ktypes.ExpiredIteratorException{Message: aws.String("Iterator expired")},
		&ktypes.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")},
	}}
	c, err = cdc.NewKinesisConsumer(faulty, k.stream, cdc.StartPosition{}, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	r = start(t, c.Run, apply)
	eventually(t, 20*time.Second, "every record", func() bool { return count() == len(seqs) })
	if err := r.stop(t); !isCanceled(err) {
		t.Fatalf("Run = %v", err)
	}
	if st := c.Stats(); st.Throttled != 2 || st.IteratorsRenewed != 1 {
		t.Errorf("stats %+v: want 2 throttled calls and 1 renewed iterator", st)
	}

	for _, seq := range seqs {
		if _, ok := versions[seq]; !ok {
			t.Errorf("record %s was never applied", seq)
		}
	}
	for id, want := range final {
		if got := valueOf(applied[id]); got != want {
			t.Errorf("item %s = %s, source has %s", id, got, want)
		}
	}
	// The parent was applied to its end before either child began.
	parent := order["shardId-000000000000"]
	for _, child := range []string{"shardId-000000000001", "shardId-000000000002"} {
		if len(order[child]) == 0 {
			t.Fatalf("no records from %s", child)
		}
		if order[child][0] < parent[len(parent)-1] {
			t.Errorf("%s began (change %d) before its parent ended (change %d)", child, order[child][0], parent[len(parent)-1])
		}
	}
	cps, err := store.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !cps["shardId-000000000000"].Done {
		t.Errorf("parent checkpoint %+v, want done", cps["shardId-000000000000"])
	}
	t.Logf("%d records over %d shards", len(seqs), len(order))
}

// faultyKinesis fails GetRecords calls with the given errors, in order,
// then passes them through.
type faultyKinesis struct {
	cdc.KinesisAPI
	mu     sync.Mutex
	faults []error
}

func (f *faultyKinesis) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	if len(f.faults) > 0 {
		err := f.faults[0]
		f.faults = f.faults[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.KinesisAPI.GetRecords(ctx, in, opts...)
}
