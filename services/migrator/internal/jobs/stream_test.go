package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
)

func streamJob(endpoint, arn string) *migratorv1.Job {
	return &migratorv1.Job{Kind: migratorv1.JobKind_JOB_KIND_STREAM, Spec: &migratorv1.Job_StreamSpec{StreamSpec: &migratorv1.StreamSpec{
		Kind:    migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS,
		Stream:  arn,
		Mapping: testMapping(),
		Aws:     &migratorv1.AwsOptions{Endpoint: endpoint},
	}}}
}

func sitem(pk string, sk int, v string) ddb.Item {
	return ddb.Item{"pk": ddb.S(pk), "sk": ddb.NFromInt64(int64(sk)), "v": ddb.S(v)}
}

func skey(pk string, sk int) ddb.Item {
	return ddb.Item{"pk": ddb.S(pk), "sk": ddb.NFromInt64(int64(sk))}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func liveValues(f *fakeTarget) map[string]string {
	out := map[string]string{}
	for k, it := range f.live("sessions") {
		item, err := ddb.DecodeItem(it.value)
		if err != nil {
			out[k] = "undecodable"
			continue
		}
		out[k] = string(item["v"].(ddb.S))
	}
	return out
}

// TestStreamJob runs a DynamoDB Streams job against streamsfake through the
// manager: puts, updates, deletes, a TTL delete, a record that cannot be
// decoded and one the mapping rejects (both dead-lettered while the job
// goes on), then a crash of the migrator running it, a takeover by
// another from the checkpoints, and a cancel.
func TestStreamJob(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	sf, endpoint, arn := sessionsStream(t)
	at := time.Now().Add(-time.Minute)
	put := func(recs ...json.RawMessage) {
		t.Helper()
		if _, err := sf.Put(arn, "shardId-1", recs...); err != nil {
			t.Fatal(err)
		}
	}
	put(
		streamsfake.NewRecord("INSERT", skey("a", 1), sitem("a", 1, "a1"), at, false),
		streamsfake.NewRecord("MODIFY", skey("a", 1), sitem("a", 1, "a2"), at, false),
		streamsfake.NewRecord("INSERT", skey("b", 1), sitem("b", 1, "b1"), at, false),
		streamsfake.NewRecord("REMOVE", skey("b", 1), nil, at.Add(time.Second), false),
		streamsfake.NewRecord("INSERT", skey("c", 1), sitem("c", 1, "c1"), at.Add(time.Second), false),
		streamsfake.NewRecord("REMOVE", skey("c", 1), nil, at.Add(2*time.Second), true),
		// An INSERT without its image: the consumer's reject.
		streamsfake.NewRecord("INSERT", skey("d", 1), nil, at.Add(2*time.Second), false),
		// A key of the wrong type: the mapping's reject.
		streamsfake.NewRecord("INSERT", ddb.Item{"pk": ddb.S("e"), "sk": ddb.S("x")}, ddb.Item{"pk": ddb.S("e"), "sk": ddb.S("x")}, at.Add(2*time.Second), false),
	)
	a := startMigrator(t, store, fake, "a")
	job := createJob(t, store, streamJob(endpoint, arn))
	id := job.GetId()
	waitFor(t, 10*time.Second, "the first records", func() bool {
		v := liveValues(fake)
		return len(v) == 1 && v["a|1"] == "a2"
	})
	waitFor(t, 10*time.Second, "the progress", func() bool {
		j, _ := store.Get(context.Background(), id)
		p := j.GetProgress()
		return p.GetItemsWritten() == 4 && p.GetDeletes() == 2 && p.GetTtlDeletes() == 1 && p.GetRejects() == 2 && p.GetLag() != nil
	})
	j, _ := store.Get(context.Background(), id)
	if j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("state %s %q", j.GetState(), j.GetError())
	}
	rs := rejectSummary(allRejects(t, store, id))
	if len(rs) != 2 {
		t.Fatalf("rejects %v", rs)
	}
	if claims, _ := store.Claims(context.Background(), id); claims[StreamClaim] != "a" {
		t.Fatalf("claims %v", claims)
	}

	// b waits while a runs it; a crashes, its lease expires, b resumes
	// from the checkpoints.
	b := startMigrator(t, store, fake, "b")
	a.mgr.abandon()
	a.mgr = nil
	for i := range 20 {
		put(streamsfake.NewRecord("MODIFY", skey("a", 1), sitem("a", 1, fmt.Sprint("a", 3+i)), at.Add(3*time.Second), false))
	}
	waitFor(t, 20*time.Second, "b to take over and apply everything", func() bool {
		return liveValues(fake)["a|1"] == "a22"
	})
	if claims, _ := store.Claims(context.Background(), id); claims[StreamClaim] != "b" {
		t.Fatalf("claims %v", claims)
	}
	waitFor(t, 10*time.Second, "the progress after the takeover", func() bool {
		j, _ := store.Get(context.Background(), id)
		return j.GetProgress().GetItemsWritten() >= 24
	})

	if _, err := store.Finish(context.Background(), id, migratorv1.JobState_JOB_STATE_CANCELLED, "", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the run to stop", func() bool { return len(b.mgr.Running()) == 0 })
}

// sessionsStream serves a DynamoDB stream of table sessions with one shard,
// shardId-1.
func sessionsStream(t *testing.T) (sf *streamsfake.Fake, endpoint, arn string) {
	t.Helper()
	sf = streamsfake.New(streamsfake.Options{})
	endpoint = streamsfake.Serve(t, sf)
	arn = sf.CreateStream("sessions", "NEW_AND_OLD_IMAGES")
	if err := sf.CreateShard(arn, "shardId-1", ""); err != nil {
		t.Fatal(err)
	}
	return sf, endpoint, arn
}

// closedEndpoint is a loopback address nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestStreamJobHealth: a stream job whose source is missing or
// unreachable, or whose writes to Veltrix fail, shows RUNNING with its
// health (the error, the failures in a row, since when) and no lag within
// seconds, writes the job document at most about once per poll interval
// however hot the retries, and ends FAILED with a SOURCE_UNAVAILABLE
// problem once fail_after has passed without a success.
func TestStreamJobHealth(t *testing.T) {
	sf, endpoint, arn := sessionsStream(t)
	if _, err := sf.Put(arn, "shardId-1", streamsfake.NewRecord("INSERT", skey("a", 1), sitem("a", 1, "a1"), time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	missing := "arn:aws:dynamodb:us-east-1:123456789012:table/nope/stream/x"
	for _, tc := range []struct {
		name       string
		endpoint   string
		stream     string
		failWrites bool
		targetDown bool
		wantErr    string // in last_error and the job's error
		wantSource string // the problem's source
	}{
		{"stream not found", endpoint, missing, false, false, "ResourceNotFoundException", missing},
		{"table without a stream", endpoint, "nope", false, false, "has no stream", "table nope"},
		{"endpoint unreachable", closedEndpoint(t), arn, false, false, "connection refused", arn},
		{"Veltrix writes fail", endpoint, arn, true, false, "quorum not reached", arn},
		{"Veltrix down at the start", endpoint, arn, false, true, "router unreachable", "Veltrix table sessions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t)
			fake := newFake()
			if tc.failWrites {
				fake.failFor.Store(1 << 40)
			}
			var target Target = fake
			if tc.targetDown {
				target = downTarget{fake}
			}
			m := startMigrator(t, store, target, "a")
			job := streamJob(tc.endpoint, tc.stream)
			job.GetStreamSpec().FailAfter = durationpb.New(3 * time.Second)
			id := createJob(t, store, job).GetId()
			started := time.Now()

			var j *migratorv1.Job
			waitFor(t, 3*time.Second, "the health to show the failure", func() bool {
				j, _ = store.Get(context.Background(), id)
				return j.GetHealth().GetConsecutiveFailures() >= 2
			})
			if j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING {
				t.Fatalf("state %s %q, want RUNNING while within fail_after", j.GetState(), j.GetError())
			}
			h := j.GetHealth()
			if !strings.Contains(h.GetLastError(), tc.wantErr) || h.GetFailingSince() == nil || h.GetLastErrorTime() == nil {
				t.Fatalf("health %v: want the error %q, failing_since and last_error_time", h, tc.wantErr)
			}
			if l := j.GetProgress().GetLag(); l != nil {
				t.Fatalf("lag %s, want unset (nothing read)", l.AsDuration())
			}

			got := waitJob(t, store, id, 15*time.Second)
			elapsed := time.Since(started)
			if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), tc.wantErr) {
				t.Fatalf("%s %q: want FAILED with %q", got.GetState(), got.GetError(), tc.wantErr)
			}
			if elapsed < 3*time.Second {
				t.Fatalf("failed after %s, before fail_after", elapsed)
			}
			ps := got.GetProblems()
			if len(ps) != 1 || ps[0].GetKind() != migratorv1.ProblemKind_PROBLEM_KIND_SOURCE_UNAVAILABLE ||
				!strings.Contains(ps[0].GetSource(), tc.wantSource) || !strings.Contains(ps[0].GetDetail(), tc.wantErr) {
				t.Fatalf("problems %v: want one SOURCE_UNAVAILABLE naming %s", ps, tc.wantSource)
			}
			if got.GetHealth().GetConsecutiveFailures() < 2 {
				t.Fatalf("final health %v", got.GetHealth())
			}
			// The retries are hot (backoff at most 20ms); the document is
			// written once per 50ms poll at most.
			resp, err := store.Client().Get(context.Background(), store.jobKey(id))
			if err != nil {
				t.Fatal(err)
			}
			if v, limit := resp.Kvs[0].Version, int64(elapsed/(50*time.Millisecond))+10; v > limit {
				t.Errorf("job document written %d times in %s, want at most %d", v, elapsed, limit)
			}
			waitFor(t, 5*time.Second, "the run to stop", func() bool { return len(m.mgr.Running()) == 0 })
		})
	}
}

// downTarget is a Veltrix whose routers do not answer.
type downTarget struct{ *fakeTarget }

func (downTarget) DescribeTable(context.Context, string) (*kvv1.Table, error) {
	return nil, status.Error(codes.Unavailable, "router unreachable")
}

// TestStreamJobRecovers: a source that fails for a while and then
// answers shows the failure in the health, then clears it, reads, and
// reports a lag.
func TestStreamJobRecovers(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	sf, endpoint, arn := sessionsStream(t)
	if _, err := sf.Put(arn, "shardId-1", streamsfake.NewRecord("INSERT", skey("a", 1), sitem("a", 1, "a1"), time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	faults := make([]string, 150)
	for i := range faults {
		faults[i] = "InternalServerError"
	}
	sf.InjectError("GetShardIterator", faults...)
	startMigrator(t, store, fake, "a")
	id := createJob(t, store, streamJob(endpoint, arn)).GetId()
	waitFor(t, 5*time.Second, "the health to show the failure", func() bool {
		j, _ := store.Get(context.Background(), id)
		return j.GetHealth().GetConsecutiveFailures() > 0 && j.GetProgress().GetLag() == nil
	})
	waitFor(t, 20*time.Second, "the health to clear and the record to be applied", func() bool {
		j, _ := store.Get(context.Background(), id)
		h := j.GetHealth()
		return h.GetConsecutiveFailures() == 0 && h.GetFailingSince() == nil && h.GetLastError() == "" &&
			j.GetProgress().GetLag() != nil && liveValues(fake)["a|1"] == "a1"
	})
	if j, _ := store.Get(context.Background(), id); j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("state %s %q", j.GetState(), j.GetError())
	}
}

// TestStreamClientOneAttempt: the stream clients make one attempt per
// call whatever retryer the AWS configuration carries, so the consumer's
// retry is the only one (and each failure is reported once).
func TestStreamClientOneAttempt(t *testing.T) {
	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	arn := sf.CreateStream("sessions", "NEW_AND_OLD_IMAGES")
	e := &Env{AWSConfig: func(context.Context, *migratorv1.AwsOptions) (aws.Config, error) {
		return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", ""),
			Retryer: func() aws.Retryer { return retry.NewStandard() }}, nil
	}}
	cli, err := e.streamsClient(context.Background(), &migratorv1.AwsOptions{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	sf.InjectError("DescribeStream", "InternalServerError", "InternalServerError", "InternalServerError")
	if _, err := cli.DescribeStream(context.Background(), &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)}); err == nil {
		t.Fatal("DescribeStream succeeded through an injected error")
	}
	if n := sf.Calls("DescribeStream"); n != 1 {
		t.Fatalf("%d DescribeStream calls for one failed call, want 1 (the SDK must not retry)", n)
	}
}
