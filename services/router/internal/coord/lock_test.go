package coord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeLocks is a storeNode's lock table: what a storage node does for
// LockKey and UnlockKey (leases, waiting, tokens, renewal by the holder,
// the grace period after a restart), kept simple: waiters poll.
type nodeLocks struct {
	mu     sync.Mutex
	held   map[string]heldLock
	token  uint64
	grace  time.Time // no grant before
	grants int
	// slowOnce delays the answer to the next grant (the lock is held
	// meanwhile).
	slowOnce time.Duration
}

type heldLock struct {
	owner   string
	token   uint64
	expires time.Time
}

var fakeLocks sync.Map // *storeNode → *nodeLocks

func locksOf(n *storeNode) *nodeLocks {
	l, _ := fakeLocks.LoadOrStore(n, &nodeLocks{held: map[string]heldLock{}})
	return l.(*nodeLocks)
}

// restart forgets every lock, as a restarted node does, and refuses
// grants for grace.
func (l *nodeLocks) restart(grace time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = map[string]heldLock{}
	l.grace = time.Now().Add(grace)
}

// holders lists the owners holding unexpired locks.
func (l *nodeLocks) holders() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, h := range l.held {
		if time.Now().Before(h.expires) {
			out = append(out, h.owner)
		}
	}
	return out
}

func lockErr(c codes.Code, reason, msg string) error {
	st, _ := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "veltrix.storage"})
	return st.Err()
}

func (n *storeNode) LockKey(ctx context.Context, req *storagev1.LockKeyRequest) (*storagev1.LockKeyResponse, error) {
	if err := n.enter(ctx, "LockKey"); err != nil {
		return nil, err
	}
	l := locksOf(n)
	k := recKey(req.GetKey())
	until := time.Now().Add(time.Duration(req.GetWaitMillis()) * time.Millisecond)
	for {
		l.mu.Lock()
		now := time.Now()
		if now.Before(l.grace) {
			l.mu.Unlock()
			return nil, lockErr(codes.Unavailable, lockGraceReason, "locks: lock grace period after restart")
		}
		h, ok := l.held[k]
		if ok && now.Before(h.expires) && h.owner == req.GetOwner() { // a retry: renew
			h.expires = now.Add(time.Duration(req.GetLeaseMillis()) * time.Millisecond)
			l.held[k] = h
			l.mu.Unlock()
			return &storagev1.LockKeyResponse{Token: h.token}, nil
		}
		if !ok || !now.Before(h.expires) {
			l.token++
			l.grants++
			l.held[k] = heldLock{owner: req.GetOwner(), token: l.token, expires: now.Add(time.Duration(req.GetLeaseMillis()) * time.Millisecond)}
			tok := l.token
			slow := l.slowOnce
			l.slowOnce = 0
			l.mu.Unlock()
			time.Sleep(slow) // granted, but the answer is late
			return &storagev1.LockKeyResponse{Token: tok}, nil
		}
		l.mu.Unlock()
		if now.After(until) {
			return nil, lockErr(codes.Aborted, lockContendedReason, "locks: key locked by "+h.owner)
		}
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func (n *storeNode) UnlockKey(ctx context.Context, req *storagev1.UnlockKeyRequest) (*storagev1.UnlockKeyResponse, error) {
	if err := n.enter(ctx, "UnlockKey"); err != nil {
		return nil, err
	}
	l := locksOf(n)
	l.mu.Lock()
	defer l.mu.Unlock()
	k := recKey(req.GetKey())
	if h, ok := l.held[k]; ok && h.token == req.GetToken() {
		delete(l.held, k)
	}
	return &storagev1.UnlockKeyResponse{}, nil
}

var downErr = status.Error(codes.Unavailable, "connection refused")

// waitNoHolders waits (at most 5s) until no node of g holds a lock.
func waitNoHolders(t *testing.T, g *grid) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for id, n := range g.nodes {
			for _, o := range locksOf(n).holders() {
				left = append(left, id+": "+o)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("locks still held: %v", left)
		}
		time.Sleep(time.Millisecond)
	}
}

func holdersOn(g *grid, ids ...string) map[string]int {
	out := map[string]int{}
	for _, id := range ids {
		out[id] = len(locksOf(g.nodes[id]).holders())
	}
	return out
}

var rf3 = [][]string{{"n1", "n2", "n3"}}

// TestLockMutualExclusion: lockers on two routers, one of which believes
// n3 is down, increment a shared counter under the item's lock with a
// pause between read and write; no two are ever inside at once and no
// increment is lost.
func TestLockMutualExclusion(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
	partial := cluster.NewStatic(1, rf3, [][]*cluster.Node{{g.cn["n1"], g.cn["n2"], nil}})
	other := New(partial, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	k := key(0, "counter")
	var inside, maxInside, counter atomic.Int64
	var wg sync.WaitGroup
	const lockers, rounds = 8, 10
	for i := range lockers {
		co := g.co
		if i%2 == 1 {
			co = other
		}
		wg.Go(func() {
			for j := range rounds {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				unlock, err := co.Lock(ctx, k, fmt.Sprintf("locker-%d/%d", i, j))
				cancel()
				if err != nil {
					t.Errorf("locker %d round %d: %v", i, j, err)
					return
				}
				if n := inside.Add(1); n > maxInside.Load() {
					maxInside.Store(n)
				}
				v := counter.Load()
				time.Sleep(time.Duration((i+j)%3) * 300 * time.Microsecond)
				counter.Store(v + 1)
				inside.Add(-1)
				unlock()
				unlock() // idempotent
			}
		})
	}
	wg.Wait()
	if maxInside.Load() != 1 || counter.Load() != lockers*rounds {
		t.Fatalf("at most %d holders at once, counter %d; want 1 and %d", maxInside.Load(), counter.Load(), lockers*rounds)
	}
	waitNoHolders(t, g)
}

// TestLockOrderAndRelease: the lock is taken on the first majority in
// node-id order, Unlock releases it on every node that granted it, and
// the lease's deadline is LockLease from the first request.
func TestLockOrderAndRelease(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2", "n3"}, [][]string{{"n3", "n1", "n2"}}, Options{})
	start := time.Now()
	l, err := g.co.Acquire(t.Context(), key(0, "k"), "op")
	if err != nil {
		t.Fatal(err)
	}
	if got := holdersOn(g, "n1", "n2", "n3"); got["n1"] != 1 || got["n2"] != 1 || got["n3"] != 0 {
		t.Fatalf("holders %v, want n1 and n2", got)
	}
	if g.nodes["n3"].count("LockKey") != 0 {
		t.Fatal("n3 was asked although n1 and n2 made a majority")
	}
	if d := l.Deadline(); d.Before(start.Add(LockLease)) || d.After(time.Now().Add(LockLease)) || !l.Valid() {
		t.Fatalf("deadline %v (started %v), valid %v", d, start, l.Valid())
	}
	for _, o := range locksOf(g.nodes["n1"]).holders() {
		if !strings.HasPrefix(o, "op#") {
			t.Fatalf("owner %q, want op#<suffix>", o)
		}
	}
	l.Unlock()
	l.Unlock()
	waitNoHolders(t, g)
	if n := counterValue(g.m.ItemLocks.WithLabelValues("held")); n != 1 {
		t.Errorf("item locks held counted %v, want 1", n)
	}
	waitCalls(t, g.nodes["n1"], "UnlockKey", 1)
	time.Sleep(10 * time.Millisecond)
	if c := g.calls("UnlockKey"); c != 2 {
		t.Fatalf("%d UnlockKey calls, want 2 (once per granting node)", c)
	}
}

// TestLockNodesDown: with one of three replicas down (failing or
// unregistered) the lock is held on the other two; with two down it
// fails as unavailable and holds nothing.
func TestLockNodesDown(t *testing.T) {
	t.Run("one failing", func(t *testing.T) {
		g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
		g.nodes["n1"].set(failWith(downErr))
		unlock, err := g.co.Lock(t.Context(), key(0, "k"), "op")
		if err != nil {
			t.Fatal(err)
		}
		if got := holdersOn(g, "n2", "n3"); got["n2"] != 1 || got["n3"] != 1 {
			t.Fatalf("holders %v", got)
		}
		unlock()
		waitNoHolders(t, g)
	})
	t.Run("one unregistered", func(t *testing.T) {
		g := newGrid(t, []string{"n1", "n3"}, rf3, Options{})
		unlock, err := g.co.Lock(t.Context(), key(0, "k"), "op")
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		waitNoHolders(t, g)
	})
	t.Run("two failing", func(t *testing.T) {
		g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
		g.nodes["n1"].set(failWith(downErr))
		g.nodes["n3"].set(failWith(downErr))
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := g.co.Lock(ctx, key(0, "k"), "op")
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrLockContended) || !strings.Contains(err.Error(), "reached 1 of 2 required replicas") {
			t.Fatalf("err = %v, want unavailable with 1 of 2", err)
		}
		if g.nodes["n2"].count("LockKey") < 2 {
			t.Fatal("no second attempt within the deadline")
		}
		waitNoHolders(t, g)
	})
	t.Run("two unregistered", func(t *testing.T) {
		g := newGrid(t, []string{"n2"}, rf3, Options{})
		start := time.Now()
		_, err := g.co.Lock(t.Context(), key(0, "k"), "op")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "only 1 of 3 replicas are registered, 2 required") {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) > 100*time.Millisecond || g.calls("LockKey") != 0 {
			t.Fatalf("took %s and %d calls; a lock that cannot succeed fails at once", time.Since(start), g.calls("LockKey"))
		}
	})
}

// TestLockContended: while one owner holds the lock another waits, then
// fails with ErrLockContended and leaves nothing held; once the holder
// releases, it gets the lock.
func TestLockContended(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
	k := key(0, "k")
	first, err := g.co.Acquire(t.Context(), k, "first")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = g.co.Lock(ctx, k, "second")
	if !errors.Is(err, ErrLockContended) || !strings.Contains(err.Error(), "held by another owner") && !strings.Contains(err.Error(), "gave up waiting at n") {
		t.Fatalf("err = %v, want ErrLockContended", err)
	}
	if n := counterValue(g.m.ItemLocks.WithLabelValues("contended")); n != 1 {
		t.Errorf("contended locks counted %v, want 1", n)
	}
	for id, n := range g.nodes {
		for _, o := range locksOf(n).holders() {
			if !strings.HasPrefix(o, "first#") {
				t.Fatalf("%s: %q holds a lock after failing", id, o)
			}
		}
	}
	got := make(chan error, 1)
	go func() {
		unlock, err := g.co.Lock(t.Context(), k, "third")
		if err == nil {
			unlock()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	first.Unlock()
	if err := recv(t, got, "third lock"); err != nil {
		t.Fatal(err)
	}
	waitNoHolders(t, g)
}

// TestLockRestartedNode: a holder took the lock on n1 and n2; n2
// restarts (forgetting its locks) and n1 goes down. Without the grace
// period a second router would now get n2 and n3 while the first still
// holds the lock; n2 refuses with LOCK_GRACE, which counts as down, so
// the second locker fails as unavailable.
func TestLockRestartedNode(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
	k := key(0, "k")
	held, err := g.co.Acquire(t.Context(), k, "holder")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	locksOf(g.nodes["n2"]).restart(time.Minute)
	g.nodes["n1"].set(failWith(downErr))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = g.co.Lock(ctx, k, "second")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "n2: in its lock grace period") {
		t.Fatalf("err = %v, want unavailable naming n2's grace period", err)
	}
	if h := locksOf(g.nodes["n3"]).holders(); len(h) != 0 {
		// n3's grant was released after the failure.
		deadline := time.Now().Add(5 * time.Second)
		for len(locksOf(g.nodes["n3"]).holders()) != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if h := locksOf(g.nodes["n3"]).holders(); len(h) != 0 {
			t.Fatalf("n3 still holds %v", h)
		}
	}
}

// TestLockMove: while n3 moves to n4 the lock needs a majority of the old
// set {n1,n2,n3} and of the new set {n1,n2,n4}.
func TestLockMove(t *testing.T) {
	mv := placement.Move{Partition: 0, Add: "n4", Remove: "n3", Stage: placement.StageStreaming, Since: 5}
	doc := moveDoc(6, mv)
	for _, tc := range []struct {
		name   string
		down   []string
		holds  []string // "" want: error
		errHas string
	}{
		{"all up: n1 and n2 serve both sets", nil, []string{"n1", "n2"}, ""},
		{"n1 down: n2, n3 for the old set, n4 for the new", []string{"n1"}, []string{"n2", "n3", "n4"}, ""},
		{"n2 and n4 down: the new set has only n1", []string{"n2", "n4"}, nil, "of the new replica set [n1 n2 n4]"},
		{"n1 and n3 down: the old set has only n2", []string{"n1", "n3"}, nil, "of the old replica set [n1 n2 n3]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := []string{"n1", "n2", "n3", "n4"}
			g := &grid{nodes: map[string]*storeNode{}, cn: map[string]*cluster.Node{}}
			for _, id := range ids {
				g.nodes[id], g.cn[id] = serveNode(t, id)
			}
			for _, id := range tc.down {
				g.nodes[id].set(failWith(downErr))
			}
			co := New(cluster.NewStaticDocument(doc, g.cn), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			unlock, err := co.Lock(ctx, key(0, "k"), "op")
			if tc.errHas != "" {
				if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want unavailable containing %q", err, tc.errHas)
				}
				waitNoHolders(t, g)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := holdersOn(g, ids...)
			for _, id := range ids {
				want := 0
				for _, h := range tc.holds {
					if h == id {
						want = 1
					}
				}
				if got[id] != want {
					t.Fatalf("holders %v, want %v", got, tc.holds)
				}
			}
			unlock()
			waitNoHolders(t, g)
		})
	}
}

func TestLockValid(t *testing.T) {
	if (&ItemLock{deadline: time.Now().Add(LockMinRemaining / 2)}).Valid() {
		t.Fatal("a lease with less than LockMinRemaining left is valid")
	}
	if !(&ItemLock{deadline: time.Now().Add(2 * LockMinRemaining)}).Valid() {
		t.Fatal("a lease with time left is not valid")
	}
}

// TestWriteLocked: a write under a lock goes by the routing the lock was
// taken by. When the replicas refuse that routing as stale, it fails with
// ErrLockContended and is not retried by the new routing (a locker of the
// new replica set need not meet this lock); and it is not sent at all
// once too little of the lease is left.
func TestWriteLocked(t *testing.T) {
	nodes := map[string]*moveNode{}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		nodes[id] = &moveNode{fakeNode: &fakeNode{}}
	}
	co, c := moveCoord(moveDoc(6), nodes)
	v, err := co.View()
	if err != nil {
		t.Fatal(err)
	}
	l := &ItemLock{deadline: time.Now().Add(LockLease), view: v, release: func() {}}
	if l.Epoch() != 6 {
		t.Fatalf("epoch %d", l.Epoch())
	}
	if out, err := co.WriteLocked(t.Context(), l, []*storagev1.Record{rec(10)}, Quorum); err != nil || !out[0].Applied {
		t.Fatalf("write under the lock: %v, %v", out, err)
	}
	// Stragglers of that write end before the nodes change.
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range []string{"n1", "n2", "n3"} {
		for nodes[id].calls.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s never got the write", id)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The move to n4 completes; the router already knows it.
	cn := map[string]*cluster.Node{}
	for id, n := range nodes {
		n.refuseBelow = 7
		n.calls.Store(0)
		cn[id] = &cluster.Node{ID: id, Client: n}
	}
	done := placement.Document{Epoch: 7, Partitions: 1, RF: 3, HashFunction: placement.HashFunction, Replicas: [][]string{{"n1", "n2", "n4"}}}
	c.Publish(done, cn)
	_, err = co.WriteLocked(t.Context(), l, []*storagev1.Record{rec(11)}, Quorum)
	if !errors.Is(err, ErrLockContended) || !strings.Contains(err.Error(), "routing changed (epoch 7) since the item lock was taken by epoch 6") {
		t.Fatalf("write under a lock of an old routing: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := nodes["n4"].calls.Load(); n != 0 {
		t.Fatalf("n4 (new routing) got %d calls; a locked write must not go by a newer routing", n)
	}
	// Plain Write goes on by the new routing.
	if _, err := co.Write(t.Context(), []*storagev1.Record{rec(12)}, Quorum); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int32{"n1": 1, "n2": 1, "n3": 0, "n4": 1} { // stragglers of the plain write (stale refusals count no call)
		for nodes[id].calls.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d calls, want %d", id, nodes[id].calls.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	other := &ItemLock{deadline: time.Now().Add(LockLease), key: key(0, "other"), view: v, release: func() {}}
	if _, err := co.WriteLocked(t.Context(), other, []*storagev1.Record{rec(13)}, Quorum); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "is not the locked") {
		t.Fatalf("write of another key under a lock: %v", err)
	}
	short := &ItemLock{deadline: time.Now().Add(LockMinRemaining / 2), view: v, release: func() {}}
	before := nodes["n1"].calls.Load()
	if _, err := co.WriteLocked(t.Context(), short, []*storagev1.Record{rec(13)}, Quorum); !errors.Is(err, ErrLockContended) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("write with the lease almost over: %v", err)
	}
	if nodes["n1"].calls.Load() != before {
		t.Fatal("a write was sent with the lease almost over")
	}
}

// TestLockHungNode: a node that does not answer within its usual latency
// is skipped, so the lock is taken on the others at once; a grant it made
// but answered too late is released, not left to block the key for a
// whole lease.
func TestLockHungNode(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2", "n3"}, rf3, Options{})
	n1 := locksOf(g.nodes["n1"])
	n1.mu.Lock()
	n1.slowOnce = 2 * lockProbeMin
	n1.mu.Unlock()
	start := time.Now()
	l, err := g.co.Acquire(t.Context(), key(0, "k"), "op")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > lockProbeMin+500*time.Millisecond {
		t.Errorf("lock took %s with n1 answering late", d)
	}
	if got := holdersOn(g, "n2", "n3"); got["n2"] != 1 || got["n3"] != 1 {
		t.Fatalf("holders %v, want n2 and n3", got)
	}
	// n1's late grant is released well before its 5s lease ends.
	deadline := time.Now().Add(2 * time.Second)
	for len(n1.holders()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("n1 still holds %v", n1.holders())
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Unlock()
	waitNoHolders(t, g)
}
