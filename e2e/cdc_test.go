package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/veltrixdb/veltrix/e2e/cluster"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// awsTestEnv gives the migrator's default credential chain fake
// credentials and a region, as production gives it real ones.
func awsTestEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "veltrix")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "veltrix")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// cdcMapping maps the CDC tests' items: an S partition key "pk".
func cdcMapping(table string) *migratorv1.Mapping {
	return &migratorv1.Mapping{TargetTable: table, CreateTable: true,
		PartitionKey: &migratorv1.KeyAttribute{Name: "pk", Type: migratorv1.KeyType_KEY_TYPE_S}}
}

func cdcItem(pk string, v int) ddb.Item {
	return ddb.Item{"pk": ddb.S(pk), "v": ddb.NFromInt64(int64(v)), "note": ddb.S(fmt.Sprintf("value %d of %s", v, pk))}
}

// kinesisRecord is a Kinesis Data Streams for DynamoDB record: INSERT,
// MODIFY (with the new image) or REMOVE (ttl: by DynamoDB's TTL process),
// stamped at to the millisecond.
func kinesisRecord(event string, pk string, image ddb.Item, at time.Time, ttl bool) []byte {
	keys, _ := ddb.MarshalDynamoDBJSON(ddb.Item{"pk": ddb.S(pk)})
	d := map[string]any{"ApproximateCreationDateTime": at.UnixMilli(), "Keys": json.RawMessage(keys), "SizeBytes": 60}
	if image != nil {
		img, _ := ddb.MarshalDynamoDBJSON(image)
		d["NewImage"] = json.RawMessage(img)
	}
	rec := map[string]any{"awsRegion": "us-east-1", "eventID": fmt.Sprintf("%s-%d", pk, at.UnixNano()), "eventName": event,
		"userIdentity": nil, "recordFormat": "application/json", "tableName": "src", "eventSource": "aws:dynamodb", "dynamodb": d}
	if ttl {
		rec["userIdentity"] = map[string]string{"type": "Service", "principalId": "dynamodb.amazonaws.com"}
	}
	b, _ := json.Marshal(rec)
	return b
}

// kinesisStream is a kinesalite stream and a client of it.
type kinesisStream struct {
	endpoint string
	cli      *kinesis.Client
	name     string
}

func startKinesis(t *testing.T, name string, shards int32) *kinesisStream {
	t.Helper()
	ep := peers.StartKinesalite(t)
	k := &kinesisStream{endpoint: ep, name: name, cli: kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(ep),
		Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", "")})}
	ctx := context.Background()
	if _, err := k.cli.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the Kinesis stream to be ACTIVE", func() bool {
		out, err := k.cli.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		return err == nil && out.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive
	})
	return k
}

func (k *kinesisStream) put(t *testing.T, pk string, data []byte) {
	t.Helper()
	if _, err := k.cli.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String(k.name), PartitionKey: aws.String(pk), Data: data}); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// veltrixState reads keys from a table: pk → item (nil when absent).
func veltrixState(t testing.TB, cli *client.Client, table string, keys []string) map[string]ddb.Item {
	t.Helper()
	ks := make([]client.Key, len(keys))
	for i, k := range keys {
		ks[i] = client.Key{Table: table, PartitionKey: []byte(k)}
	}
	res, err := cli.BatchGet(context.Background(), ks)
	if status.Code(err) == codes.NotFound {
		return nil // the table is not created yet
	}
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]ddb.Item, len(keys))
	for i, r := range res {
		if !r.Found {
			out[keys[i]] = nil
			continue
		}
		it, err := ddb.DecodeItem(r.Item.Value)
		if err != nil {
			t.Fatal(err)
		}
		out[keys[i]] = it
	}
	return out
}

// stateDiff describes how Veltrix differs from want ("" when equal).
func stateDiff(got, want map[string]ddb.Item) string {
	n, first := 0, ""
	for k, w := range want {
		g := got[k]
		if (g == nil) != (w == nil) || g != nil && !ddb.EqualItems(g, w) {
			if n == 0 {
				first = fmt.Sprintf("%s: got %v, want %v", k, g, w)
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d keys differ, e.g. %s", n, first)
}

func waitState(t testing.TB, cli *client.Client, table string, want map[string]ddb.Item, timeout time.Duration) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	deadline := time.Now().Add(timeout)
	for {
		got := veltrixState(t, cli, table, keys)
		d := "the table does not exist yet"
		if got != nil {
			d = stateDiff(got, want)
		}
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Veltrix did not reach the source's state within %s: %s", timeout, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJob(t testing.TB, p *migProc, id string) *migratorv1.Job {
	t.Helper()
	resp, err := p.api.GetJob(context.Background(), &migratorv1.GetJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetJob()
}

func startStream(t testing.TB, p *migProc, spec *migratorv1.StreamSpec) string {
	t.Helper()
	resp, err := p.api.StartStream(context.Background(), &migratorv1.StartStreamRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetJob().GetId()
}

func cancelStream(t testing.TB, p *migProc, id string) {
	t.Helper()
	resp, err := p.api.CancelJob(context.Background(), &migratorv1.CancelJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetJob().GetState() != migratorv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("cancel: %s", resp.GetJob().GetState())
	}
	waitUntil(t, 10*time.Second, "the stream run to stop", func() bool { return len(p.srv.Running()) == 0 })
}

func routerClient(t testing.TB, c *cluster.Cluster) *client.Client {
	t.Helper()
	cli, err := client.New(context.Background(), []string{c.RouterAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestCDCKinesis runs a Kinesis stream job against kinesalite: puts,
// updates, a delete, a TTL delete and an undecodable record (dead-lettered;
// the job goes on), progress and lag in GetJob, WatchJob and the lag
// gauge; then the migrator is closed mid-stream and a new one resumes from
// the checkpoints without losing a record; then the job is cancelled.
func TestCDCKinesis(t *testing.T) {
	awsTestEnv(t)
	k := startKinesis(t, "sessions-cdc", 2)
	c := cluster.Start(t, cluster.Options{Nodes: 1, RF: 1, NoSync: true})
	cli := routerClient(t, c)

	want := map[string]ddb.Item{}
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	write := func(event, pk string, v int, ttl bool) {
		at = at.Add(time.Millisecond)
		var img ddb.Item
		if event != "REMOVE" {
			img = cdcItem(pk, v)
		}
		k.put(t, pk, kinesisRecord(event, pk, img, at, ttl))
		want[pk] = img
	}
	for i := range 10 {
		write("INSERT", fmt.Sprint("k", i), 1, false)
	}
	write("MODIFY", "k0", 2, false)
	write("REMOVE", "k1", 0, false)
	write("REMOVE", "k2", 0, true)
	k.put(t, "bad", []byte(`{"eventName":"INSERT","dynamodb":`))

	m1 := migStart(t, c, "m1")
	id := startStream(t, m1, &migratorv1.StreamSpec{Kind: migratorv1.StreamKind_STREAM_KIND_KINESIS, Stream: k.name,
		Mapping: cdcMapping("cdc"), Aws: &migratorv1.AwsOptions{Endpoint: k.endpoint}, BatchSize: 50})
	waitState(t, cli, "cdc", want, 30*time.Second)
	waitUntil(t, 10*time.Second, "the job's progress", func() bool {
		p := getJob(t, m1, id).GetProgress()
		return p.GetItemsWritten() == 11 && p.GetDeletes() == 2 && p.GetTtlDeletes() == 1 && p.GetRejects() == 1 && p.GetLag() != nil
	})
	rs, err := m1.api.ListRejects(context.Background(), &migratorv1.ListRejectsRequest{JobId: id})
	if err != nil || len(rs.GetRejects()) != 1 {
		t.Fatalf("rejects %v %v", rs, err)
	}
	// WatchJob keeps sending a running stream job.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ws, err := m1.api.WatchJob(ctx, &migratorv1.WatchJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r, err := ws.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if j := r.GetJob(); j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING || j.GetProgress().GetLag() == nil || len(j.GetOwners()) != 1 {
			t.Fatalf("watch: %s owners %v progress %v", j.GetState(), j.GetOwners(), j.GetProgress())
		}
	}
	cancel()
	mfs, err := m1.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lagSeen := false
	for _, mf := range mfs {
		if mf.GetName() != "veltrix_migrator_stream_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				lagSeen = lagSeen || lp.GetName() == "job_id" && lp.GetValue() == id
			}
		}
	}
	if !lagSeen {
		t.Error("no veltrix_migrator_stream_lag_seconds{job_id} series for the job")
	}

	// Mid-stream: records keep coming while the migrator is closed and a
	// new one starts; every record ends applied.
	for i := range 60 {
		write("MODIFY", fmt.Sprint("k", i%20), 10+i, false)
		if i == 20 {
			m1.close()
		}
	}
	write("REMOVE", "k5", 0, false)
	m2 := migStart(t, c, "m2")
	for i := range 20 {
		write("INSERT", fmt.Sprint("n", i), i, false)
	}
	waitState(t, cli, "cdc", want, 30*time.Second)
	waitUntil(t, 10*time.Second, "the progress after the restart", func() bool {
		j := getJob(t, m2, id)
		return j.GetState() == migratorv1.JobState_JOB_STATE_RUNNING && j.GetProgress().GetItemsWritten() >= 11+60+20 &&
			j.GetProgress().GetDeletes() >= 3 && slices.Equal(j.GetOwners(), []string{"m2"})
	})
	cancelStream(t, m2, id)
}

// TestCDCDynamoDBStreams runs a DynamoDB Streams job against streamsfake
// over HTTP: the real SDK client, built from AwsOptions.endpoint and the
// default credential chain.
func TestCDCDynamoDBStreams(t *testing.T) {
	awsTestEnv(t)
	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	arn := sf.CreateStream("src", "NEW_AND_OLD_IMAGES")
	if err := sf.CreateShard(arn, "shardId-00000001", ""); err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 1, RF: 1, NoSync: true})
	cli := routerClient(t, c)
	want := map[string]ddb.Item{}
	at := time.Now().Add(-time.Minute)
	put := func(event, pk string, v int, ttl bool) {
		t.Helper()
		var img ddb.Item
		if event != "REMOVE" {
			img = cdcItem(pk, v)
		}
		// Several writes per second: the per-shard clock orders them.
		if _, err := sf.Put(arn, "shardId-00000001", streamsfake.NewRecord(event, ddb.Item{"pk": ddb.S(pk)}, img, at, ttl)); err != nil {
			t.Fatal(err)
		}
		want[pk] = img
	}
	for i := range 30 {
		put("INSERT", fmt.Sprint("s", i%10), i, false)
	}
	put("REMOVE", "s3", 0, false)
	put("REMOVE", "s4", 0, true)

	m := migStart(t, c, "m1")
	id := startStream(t, m, &migratorv1.StreamSpec{Kind: migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS, Stream: arn,
		Mapping: cdcMapping("ddbstream"), Aws: &migratorv1.AwsOptions{Endpoint: endpoint}})
	waitState(t, cli, "ddbstream", want, 30*time.Second)
	// A split: the parent closes, the children carry on.
	if err := sf.Split(arn, "shardId-00000001", "shardId-00000002"); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Second)
	for i := range 10 {
		if _, err := sf.Put(arn, "shardId-00000002", streamsfake.NewRecord("MODIFY", ddb.Item{"pk": ddb.S(fmt.Sprint("s", i))}, cdcItem(fmt.Sprint("s", i), 100+i), at, false)); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprint("s", i)] = cdcItem(fmt.Sprint("s", i), 100+i)
	}
	waitState(t, cli, "ddbstream", want, 30*time.Second)
	waitUntil(t, 10*time.Second, "the job's progress", func() bool {
		p := getJob(t, m, id).GetProgress()
		return p.GetItemsWritten() == 40 && p.GetDeletes() == 2 && p.GetTtlDeletes() == 1 && p.GetLag() != nil
	})
	cancelStream(t, m, id)
}

// writeExport writes a full DynamoDB JSON export of items taken at
// exportTime into dir, in the layout import reads (data file, manifests
// and their .md5 files).
func writeExport(t testing.TB, dir string, exportTime time.Time, items []ddb.Item) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	for _, it := range items {
		b, err := ddb.MarshalDynamoDBJSON(it)
		if err != nil {
			t.Fatal(err)
		}
		lines.WriteString(`{"Item":`)
		lines.Write(b)
		lines.WriteString("}\n")
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write(lines.Bytes())
	_ = w.Close()
	root := "prefix/AWSDynamoDB/01717243200456-abcdef12/"
	name := "data/file00.json.gz"
	if err := os.WriteFile(filepath.Join(dir, name), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(gz.Bytes())
	mf, _ := json.Marshal(map[string]any{"itemCount": len(items), "md5Checksum": base64.StdEncoding.EncodeToString(sum[:]),
		"etag": fmt.Sprintf("%x-1", sum), "dataFileS3Key": root + name})
	summary, _ := json.Marshal(map[string]any{"version": "2020-06-30", "exportArn": "arn:aws:dynamodb:us-east-1:123456789012:table/src/export/01717243200456-abcdef12",
		"s3Bucket": "bucket", "s3Prefix": "prefix", "manifestFilesS3Key": root + "manifest-files.json", "itemCount": len(items),
		"outputFormat": "DYNAMODB_JSON", "exportTime": exportTime.UTC().Format(time.RFC3339Nano)})
	for file, data := range map[string][]byte{"manifest-files": append(mf, '\n'), "manifest-summary": summary} {
		s := md5.Sum(data)
		if err := os.WriteFile(filepath.Join(dir, file+".json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file+".md5"), []byte(base64.StdEncoding.EncodeToString(s[:])), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCDCConvergence is the acceptance test of issue #7. A random history
// of puts, updates and deletes is applied to a live table (dynalite) and
// published as Kinesis records (kinesalite) stamped with derived
// ApproximateCreationDateTimes; an export holds the table's state at T0,
// in the middle of the history. The stream job starts first, the import
// of the export runs while it streams, the migrator is restarted, part of
// the stream is replayed twice (duplicate records, and a restart from an
// older checkpoint), and finally a verify job scans the live table and
// must find Veltrix equal to it: no missing, different or extra item.
func TestCDCConvergence(t *testing.T) {
	awsTestEnv(t)
	ddbEndpoint := peers.StartDynalite(t)
	k := startKinesis(t, "src-cdc", 2)
	c := cluster.Start(t, cluster.Options{Nodes: 1, RF: 1, NoSync: true})
	cli := routerClient(t, c)
	ctx := context.Background()

	dyn := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(ddbEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", "")})
	if _, err := dyn.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String("src"),
		AttributeDefinitions:  []dtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:             []dtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: dtypes.KeyTypeHash}},
		ProvisionedThroughput: &dtypes.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(1000), WriteCapacityUnits: aws.Int64(1000)},
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the table to be ACTIVE", func() bool {
		out, err := dyn.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("src")})
		return err == nil && out.Table.TableStatus == dtypes.TableStatusActive
	})

	// The history: op i happens at base + i ms.
	const keys, ops, t0Op = 40, 300, 150
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Millisecond)
	state := map[string]ddb.Item{}
	var snapshot []ddb.Item
	type rec struct {
		pk   string
		data []byte
	}
	var records []rec
	for i := range ops {
		pk := fmt.Sprintf("key-%02d", rng.IntN(keys))
		at := base.Add(time.Duration(i) * time.Millisecond)
		if state[pk] != nil && rng.IntN(10) < 4 {
			if _, err := dyn.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("src"),
				Key: map[string]dtypes.AttributeValue{"pk": &dtypes.AttributeValueMemberS{Value: pk}}}); err != nil {
				t.Fatal(err)
			}
			state[pk] = nil
			records = append(records, rec{pk, kinesisRecord("REMOVE", pk, nil, at, false)})
		} else {
			it := cdcItem(pk, i)
			it["tags"] = ddb.SS{"a", fmt.Sprint(rng.IntN(100))}
			event := "MODIFY"
			if state[pk] == nil {
				event = "INSERT"
			}
			if _, err := dyn.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("src"), Item: toAttributeValues(it)}); err != nil {
				t.Fatal(err)
			}
			state[pk] = it
			records = append(records, rec{pk, kinesisRecord(event, pk, it, at, false)})
		}
		if i == t0Op {
			for _, it := range state {
				if it != nil {
					snapshot = append(snapshot, it)
				}
			}
		}
	}
	live := 0
	for _, it := range state {
		if it != nil {
			live++
		}
	}
	t0 := base.Add(t0Op * time.Millisecond)
	exportDir := t.TempDir()
	writeExport(t, exportDir, t0, snapshot)
	for _, r := range records[:ops/2] {
		k.put(t, r.pk, r.data)
	}

	// The stream starts first; the import runs while it streams.
	m1 := migStart(t, c, "m1")
	streamID := startStream(t, m1, &migratorv1.StreamSpec{Kind: migratorv1.StreamKind_STREAM_KIND_KINESIS, Stream: k.name,
		Mapping: cdcMapping("conv"), Aws: &migratorv1.AwsOptions{Endpoint: k.endpoint}, BatchSize: 25})
	waitUntil(t, 20*time.Second, "the stream to apply records", func() bool {
		return getJob(t, m1, streamID).GetProgress().GetItemsWritten() > 20
	})
	// An older checkpoint to go back to later.
	shards := topology.NewKeys("test").Job(streamID) + "/shards/"
	old, err := c.EtcdCli.Get(ctx, shards, clientv3.WithPrefix())
	if err != nil || len(old.Kvs) == 0 {
		t.Fatalf("no shard checkpoints under %s: %v", shards, err)
	}
	resp, err := m1.api.StartImport(ctx, &migratorv1.StartImportRequest{Spec: &migratorv1.ImportSpec{
		Source: &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: exportDir}}, Mapping: cdcMapping("conv"), BatchSize: 10}})
	if err != nil {
		t.Fatal(err)
	}
	importID := resp.GetJob().GetId()
	for _, r := range records[ops/2:] {
		k.put(t, r.pk, r.data)
	}
	// A restart mid-stream, and duplicates of older records.
	m1.close()
	for _, i := range rng.Perm(ops)[:60] {
		k.put(t, records[i].pk, records[i].data)
	}
	m2 := migStart(t, c, "m2")
	j, _ := migWatch(t, m2, importID, time.Minute)
	// Items the stream had already written at a newer version are
	// superseded, not written: together they are the snapshot.
	if p := j.GetProgress(); j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten()+p.GetItemsSuperseded() != uint64(len(snapshot)) {
		t.Fatalf("import: %s %q %v", j.GetState(), j.GetError(), j.GetProgress())
	}
	waitState(t, cli, "conv", state, 30*time.Second)

	// Replay from the older checkpoint: close, rewind, resume.
	m2.close()
	for _, kv := range old.Kvs {
		if _, err := c.EtcdCli.Put(ctx, string(kv.Key), string(kv.Value)); err != nil {
			t.Fatal(err)
		}
	}
	m3 := migStart(t, c, "m3")
	// Replayed records are applied again or, where a later write of the
	// key is stored, counted as superseded.
	applied := func() uint64 {
		p := getJob(t, m3, streamID).GetProgress()
		return p.GetItemsWritten() + p.GetItemsSuperseded()
	}
	before := applied()
	waitUntil(t, 20*time.Second, "the replay", func() bool { return applied() >= before+100 })
	waitState(t, cli, "conv", state, 30*time.Second)

	// Verify against the live table.
	vr, err := m3.api.StartVerify(ctx, &migratorv1.StartVerifyRequest{Spec: &migratorv1.VerifySpec{
		Source: &migratorv1.VerifySpec_TableScan{TableScan: &migratorv1.TableScanSource{TableName: "src", Segments: 3,
			Aws: &migratorv1.AwsOptions{Endpoint: ddbEndpoint}}},
		Mapping: cdcMapping("conv"), CheckExtra: true}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := migWatch(t, m3, vr.GetJob().GetId(), time.Minute)
	if v.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("verify: %s %q", v.GetState(), v.GetError())
	}
	wantVerifyClean(t, v, live)
	cancelStream(t, m3, streamID)
}

// toAttributeValues converts an item for the DynamoDB SDK.
func toAttributeValues(it ddb.Item) map[string]dtypes.AttributeValue {
	out := make(map[string]dtypes.AttributeValue, len(it))
	for name, v := range it {
		switch v := v.(type) {
		case ddb.S:
			out[name] = &dtypes.AttributeValueMemberS{Value: string(v)}
		case ddb.N:
			out[name] = &dtypes.AttributeValueMemberN{Value: v.String()}
		case ddb.SS:
			out[name] = &dtypes.AttributeValueMemberSS{Value: []string(v)}
		default:
			panic(fmt.Sprintf("toAttributeValues: %T", v))
		}
	}
	return out
}
