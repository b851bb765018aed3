package coord

import (
	"context"
	"errors"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
)

// ErrLockContended means another owner held the item's lock for longer
// than Lock would wait; use errors.Is.
var ErrLockContended = errors.New("coord: item lock contended")

// Lock timing.
const (
	// LockLease is how long an item lock is held unless released. An
	// operation that outlives it may lose its isolation.
	LockLease = 5 * time.Second
	// LockMinRemaining is the least lease a holder must have left to start
	// its write; with less, abort (ItemLock.Valid reports false).
	LockMinRemaining = time.Second
)

// ItemLock is a held item lock.
type ItemLock struct {
	deadline time.Time
	unlock   func()
}

// Deadline is when the lease may end on the first node that granted it
// (measured from before the first LockKey call was sent, so it errs early).
func (l *ItemLock) Deadline() time.Time { return l.deadline }

// Valid reports whether at least LockMinRemaining of the lease is left.
func (l *ItemLock) Valid() bool { return time.Until(l.deadline) >= LockMinRemaining }

// Unlock releases the lock on every node, asynchronously; it is idempotent.
func (l *ItemLock) Unlock() { l.unlock() }

// Lock takes key's lock for a read-modify-write (see Acquire) and returns
// the function that releases it.
func (co *Coordinator) Lock(ctx context.Context, key *storagev1.Key, owner string) (unlock func(), err error) {
	l, err := co.Acquire(ctx, key, owner)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// Acquire takes key's lock on a majority of each replica set of its route.
func (co *Coordinator) Acquire(ctx context.Context, key *storagev1.Key, owner string) (*ItemLock, error) {
	return nil, ErrUnavailable // implemented in the next commit
}
