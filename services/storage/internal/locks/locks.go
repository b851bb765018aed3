// Package locks is a storage node's table of item locks: the per-key
// leases a router takes on a majority of an item's replicas while it
// reads, evaluates and writes the item (a DynamoDB read-modify-write; see
// docs/design.md, "Write isolation").
//
// A lock is a lease: it ends when its holder releases it or when the lease
// runs out, whichever comes first, so a crashed router never blocks a key
// for longer than one lease. Requests for a held lock queue in FIFO order
// and the lock passes straight to the first in line when it is released or
// expires, so every waiter is served in arrival order and none starves.
// An entry lives only while the lock is held or awaited: memory is bounded
// by the locks in use, not by the keys ever locked.
//
// The table lives in memory, so a node that restarts forgets the locks it
// granted. It must then grant no lock until every lease it may have
// granted has run out (Options.GraceUntil), or one key's lock could be
// held twice: by the holder from before the crash and by a new one. The
// node keeps that bound durable with a horizon (Options.Persist): before a
// grant could outlive the persisted horizon the table moves the horizon
// further, so after a restart the node waits at most until the stored
// horizon, and not at all when it has passed. This is the lock-delay of
// Chubby (Burrows, "The Chubby lock service for loosely-coupled
// distributed systems", OSDI 2006) made exact by remembering the leases.
package locks

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MaxLease is the longest lease a node grants.
const MaxLease = 10 * time.Second

// Sentinel errors; use errors.Is.
var (
	// ErrContended means another owner held the lock for the whole wait.
	ErrContended = errors.New("locks: key locked by another owner")
	// ErrGrace means the node restarted recently and grants no lock until
	// every lease it may have granted before has expired.
	ErrGrace = errors.New("locks: lock grace period after restart")
	// ErrInvalid means the request itself is bad (lease out of range).
	ErrInvalid = errors.New("locks: invalid request")
	// ErrClosed means the node is shutting down.
	ErrClosed = errors.New("locks: lock table closed")
)

// Key is a locked item: table id, partition key and sort key.
type Key struct {
	TableID      uint64
	PartitionKey string
	SortKey      string
}

func (k Key) String() string {
	return fmt.Sprintf("table %d, partition key %q, sort key %q", k.TableID, trunc(k.PartitionKey), trunc(k.SortKey))
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ContendedError is ErrContended with the holder that kept the lock.
type ContendedError struct {
	Key   Key
	Owner string // the holder when the wait ended
	Wait  time.Duration
}

func (e *ContendedError) Error() string {
	return fmt.Sprintf("%v: %s is held by %q; waited %s", ErrContended, e.Key, e.Owner, e.Wait)
}

func (e *ContendedError) Unwrap() error { return ErrContended }

// GraceError is ErrGrace with when the grace period ends.
type GraceError struct {
	Until time.Time
	Left  time.Duration
}

func (e *GraceError) Error() string {
	return fmt.Sprintf("%v: no lock is granted for %s more, until every lease granted before the restart has expired", ErrGrace, e.Left.Round(time.Millisecond))
}

func (e *GraceError) Unwrap() error { return ErrGrace }

// Options configure a Table.
type Options struct {
	// MaxLease is the longest lease granted. Default: MaxLease.
	MaxLease time.Duration
	// GraceUntil is when the table starts granting locks (see the package
	// doc). Default: the zero time, no grace.
	GraceUntil time.Time
	// Persist stores the horizon: no lock granted from now on outlives
	// until. The table calls it, one call at a time, before a grant could
	// outlive the last horizon it stored; a failed Persist fails the
	// request. Default: nil, no horizon is kept.
	Persist func(until time.Time) error
	// HorizonStep is how far past what a grant needs the horizon is moved,
	// so that Persist runs once per step at most. Default: 30s.
	HorizonStep time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Stats are the table's counters.
type Stats struct {
	// Granted counts locks granted (at once or after a wait).
	Granted uint64
	// Waits counts requests that found the lock held and queued.
	Waits uint64
	// Contended counts requests refused after waiting.
	Contended uint64
	// Expired counts leases that ran out before their holder released them.
	Expired uint64
	// Grace counts requests refused during the grace period.
	Grace uint64
	// Held is the number of locks held now.
	Held int
	// Waiting is the number of requests queued now.
	Waiting int
}

// Table is a node's lock table. It is safe for concurrent use.
type Table struct {
	o Options

	mu      sync.Mutex
	closed  bool
	entries map[Key]*entry
	waiting int
	stats   Stats

	// hmu serialises Persist; horizon is the last stored one (Unix nanos).
	hmu     sync.Mutex
	horizon atomic.Int64

	nextToken atomic.Uint64
}

// entry is one key's lock: its holder (token 0: none) and the queue.
type entry struct {
	key     Key
	token   uint64
	owner   string
	expires time.Time
	timer   *time.Timer // fires at expires
	queue   []*waiter
}

type waiter struct {
	owner string
	lease time.Duration
	// granted is closed once the lock passed to this waiter (token set).
	granted chan struct{}
	token   uint64
	gone    bool // gave up; the queue skips it
}

// New returns an empty table.
func New(o Options) *Table {
	if o.MaxLease <= 0 {
		o.MaxLease = MaxLease
	}
	if o.HorizonStep <= 0 {
		o.HorizonStep = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Table{o: o, entries: map[Key]*entry{}}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	t.nextToken.Store(binary.LittleEndian.Uint64(b[:]) >> 1)
	return t
}

func (t *Table) token() uint64 {
	for {
		if tok := t.nextToken.Add(1); tok != 0 {
			return tok
		}
	}
}

// Lock takes k's lock for owner for lease, waiting up to wait while
// another owner holds it, and returns the grant's token. A request from
// the owner that holds the lock (a retry whose answer was lost) gets the
// same token with its lease renewed. It fails with a *GraceError during
// the grace period, a *ContendedError when the wait ran out, or ctx's
// error.
func (t *Table) Lock(ctx context.Context, k Key, owner string, lease, wait time.Duration) (uint64, error) {
	if lease <= 0 || lease > t.o.MaxLease {
		return 0, fmt.Errorf("%w: lease %s: want 1ms to %s", ErrInvalid, lease, t.o.MaxLease)
	}
	if wait < 0 || wait > t.o.MaxLease {
		return 0, fmt.Errorf("%w: wait %s: want at most %s", ErrInvalid, wait, t.o.MaxLease)
	}
	now := t.o.Now()
	if now.Before(t.o.GraceUntil) {
		t.mu.Lock()
		t.stats.Grace++
		t.mu.Unlock()
		return 0, &GraceError{Until: t.o.GraceUntil, Left: t.o.GraceUntil.Sub(now)}
	}
	if err := t.cover(now.Add(wait + lease)); err != nil {
		return 0, err
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return 0, ErrClosed
	}
	e := t.entries[k]
	if e != nil && e.token != 0 && !now.Before(e.expires) {
		t.expireLocked(e, now) // its timer is late; do its work now
		e = t.entries[k]       // gone unless it passed to a waiter
	}
	if e == nil {
		e = &entry{key: k}
		t.entries[k] = e
	}
	switch {
	case e.token == 0: // a queue exists only behind a holder
		tok := t.grantLocked(e, owner, lease, now)
		t.mu.Unlock()
		return tok, nil
	case e.token != 0 && owner != "" && e.owner == owner:
		e.expires = now.Add(lease)
		e.timer.Reset(lease)
		tok := e.token
		t.mu.Unlock()
		return tok, nil
	}
	w := &waiter{owner: owner, lease: lease, granted: make(chan struct{})}
	e.queue = append(e.queue, w)
	t.waiting++
	t.stats.Waits++
	t.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.granted:
		return w.token, nil
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-w.granted: // granted as the wait ended
		if err == nil {
			return w.token, nil
		}
		t.releaseLocked(e, w.token)
		return 0, err
	default:
	}
	w.gone = true
	t.waiting--
	t.dropGoneLocked(e)
	if err != nil {
		return 0, err
	}
	t.stats.Contended++
	return 0, &ContendedError{Key: k, Owner: e.owner, Wait: wait}
}

// Unlock releases k's lock if token holds it and reports whether it did.
// A lock that expired or passed to another owner stays as it is.
func (t *Table) Unlock(k Key, token uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil || token == 0 || e.token != token {
		return false
	}
	t.releaseLocked(e, token)
	return true
}

// Close stops granting locks and returns when the last lease granted
// ends (zero: none is held): the horizon to store, since no later grant
// can outlive it.
func (t *Table) Close() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var last time.Time
	for _, e := range t.entries {
		if e.token != 0 && e.expires.After(last) {
			last = e.expires
		}
	}
	return last
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Waiting = t.waiting
	for _, e := range t.entries {
		if e.token != 0 {
			s.Held++
		}
	}
	return s
}

// Len is the number of keys with a holder or a queue.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Horizon is the last horizon stored (zero: none yet).
func (t *Table) Horizon() time.Time {
	if h := t.horizon.Load(); h != 0 {
		return time.Unix(0, h)
	}
	return time.Time{}
}

// cover makes sure the stored horizon is at or after until.
func (t *Table) cover(until time.Time) error {
	if t.o.Persist == nil || until.UnixNano() <= t.horizon.Load() {
		return nil
	}
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if until.UnixNano() <= t.horizon.Load() {
		return nil
	}
	h := until.Add(t.o.HorizonStep)
	if err := t.o.Persist(h); err != nil {
		return fmt.Errorf("locks: store the lock horizon: %w", err)
	}
	t.horizon.Store(h.UnixNano())
	return nil
}

// grantLocked makes owner e's holder.
func (t *Table) grantLocked(e *entry, owner string, lease time.Duration, now time.Time) uint64 {
	e.token, e.owner, e.expires = t.token(), owner, now.Add(lease)
	t.stats.Granted++
	if e.timer == nil {
		e.timer = time.AfterFunc(lease, func() { t.expire(e) })
	} else {
		e.timer.Reset(lease)
	}
	return e.token
}

// expire runs when e's lease may have run out.
func (t *Table) expire(e *entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.token == 0 || t.entries[e.key] != e {
		return
	}
	now := t.o.Now()
	if now.Before(e.expires) {
		e.timer.Reset(e.expires.Sub(now)) // renewed since the timer was set
		return
	}
	t.expireLocked(e, now)
}

func (t *Table) expireLocked(e *entry, _ time.Time) {
	t.stats.Expired++
	t.releaseLocked(e, e.token)
}

// releaseLocked ends the holder's lease and passes the lock to the first
// waiter still waiting, or drops the entry.
func (t *Table) releaseLocked(e *entry, token uint64) {
	if e.token != token {
		return
	}
	e.token, e.owner = 0, ""
	e.timer.Stop()
	for len(e.queue) > 0 {
		w := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		if w.gone || t.closed {
			continue // a closed table grants nothing; the waiter times out
		}
		t.waiting--
		w.token = t.grantLocked(e, w.owner, w.lease, t.o.Now())
		close(w.granted)
		return
	}
	delete(t.entries, e.key)
}

// dropGoneLocked removes waiters that gave up from e's queue and drops e
// when nothing is left of it.
func (t *Table) dropGoneLocked(e *entry) {
	q := e.queue[:0]
	for _, w := range e.queue {
		if !w.gone {
			q = append(q, w)
		}
	}
	clear(e.queue[len(q):])
	e.queue = q
	if e.token == 0 && len(e.queue) == 0 && t.entries[e.key] == e {
		if e.timer != nil {
			e.timer.Stop()
		}
		delete(t.entries, e.key)
	}
}
