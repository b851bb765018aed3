package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestStoreJobs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// Ids that sort around each other's child keys ('-' < '/' < '0').
	ids := []string{"a", "a-2", "a0", "b"}
	for i, id := range ids {
		j := &migratorv1.Job{Id: id, Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_PENDING,
			CreateTime: timestamppb.New(base.Add(time.Duration(i) * time.Second))}
		if _, existed, err := s.Create(ctx, j); err != nil || existed {
			t.Fatal(existed, err)
		}
		// Children below every job, which List must skip.
		if err := s.PutRejects(ctx, id, []StoredReject{{Key: RejectKey(0, 1, ""), Reject: &migratorv1.Reject{Source: "f", Line: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, j := range got {
		order = append(order, j.GetId())
	}
	if fmt.Sprint(order) != "[b a0 a-2 a]" {
		t.Fatalf("List = %v, want newest first [b a0 a-2 a]", order)
	}

	// Create is idempotent per id and kind.
	again, existed, err := s.Create(ctx, &migratorv1.Job{Id: "a", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_RUNNING})
	if err != nil || !existed || again.GetState() != migratorv1.JobState_JOB_STATE_PENDING {
		t.Fatalf("create again: %v %v %v", again, existed, err)
	}
	if _, _, err := s.Create(ctx, &migratorv1.Job{Id: "a", Kind: migratorv1.JobKind_JOB_KIND_VERIFY}); !errors.Is(err, ErrExists) {
		t.Fatalf("create with another kind: %v", err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := s.Get(ctx, "bad/id"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("get bad id: %v", err)
	}

	// Finish once.
	if _, err := s.Finish(ctx, "a", migratorv1.JobState_JOB_STATE_CANCELLED, "", base, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Finish(ctx, "a", migratorv1.JobState_JOB_STATE_SUCCEEDED, "", base, nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("finish twice: %v", err)
	}
}

func TestStoreClaimsAndCheckpoints(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	cli := s.Client()
	grant := func() clientv3.LeaseID {
		l, err := cli.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		return l.ID
	}
	l1, l2 := grant(), grant()
	if ok, err := s.Claim(ctx, "j", "000001", "m1", l1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.Claim(ctx, "j", "000001", "m1", l1); !ok {
		t.Fatal("re-claim under the same lease")
	}
	if ok, _ := s.Claim(ctx, "j", "000001", "m2", l2); ok {
		t.Fatal("claimed twice")
	}
	if err := s.PutCheckpoint(ctx, "j", "000001", l2, Checkpoint{Lines: 5}); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("checkpoint without the claim: %v", err)
	}
	if err := s.PutCheckpoint(ctx, "j", "000001", l1, Checkpoint{Lines: 5, Items: 4}); err != nil {
		t.Fatal(err)
	}
	claims, _ := s.Claims(ctx, "j")
	if claims["000001"] != "m1" {
		t.Fatalf("claims %v", claims)
	}
	// The lease ends (the migrator died): the claim goes, another takes it.
	if _, err := cli.Revoke(ctx, l1); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Claim(ctx, "j", "000001", "m2", l2); !ok {
		t.Fatal("claim of a dead migrator not taken over")
	}
	cp, err := s.Checkpoint(ctx, "j", "000001")
	if err != nil || cp.Lines != 5 || cp.Items != 4 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	if err := s.Release(ctx, "j", "000001", l1); err != nil {
		t.Fatal(err)
	}
	if claims, _ := s.Claims(ctx, "j"); claims["000001"] != "m2" {
		t.Fatal("release under a stale lease dropped another migrator's claim")
	}
}

func TestStoreRejectPages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var rs []StoredReject
	for f := range 3 {
		for l := range 120 {
			rs = append(rs, StoredReject{Key: RejectKey(f, int64(l+1), ""), Reject: &migratorv1.Reject{Source: fmt.Sprint(f), Line: uint64(l + 1)}})
		}
	}
	if err := s.PutRejects(ctx, "j", rs); err != nil { // more than one transaction
		t.Fatal(err)
	}
	if err := s.PutRejects(ctx, "j", rs[:10]); err != nil { // stored again: overwritten, not duplicated
		t.Fatal(err)
	}
	if n, _ := s.CountRejects(ctx, "j"); n != 360 {
		t.Fatalf("count %d", n)
	}
	var got []*migratorv1.Reject
	tok := ""
	for {
		page, next, err := s.ListRejects(ctx, "j", 100, tok)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		tok = next
	}
	if len(got) != 360 || got[0].GetLine() != 1 || got[119].GetLine() != 120 || got[120].GetSource() != "1" {
		t.Fatalf("paged %d rejects, out of file and line order", len(got))
	}
}

func TestRates(t *testing.T) {
	r := NewRates(10 * time.Second)
	t0 := time.Unix(1000, 0)
	j := &migratorv1.Job{Id: "j", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_RUNNING,
		Progress: &migratorv1.Progress{ItemsTotal: 10000}}
	for i := range 5 {
		j.Progress.ItemsWritten = uint64(i * 1000)
		r.Apply(j, t0.Add(time.Duration(i)*time.Second))
	}
	if j.Progress.GetItemsPerSecond() != 1000 || j.Progress.GetEta().AsDuration() != 6*time.Second {
		t.Fatalf("rate %v eta %v, want 1000/s and 6s", j.Progress.GetItemsPerSecond(), j.Progress.GetEta().AsDuration())
	}
	if Ratio(j) != 0.4 {
		t.Fatalf("ratio %v", Ratio(j))
	}
	j.State = migratorv1.JobState_JOB_STATE_SUCCEEDED
	r.Apply(j, t0.Add(5*time.Second))
	if j.Progress.GetItemsPerSecond() != 0 || j.Progress.GetEta() != nil || Ratio(j) != 1 {
		t.Fatalf("finished job: %v", j.Progress)
	}
}
