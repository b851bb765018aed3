package server_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/server"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorInfo returns err's ErrorInfo, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func wantReason(t *testing.T, err error, code codes.Code, reason string) *errdetails.ErrorInfo {
	t.Helper()
	info := errorInfo(err)
	if status.Code(err) != code || info == nil || info.GetReason() != reason || info.GetDomain() != "veltrix.storage" {
		t.Fatalf("got %v (info %v), want %s with reason %s", err, info, code, reason)
	}
	return info
}

// TestLockKey: a node grants a key's lock to one owner at a time, makes
// the next wait and refuses it with LOCK_CONTENDED when the wait runs out,
// releases by token only, and refuses keys of partitions it does not hold
// and bad leases.
func TestLockKey(t *testing.T) {
	env := setup(t) // a node started again after a clean stop: no grace
	ctx := context.Background()
	pk := ownedPK(t, 7, "item")
	k := key(7, pk, "s")
	lock := func(owner string, lease, wait uint32) (*storagev1.LockKeyResponse, error) {
		return env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: owner, LeaseMillis: lease, WaitMillis: wait, PlacementEpoch: 1})
	}
	a, err := lock("router-a/1", 5000, 0)
	if err != nil || a.GetToken() == 0 {
		t.Fatalf("first lock: %v, %v", a, err)
	}
	_, err = lock("router-b/1", 5000, 20)
	info := wantReason(t, err, codes.Aborted, "LOCK_CONTENDED")
	if info.GetMetadata()["owner"] != "router-a/1" {
		t.Fatalf("metadata = %v, want the holder", info.GetMetadata())
	}
	// A waiter gets the lock as soon as the holder releases it.
	got := make(chan error, 1)
	var b *storagev1.LockKeyResponse
	go func() {
		var err error
		b, err = lock("router-b/2", 5000, 5000)
		got <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, env.srv, "veltrix_storage_lock_waiters") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("waiter never queued")
		}
		time.Sleep(time.Millisecond)
	}
	// A wrong token releases nothing and is no error.
	if _, err := env.c.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: k, Token: a.GetToken() + 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		t.Fatalf("waiter granted after a wrong-token unlock: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := env.c.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: k, Token: a.GetToken()}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil || b.GetToken() == 0 || b.GetToken() == a.GetToken() {
		t.Fatalf("waiter: %v, %v", b, err)
	}
	// Releasing again (the lock passed on) is no error either.
	if _, err := env.c.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: k, Token: a.GetToken()}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"veltrix_storage_locks_granted_total":   2,
		"veltrix_storage_lock_waits_total":      2,
		"veltrix_storage_locks_contended_total": 1,
		"veltrix_storage_locks_held":            1,
	} {
		if got := metric(t, env.srv, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	other := ""
	for i := 0; other == ""; i++ {
		if pk := "o" + strconv.Itoa(i); placement.PartitionOf(7, []byte(pk), partitions) == partitions-1 {
			other = pk
		}
	}
	for _, tc := range []struct {
		name string
		req  *storagev1.LockKeyRequest
		code codes.Code
		want string
	}{
		{"not held", &storagev1.LockKeyRequest{Key: key(7, other, ""), LeaseMillis: 100}, codes.FailedPrecondition, "does not hold partition 15"},
		{"wrong partition", &storagev1.LockKeyRequest{Key: &storagev1.Key{Partition: (k.Partition + 1) % (partitions - 1), TableId: 7, PartitionKey: []byte(pk)}, LeaseMillis: 100}, codes.InvalidArgument, "given for a key of partition"},
		{"no key", &storagev1.LockKeyRequest{LeaseMillis: 100}, codes.InvalidArgument, "key is missing"},
		{"no lease", &storagev1.LockKeyRequest{Key: k}, codes.InvalidArgument, "lease_millis 0: want 1 to 10000"},
		{"long lease", &storagev1.LockKeyRequest{Key: k, LeaseMillis: 10001}, codes.InvalidArgument, "lease_millis 10001"},
		{"long wait", &storagev1.LockKeyRequest{Key: k, LeaseMillis: 100, WaitMillis: 60000}, codes.InvalidArgument, "wait_millis 60000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.c.LockKey(ctx, tc.req)
			wantCode(t, err, tc.code, tc.want)
		})
	}
	_, err = env.c.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: k})
	wantCode(t, err, codes.InvalidArgument, "token: 0")
}

// TestLockGraceAfterRestart: a node that stops while it holds a lock
// grants no lock after it restarts until that lease has run out, so the
// lock is never held twice; the refusal is UNAVAILABLE with LOCK_GRACE and
// says how long is left.
func TestLockGraceAfterRestart(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	k := key(7, ownedPK(t, 7, "item"), "")
	const lease = 4000
	if _, err := env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "a", LeaseMillis: lease}); err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	if err := env.srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(ctx, env.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cc, err := grpcx.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := storagev1.NewStorageServiceClient(cc)
	_, err = c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "b", LeaseMillis: lease})
	if time.Since(granted) < lease*time.Millisecond {
		info := wantReason(t, err, codes.Unavailable, "LOCK_GRACE")
		left, perr := strconv.Atoi(info.GetMetadata()["retry_after_millis"])
		if perr != nil || left <= 0 || left > lease+1 {
			t.Fatalf("retry_after_millis = %q, want 1 to %d", info.GetMetadata()["retry_after_millis"], lease+1)
		}
		// Another key is refused too: the node cannot know which it held.
		_, err = c.LockKey(ctx, &storagev1.LockKeyRequest{Key: key(7, ownedPK(t, 7, "other"), "x"), Owner: "b", LeaseMillis: lease})
		wantReason(t, err, codes.Unavailable, "LOCK_GRACE")
		if got := metric(t, srv, "veltrix_storage_lock_grace_refusals_total"); got != 2 {
			t.Fatalf("grace refusals = %v, want 2", got)
		}
	} else {
		t.Fatalf("the restart took %s, longer than the lease: the test proves nothing", time.Since(granted))
	}
	time.Sleep(time.Until(granted.Add(lease * time.Millisecond)))
	if _, err := c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "b", LeaseMillis: lease}); err != nil {
		t.Fatalf("after the old lease ran out: %v", err)
	}
}

// TestLockKeyFencing: LockKey is fenced by the placement epoch like Apply
// (a lock taken by an old routing must not count once the partition's
// replicas changed), and a node backfilling in place, a write target,
// grants locks.
func TestLockKeyFencing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	k := key(7, ownedPK(t, 7, "fence"), "")
	p := k.Partition
	doc, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { d.MarkChanged(p, d.Epoch); return nil })
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "old", LeaseMillis: 1000, PlacementEpoch: doc.Epoch - 1})
	wantReason(t, err, codes.FailedPrecondition, "STALE_PLACEMENT_EPOCH")
	resp, err := env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "new", LeaseMillis: 1000, PlacementEpoch: doc.Epoch})
	if err != nil {
		t.Fatalf("lock at the current epoch: %v", err)
	}
	// A request queued behind it when the routing changes is refused when
	// its turn comes, and the lock stays free.
	queued := make(chan error, 1)
	go func() {
		_, err := env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "queued", LeaseMillis: 1000, WaitMillis: 5000, PlacementEpoch: doc.Epoch})
		queued <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, env.srv, "veltrix_storage_lock_waiters") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	changed, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { d.MarkChanged(p, d.Epoch); return nil })
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); env.srv.WatcherEpoch() < changed.Epoch; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node never saw the new epoch")
		}
	}
	if _, err := env.c.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: k, Token: resp.GetToken()}); err != nil {
		t.Fatal(err)
	}
	wantReason(t, <-queued, codes.FailedPrecondition, "STALE_PLACEMENT_EPOCH")
	if got := metric(t, env.srv, "veltrix_storage_locks_held"); got != 0 {
		t.Fatalf("%v locks held after the stale grant was refused", got)
	}
	doc = changed
	doc, err = env.store.UpdatePlacement(ctx, func(d *placement.Document) error {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "n1", Remove: "n1", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.LockKey(ctx, &storagev1.LockKeyRequest{Key: k, Owner: "backfill", LeaseMillis: 1000, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatalf("lock on a node backfilling in place: %v", err)
	}
}
