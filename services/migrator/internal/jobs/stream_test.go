package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

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
	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	arn := sf.CreateStream("sessions", "NEW_AND_OLD_IMAGES")
	if err := sf.CreateShard(arn, "shardId-1", ""); err != nil {
		t.Fatal(err)
	}
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

// TestStreamJobFailures: a stream that does not exist fails the job with
// a message naming it.
func TestStreamJobFailures(t *testing.T) {
	store := newStore(t)
	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	startMigrator(t, store, newFake(), "a")
	job := createJob(t, store, streamJob(endpoint, "arn:aws:dynamodb:us-east-1:123456789012:table/nope/stream/x"))
	got := waitJob(t, store, job.GetId(), 20*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), "nope") {
		t.Fatalf("%s %q", got.GetState(), got.GetError())
	}
}
