package coord

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrLockContended means another owner held the item's lock for longer
// than Lock would wait; use errors.Is.
var ErrLockContended = errors.New("coord: item lock contended")

// Lock timing.
const (
	// LockLease is how long an item lock is held unless released. An
	// operation that outlives it may lose its isolation: check
	// ItemLock.Valid before writing.
	LockLease = 5 * time.Second
	// LockMinRemaining is the least lease a holder must have left to start
	// its write; with less, abort (ItemLock.Valid reports false).
	LockMinRemaining = time.Second
	// lockNodeWait bounds how long one node queues a lock request while
	// another owner holds the lock.
	lockNodeWait = 2 * time.Second
	// lockTimeout bounds Lock when ctx has no earlier deadline.
	lockTimeout = 3 * time.Second
	// lockProbeMin and lockProbeMax clamp how long a node may take to
	// answer a lock request that does not wait (its hedge delay).
	lockProbeMin = 250 * time.Millisecond
	lockProbeMax = time.Second
	// unlockTimeout bounds the background UnlockKey calls.
	unlockTimeout = 2 * time.Second
)

// The ErrorInfo reasons of storage nodes' lock refusals.
const (
	lockContendedReason = "LOCK_CONTENDED"
	lockGraceReason     = "LOCK_GRACE"
)

// ItemLock is a held item lock: a lease on a majority of each replica set
// of the item's route.
type ItemLock struct {
	deadline time.Time
	key      *storagev1.Key
	view     *cluster.View // the routing the lock was taken by
	once     sync.Once
	release  func()
}

// Deadline is when the lease may end on the first node that granted it
// (measured from before that node was asked, so it errs early).
func (l *ItemLock) Deadline() time.Time { return l.deadline }

// Valid reports whether at least LockMinRemaining of the lease is left: a
// holder checks it before it writes, and aborts when it is false.
func (l *ItemLock) Valid() bool { return time.Until(l.deadline) >= LockMinRemaining }

// Unlock releases the lock on every node that granted it, in the
// background (bounded by 2s; a node not reached lets the lease expire).
// It is idempotent.
func (l *ItemLock) Unlock() { l.once.Do(l.release) }

// Epoch is the placement epoch the lock was taken by.
func (l *ItemLock) Epoch() uint64 { return l.view.Epoch }

// WriteLocked is Write for the holder of l, of records of the locked key
// only (anything else is ErrInvalidArgument): it writes by the routing the
// lock was taken by and never again by a newer one. When a replica refuses
// that routing as stale (the partition's replicas changed while the lock
// was held), the lock may no longer exclude a locker of the new replica
// set, so the write fails with ErrLockContended (retry from the start:
// lock, read, write) instead of going on by the new routing as Write
// would. It also fails with ErrLockContended when less than
// LockMinRemaining of the lease is left.
func (co *Coordinator) WriteLocked(ctx context.Context, l *ItemLock, recs []*storagev1.Record, level Level) ([]Outcome, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("%w: the item lock's lease has %s left, less than the %s a write needs; nothing was written",
			ErrLockContended, max(time.Until(l.deadline), 0).Round(time.Millisecond), LockMinRemaining)
	}
	for i, r := range recs {
		if k := r.GetKey(); l.key != nil && (k.GetPartition() != l.key.GetPartition() || k.GetTableId() != l.key.GetTableId() ||
			!bytes.Equal(k.GetPartitionKey(), l.key.GetPartitionKey()) || !bytes.Equal(k.GetSortKey(), l.key.GetSortKey())) {
			return nil, fmt.Errorf("%w: records[%d]: %s is not the locked %s", ErrInvalidArgument, i, keyString(k), keyString(l.key))
		}
	}
	out, err := co.write(ctx, l.view, recs, level)
	var se *staleError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("%w: the partition's routing changed (epoch %d) since the item lock was taken by epoch %d, so the write was not retried by the new routing: %w",
			ErrLockContended, se.epoch, l.view.Epoch, err)
	}
	return out, err
}

// Lock takes key's lock for a read-modify-write (see Acquire) and returns
// the function that releases it (idempotent, asynchronous).
func (co *Coordinator) Lock(ctx context.Context, key *storagev1.Key, owner string) (unlock func(), err error) {
	l, err := co.Acquire(ctx, key, owner)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// Acquire takes key's lock (Key.Partition set) for a read-modify-write:
// a lease of LockLease on a majority of each replica set of the key's
// route (the old and the new set while a replica moves, as Write counts
// them). Two holders would need two majorities of one set, which always
// share a node, so whatever each router believes about which nodes are
// up, at most one holds the lock.
//
// Nodes are asked one at a time in node-id order, so two lockers meet at
// the same first node and queue there (FIFO) instead of splitting the
// sets between them. Each node is asked first without waiting, with a
// timeout of its usual latency (250ms to 1s), so a node that hangs costs
// little; when another owner holds the lock it is asked again to queue the
// request for up to 2s. Nodes not registered are skipped; a node
// that fails, is unreachable or is in its post-restart grace period is
// skipped too. Acquire stops once every set has its majority. When a set
// can no longer reach one it releases what it holds and tries again after
// a jittered pause, until ctx's deadline or 3s; then it fails with
// ErrLockContended if another owner held the lock on some node, else
// ErrUnavailable. It fails at once with ErrUnavailable when a set has
// fewer registered members than a majority.
//
// owner names the holder in the nodes' logs and errors; Acquire appends a
// random suffix, so each attempt is its own owner.
func (co *Coordinator) Acquire(ctx context.Context, key *storagev1.Key, owner string) (*ItemLock, error) {
	start := time.Now()
	l, err := co.acquire(ctx, key, owner)
	m := co.o.Metrics
	switch {
	case err == nil:
		m.ItemLocks.WithLabelValues("held").Inc()
		m.LockSeconds.Observe(time.Since(start).Seconds())
	case errors.Is(err, ErrLockContended):
		m.ItemLocks.WithLabelValues("contended").Inc()
	case errors.Is(err, ErrUnavailable):
		m.ItemLocks.WithLabelValues("unavailable").Inc()
	default:
		m.ItemLocks.WithLabelValues("error").Inc()
	}
	return l, err
}

func (co *Coordinator) acquire(ctx context.Context, key *storagev1.Key, owner string) (*ItemLock, error) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > lockTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lockTimeout)
		defer cancel()
	}
	v, err := co.View()
	if err != nil {
		return nil, err
	}
	pause := 5 * time.Millisecond
	var last error // the last pass that asked a node
	for {
		// A new owner for each pass: a late release of an earlier pass's
		// grant must not release this one's (a node renews, with the same
		// token, a lock its holder asks for again).
		var suffix [6]byte
		_, _ = rand.Read(suffix[:])
		l, err := co.tryLock(ctx, v, key, owner+"#"+hex.EncodeToString(suffix[:]))
		if err == nil {
			return l, nil
		}
		// A pass cut short by the deadline knows less than the last whole
		// one: report that one.
		var cs *cutShortError
		switch {
		case errors.Is(err, errLockNoTime) && last == nil:
			return nil, fmt.Errorf("%w: lock of %s: %w", ErrLockContended, keyString(key), context.DeadlineExceeded)
		case errors.Is(err, errLockNoTime):
			return nil, last
		case errors.As(err, &cs) && last == nil:
			return nil, cs.err
		case errors.As(err, &cs):
			return nil, last
		}
		last = err
		if v2, ok := co.retryView(ctx, err); ok {
			v = v2
			continue
		}
		var fe *fatalLockError
		if errors.As(err, &fe) {
			return nil, fe.err
		}
		// Jittered pause, then again (with the router's newest view).
		d := pause/2 + mrand.N(pause)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d+time.Millisecond {
			return nil, err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		pause = min(2*pause, 200*time.Millisecond)
		if nv, verr := co.View(); verr == nil {
			v = nv
		}
	}
}

// errLockNoTime ends a pass that had no time left to ask any node.
var errLockNoTime = errors.New("coord: no time left to lock")

// cutShortError is a pass's failure when the deadline stopped it before
// it asked every node it could.
type cutShortError struct{ err error }

func (e *cutShortError) Error() string { return e.err.Error() }
func (e *cutShortError) Unwrap() error { return e.err }

// fatalLockError is a lock failure that trying again cannot cure.
type fatalLockError struct{ err error }

func (e *fatalLockError) Error() string { return e.err.Error() }
func (e *fatalLockError) Unwrap() error { return e.err }

// lockTarget is one node to lock and the sets its grant counts towards.
type lockTarget struct {
	id   string
	node *cluster.Node
	sets uint8
}

type grant struct {
	node  *cluster.Node
	token uint64
}

// tryLock makes one pass over the route's nodes under view v.
func (co *Coordinator) tryLock(ctx context.Context, v *cluster.View, key *storagev1.Key, owner string) (*ItemLock, error) {
	rt := v.Route(key.GetPartition())
	if rt == nil {
		return nil, &fatalLockError{fmt.Errorf("%w: lock of %s: partition out of range (%d partitions)", ErrInvalidArgument, keyString(key), v.Partitions)}
	}
	var need, left, got [cluster.MaxSets]int
	for k, set := range rt.Sets {
		need[k] = Need(Quorum, set.Size)
	}
	targets := make([]lockTarget, 0, len(rt.WriteIDs))
	for i, n := range rt.WriteNodes {
		if n == nil {
			continue // not registered: known down
		}
		targets = append(targets, lockTarget{id: rt.WriteIDs[i], node: n, sets: rt.WriteSets[i]})
		for k := range rt.Sets {
			if rt.WriteSets[i]&(1<<k) != 0 {
				left[k]++
			}
		}
	}
	for k, set := range rt.Sets {
		if left[k] < need[k] {
			return nil, &fatalLockError{fmt.Errorf("%w: lock of %s: only %d of %d replicas%s are registered, %d required: %s",
				ErrUnavailable, keyString(key), left[k], set.Size, setName(rt, k), need[k],
				strings.Join(downReplicas(rt.WriteIDs, rt.WriteNodes), "; "))}
		}
	}
	slices.SortFunc(targets, func(a, b lockTarget) int { return strings.Compare(a.id, b.id) })

	var (
		held      []grant
		failed    []string
		contended bool
		stale     uint64
		deadline  time.Time
		cut       bool // the pass ran out of time before asking every node
		ambiguous []*cluster.Node
	)
	defer func() { co.releaseOwner(key, owner, v.Epoch, ambiguous) }()
	satisfied := func() bool {
		for k := range rt.Sets {
			if got[k] < need[k] {
				return false
			}
		}
		return true
	}
	for _, tg := range targets {
		if satisfied() {
			break
		}
		useful, hopeless := false, false
		for k := range rt.Sets {
			if got[k]+left[k] < need[k] {
				hopeless = true
			}
			if tg.sets&(1<<k) != 0 && got[k] < need[k] {
				useful = true
			}
		}
		if hopeless {
			break
		}
		if !useful {
			continue // its sets are already locked
		}
		wait := lockNodeWait
		if dl, ok := ctx.Deadline(); ok {
			// Leave the node time to answer "contended" before ctx ends.
			left := time.Until(dl)
			wait = min(wait, left-max(20*time.Millisecond, left/5))
		}
		if wait < 0 {
			if len(held) == 0 && len(failed) == 0 {
				return nil, errLockNoTime
			}
			cut = true
			break
		}
		sent := time.Now()
		ask := func(wait, timeout time.Duration) (*storagev1.LockKeyResponse, error) {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return tg.node.Client.LockKey(cctx, &storagev1.LockKeyRequest{
				Key: key, Owner: owner, LeaseMillis: uint32(LockLease / time.Millisecond),
				WaitMillis: uint32(wait / time.Millisecond), PlacementEpoch: v.Epoch,
			})
		}
		// First without waiting, bounded by the node's usual latency: a
		// node that hangs is skipped after that, not after the whole wait.
		// Only when another owner holds the lock does it queue there.
		resp, err := ask(0, tg.node.HedgeDelay(lockProbeMin, lockProbeMax))
		queued := false
		if lockReason(err) == lockContendedReason && wait > 0 {
			queued = true
			resp, err = ask(wait, wait+time.Second)
		}
		for k := range rt.Sets {
			if tg.sets&(1<<k) != 0 {
				left[k]--
			}
		}
		if err == nil {
			tg.node.ObserveLatency(time.Since(sent))
			if len(held) == 0 {
				deadline = sent.Add(LockLease)
			}
			held = append(held, grant{node: tg.node, token: resp.GetToken()})
			for k := range rt.Sets {
				if tg.sets&(1<<k) != 0 {
					got[k]++
				}
			}
			continue
		}
		if ierr := inputErr(err); ierr != nil {
			co.unlockAll(key, held)
			return nil, &fatalLockError{ierr}
		}
		if e, ok := staleEpoch(err, v.Epoch); ok {
			stale = max(stale, e)
			co.replicaErr(tg.node, err)
			break // the whole view is out of date
		}
		switch lockReason(err) {
		case lockContendedReason:
			contended = true
			failed = append(failed, tg.id+": held by another owner")
		case lockGraceReason:
			failed = append(failed, tg.id+": in its lock grace period after a restart")
		default:
			if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Canceled {
				ambiguous = append(ambiguous, tg.node) // it may have granted it
			}
			if cerr := ctx.Err(); cerr != nil {
				co.unlockAll(key, held)
				if errors.Is(cerr, context.DeadlineExceeded) && !queued {
					return nil, &cutShortError{fmt.Errorf("%w: lock of %s: %w", ErrUnavailable, keyString(key), cerr)}
				}
				if errors.Is(cerr, context.DeadlineExceeded) {
					// Most likely queued behind another owner to the end.
					return nil, &fatalLockError{fmt.Errorf("%w: lock of %s: gave up waiting at %s: %w", ErrLockContended, keyString(key), tg.id, cerr)}
				}
				return nil, &fatalLockError{fmt.Errorf("lock of %s: %w", keyString(key), cerr)}
			}
			failed = append(failed, co.replicaErr(tg.node, err))
		}
	}
	if satisfied() {
		co.o.Logger.Debug("item lock held", "key", keyString(key), "owner", owner, "nodes", len(held))
		return &ItemLock{deadline: deadline, key: key, view: v, release: func() { co.unlockAll(key, held) }}, nil
	}
	co.unlockAll(key, held)
	k := 0
	for i := range rt.Sets {
		if got[i] < need[i] {
			k = i
			break
		}
	}
	what := ErrUnavailable
	if contended {
		what = ErrLockContended
	}
	err := fmt.Errorf("%w: lock of %s reached %d of %d required replicas%s: %s",
		what, keyString(key), got[k], need[k], setName(rt, k), strings.Join(failed, "; "))
	if cut {
		return nil, &cutShortError{err}
	}
	return nil, markStale(err, stale)
}

// lockReason is the ErrorInfo reason of a storage node's lock refusal.
// ABORTED is contention whatever its details say: a node answers LockKey
// with it for nothing else.
func lockReason(err error) string {
	st, ok := status.FromError(err)
	if !ok || (st.Code() != codes.Aborted && st.Code() != codes.Unavailable) {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			return info.GetReason()
		}
	}
	if st.Code() == codes.Aborted {
		return lockContendedReason
	}
	return ""
}

// releaseOwner releases, in the background, a lock that nodes whose
// LockKey call timed out may have granted to owner: the request again
// from the same owner renews the grant, if there is one, to a 1ms lease
// and returns its token, which is then released. A node that never
// granted it grants a 1ms lock and releases it; one where another owner
// holds it refuses at once. Otherwise such a grant would block the key
// for a whole lease.
func (co *Coordinator) releaseOwner(key *storagev1.Key, owner string, epoch uint64, nodes []*cluster.Node) {
	for _, n := range nodes {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			resp, err := n.Client.LockKey(ctx, &storagev1.LockKeyRequest{Key: key, Owner: owner, LeaseMillis: 1, PlacementEpoch: epoch})
			if err != nil {
				return
			}
			_, _ = n.Client.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: key, Token: resp.GetToken()})
		}()
	}
}

// unlockAll releases key's grants in the background.
func (co *Coordinator) unlockAll(key *storagev1.Key, held []grant) {
	for _, g := range held {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			if _, err := g.node.Client.UnlockKey(ctx, &storagev1.UnlockKeyRequest{Key: key, Token: g.token}); err != nil {
				co.o.Logger.Debug("unlock failed; the lease expires on its own", "node", g.node.ID, "key", keyString(key), "err", err)
				co.replicaErr(g.node, err)
			}
		}()
	}
}
