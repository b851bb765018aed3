package locks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var k1 = Key{TableID: 1, PartitionKey: "pk", SortKey: "sk"}

func lockOK(t *testing.T, tb *Table, k Key, owner string, lease, wait time.Duration) uint64 {
	t.Helper()
	tok, err := tb.Lock(t.Context(), k, owner, lease, wait)
	if err != nil {
		t.Fatalf("lock %s for %s: %v", k, owner, err)
	}
	if tok == 0 {
		t.Fatalf("lock %s for %s: token 0", k, owner)
	}
	return tok
}

func TestGrantAndRelease(t *testing.T) {
	tb := New(Options{})
	tok := lockOK(t, tb, k1, "a", time.Second, 0)
	// Another key is independent.
	other := lockOK(t, tb, Key{TableID: 1, PartitionKey: "pk", SortKey: "sk2"}, "b", time.Second, 0)
	if other == tok {
		t.Fatal("two grants share a token")
	}
	// Held: no wait means refused at once, naming the holder.
	_, err := tb.Lock(t.Context(), k1, "b", time.Second, 0)
	var ce *ContendedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrContended) || ce.Owner != "a" {
		t.Fatalf("err = %v, want ContendedError held by a", err)
	}
	if !tb.Unlock(k1, tok) {
		t.Fatal("unlock with the right token did nothing")
	}
	if tb.Unlock(k1, tok) {
		t.Fatal("second unlock released something")
	}
	lockOK(t, tb, k1, "b", time.Second, 0)
	st := tb.Stats()
	if st.Granted != 3 || st.Contended != 1 || st.Waits != 1 || st.Held != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestUnlockWrongToken(t *testing.T) {
	tb := New(Options{})
	tok := lockOK(t, tb, k1, "a", time.Second, 0)
	if tb.Unlock(k1, tok+1) || tb.Unlock(k1, 0) || tb.Unlock(Key{TableID: 2}, tok) {
		t.Fatal("unlock with a wrong token or key released the lock")
	}
	if _, err := tb.Lock(t.Context(), k1, "b", time.Second, 0); !errors.Is(err, ErrContended) {
		t.Fatalf("lock after a wrong unlock: %v, want contended", err)
	}
}

func TestSameOwnerRenews(t *testing.T) {
	tb := New(Options{})
	tok := lockOK(t, tb, k1, "a", 50*time.Millisecond, 0)
	time.Sleep(30 * time.Millisecond)
	if again := lockOK(t, tb, k1, "a", 100*time.Millisecond, 0); again != tok {
		t.Fatalf("retry by the holder got token %d, want %d", again, tok)
	}
	time.Sleep(40 * time.Millisecond) // past the first lease, within the renewed one
	if _, err := tb.Lock(t.Context(), k1, "b", time.Second, 0); !errors.Is(err, ErrContended) {
		t.Fatalf("renewed lease ended early: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	tb := New(Options{})
	old := lockOK(t, tb, k1, "a", 30*time.Millisecond, 0)
	start := time.Now()
	// b waits for a's lease to run out.
	tok := lockOK(t, tb, k1, "b", time.Second, time.Second)
	if d := time.Since(start); d < 20*time.Millisecond || d > 500*time.Millisecond {
		t.Fatalf("b waited %s for a 30ms lease", d)
	}
	if tb.Unlock(k1, old) {
		t.Fatal("a released a lock that expired and passed to b")
	}
	if !tb.Unlock(k1, tok) {
		t.Fatal("b could not release")
	}
	// An expired lock with nobody waiting leaves nothing behind.
	lockOK(t, tb, Key{TableID: 9}, "c", 10*time.Millisecond, 0)
	deadline := time.Now().Add(2 * time.Second)
	for tb.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left after every lease expired", tb.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := tb.Stats(); st.Expired != 2 || st.Held != 0 || st.Waiting != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestFIFO: waiters get the lock in the order they asked for it.
func TestFIFO(t *testing.T) {
	tb := New(Options{})
	first := lockOK(t, tb, k1, "holder", 5*time.Second, 0)
	const n = 8
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok := lockOK(t, tb, k1, fmt.Sprint("w", i), 5*time.Second, 5*time.Second)
			order <- i
			time.Sleep(time.Millisecond)
			tb.Unlock(k1, tok)
		})
		// Queue them one by one.
		for tb.Stats().Waiting != i+1 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	tb.Unlock(k1, first)
	wg.Wait()
	close(order)
	want := 0
	for i := range order {
		if i != want {
			t.Fatalf("waiter %d got the lock in place %d", i, want)
		}
		want++
	}
	if tb.Len() != 0 {
		t.Fatalf("%d entries left", tb.Len())
	}
}

// TestWaitTimeoutKeepsQueue: a waiter that gives up leaves the queue
// without disturbing those behind it.
func TestWaitTimeoutKeepsQueue(t *testing.T) {
	tb := New(Options{})
	tok := lockOK(t, tb, k1, "a", 5*time.Second, 0)
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	go func() { _, err := tb.Lock(t.Context(), k1, "short", time.Second, 20*time.Millisecond); errs <- err }()
	go func() { _, err := tb.Lock(ctx, k1, "cancelled", time.Second, 5*time.Second); errs <- err }()
	got := make(chan uint64, 1)
	for tb.Stats().Waiting != 2 {
		time.Sleep(100 * time.Microsecond)
	}
	go func() { tok, _ := tb.Lock(t.Context(), k1, "patient", time.Second, 5*time.Second); got <- tok }()
	if err := <-errs; !errors.Is(err, ErrContended) {
		t.Fatalf("short wait: %v, want contended", err)
	}
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	tb.Unlock(k1, tok)
	if p := <-got; p == 0 {
		t.Fatal("patient waiter got no lock")
	} else {
		tb.Unlock(k1, p)
	}
	if tb.Len() != 0 || tb.Stats().Waiting != 0 {
		t.Fatalf("left: %d entries, %+v", tb.Len(), tb.Stats())
	}
}

// TestMutualExclusion: goroutines incrementing a counter under the lock
// with random pauses never overlap.
func TestMutualExclusion(t *testing.T) {
	tb := New(Options{})
	var inside, maxInside, total atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				tok := lockOK(t, tb, k1, fmt.Sprint(i, "/", j), time.Second, 5*time.Second)
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				total.Add(1)
				time.Sleep(time.Duration(j%3) * 100 * time.Microsecond)
				inside.Add(-1)
				if !tb.Unlock(k1, tok) {
					t.Error("unlock failed")
				}
			}
		})
	}
	wg.Wait()
	if maxInside.Load() != 1 || total.Load() != 160 {
		t.Fatalf("max %d holders at once, %d increments", maxInside.Load(), total.Load())
	}
}

func TestGrace(t *testing.T) {
	tb := New(Options{GraceUntil: time.Now().Add(50 * time.Millisecond)})
	_, err := tb.Lock(t.Context(), k1, "a", time.Second, 0)
	var ge *GraceError
	if !errors.As(err, &ge) || !errors.Is(err, ErrGrace) || ge.Left <= 0 || ge.Left > 50*time.Millisecond {
		t.Fatalf("err = %v, want a grace refusal with up to 50ms left", err)
	}
	time.Sleep(60 * time.Millisecond)
	lockOK(t, tb, k1, "a", time.Second, 0)
	if st := tb.Stats(); st.Grace != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestHorizon(t *testing.T) {
	var stored []time.Time
	fail := false
	tb := New(Options{HorizonStep: time.Second, Persist: func(h time.Time) error {
		if fail {
			return errors.New("disk full")
		}
		stored = append(stored, h)
		return nil
	}})
	before := time.Now()
	tok := lockOK(t, tb, k1, "a", 2*time.Second, 0)
	if len(stored) != 1 || stored[0].Before(before.Add(3*time.Second)) {
		t.Fatalf("stored horizons %v; want one at least lease+step after %v", stored, before)
	}
	tb.Unlock(k1, tok)
	// Within the horizon: nothing stored.
	tok = lockOK(t, tb, k1, "a", 100*time.Millisecond, 0)
	tb.Unlock(k1, tok)
	if len(stored) != 1 {
		t.Fatalf("stored %d horizons, want 1", len(stored))
	}
	// A grant past the horizon that cannot be stored is refused.
	fail = true
	if _, err := tb.Lock(t.Context(), k1, "a", 10*time.Second, 0); err == nil {
		t.Fatal("lock granted past a horizon that could not be stored")
	}
	if tb.Len() != 0 {
		t.Fatal("refused lock left an entry")
	}
}

func TestInvalid(t *testing.T) {
	tb := New(Options{})
	for _, tc := range []struct{ lease, wait time.Duration }{{0, 0}, {11 * time.Second, 0}, {time.Second, -1}, {time.Second, 11 * time.Second}} {
		if _, err := tb.Lock(t.Context(), k1, "a", tc.lease, tc.wait); !errors.Is(err, ErrInvalid) {
			t.Errorf("lease %s wait %s: %v, want ErrInvalid", tc.lease, tc.wait, err)
		}
	}
}

// TestLateTimer: a lease that ran out before its timer fired is ended by
// the next request, and the lock it then grants is held like any other.
func TestLateTimer(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tb := New(Options{Now: clock})
	lockOK(t, tb, k1, "a", time.Second, 0)
	mu.Lock()
	now = now.Add(2 * time.Second) // the real timer is still a second away
	mu.Unlock()
	tok := lockOK(t, tb, k1, "b", 5*time.Second, 0)
	if _, err := tb.Lock(t.Context(), k1, "c", time.Second, 0); !errors.Is(err, ErrContended) {
		t.Fatalf("c: %v; b's lock, granted after a late expiry, is not held", err)
	}
	if !tb.Unlock(k1, tok) || tb.Len() != 0 {
		t.Fatalf("b's unlock failed or left %d entries", tb.Len())
	}
	if st := tb.Stats(); st.Expired != 1 {
		t.Fatalf("stats = %+v", st)
	}
}
