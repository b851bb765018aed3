package coord

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// threeNodes places one partition on n1, n2, n3 over bufconn.
func threeNodes(t *testing.T, opts Options) *grid {
	t.Helper()
	ids := []string{"n1", "n2", "n3"}
	return newGrid(t, ids, [][]string{ids}, opts)
}

// TestGatherAsksNeed: a read at each level asks exactly as many replicas
// as it needs when they all answer (no hedge): one at ONE, on the fast
// path, two at QUORUM, three at ALL.
func TestGatherAsksNeed(t *testing.T) {
	for _, tc := range []struct {
		level Level
		calls int
	}{{One, 1}, {Quorum, 2}, {All, 3}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
			k := key(0, "k")
			for _, n := range g.nodes {
				n.put(record(k, 5))
			}
			const reads = 10
			for range reads {
				got, err := g.co.Read(t.Context(), k, tc.level)
				if err != nil {
					t.Fatal(err)
				}
				if got.GetVersion() != 5 {
					t.Fatalf("read version %d, want 5", got.GetVersion())
				}
			}
			if n := g.calls("Read"); n != reads*tc.calls {
				t.Errorf("%d reads at %s made %d calls, want %d", reads, tc.level, n, reads*tc.calls)
			}
			if h := counterValue(g.m.Hedges); h != 0 {
				t.Errorf("hedges = %v with every replica answering at once", h)
			}
		})
	}
}

// TestGatherFailover: a replica that fails makes the read ask the next one
// at once, whichever replica the coordinator picked first; each failure is
// counted by node and code.
func TestGatherFailover(t *testing.T) {
	busy := status.Error(codes.ResourceExhausted, "busy")
	for _, tc := range []struct {
		name   string
		level  Level
		failed map[string]error
	}{
		{"ONE, two of three fail", One, map[string]error{"n1": down, "n2": busy}},
		{"QUORUM, one of three fails", Quorum, map[string]error{"n3": down}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
			k := key(0, "k")
			for id, n := range g.nodes {
				n.put(record(k, 5))
				if err := tc.failed[id]; err != nil {
					n.set(failWith(err))
				}
			}
			const reads = 20
			for range reads {
				got, err := g.co.Read(t.Context(), k, tc.level)
				if err != nil {
					t.Fatal(err)
				}
				if got.GetVersion() != 5 {
					t.Fatalf("read version %d, want 5", got.GetVersion())
				}
			}
			failedCalls := 0
			for id, err := range tc.failed {
				n := g.nodes[id].count("Read")
				failedCalls += n
				code := status.Code(err).String()
				if v := counterValue(g.m.ReplicaErrors.WithLabelValues(id, code)); v != float64(n) {
					t.Errorf("replica errors {%s, %s} = %v, want %d", id, code, v, n)
				}
			}
			// A failing replica has no latency estimate, so it is the
			// coordinator's first pick more often than not: in 20 reads
			// the failover path is taken.
			if failedCalls == 0 {
				t.Fatalf("no read asked a failing replica first")
			}
			ok := g.calls("Read") - failedCalls
			if want := reads * Need(tc.level, 3); ok != want {
				t.Errorf("%d successful calls, want %d: a read asked more healthy replicas than it needed", ok, want)
			}
		})
	}
}

// TestReadUnavailableDetail: a read that cannot reach its level says
// which replicas failed and why.
func TestReadUnavailableDetail(t *testing.T) {
	long := strings.Repeat("x", 300)
	g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
	g.nodes["n1"].set(failWith(down))
	g.nodes["n2"].set(failWith(status.Error(codes.ResourceExhausted, "too many requests")))
	g.nodes["n3"].set(failWith(status.Error(codes.Internal, long)))
	_, err := g.co.Read(t.Context(), key(0, "k"), One)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	for _, want := range []string{
		`read of key (table 1, partition key "k", sort key "") in partition 0 at ONE reached 0 of 1 required replicas: `,
		"n1: Unavailable: connection refused",
		"n2: ResourceExhausted: too many requests",
		"n3: Internal: " + long[:200] + "…",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), long[:201]) {
		t.Errorf("a replica's message is not truncated to 200 bytes")
	}

	// At QUORUM, two failures are enough to give up; both are named.
	g.nodes["n1"].set(nil)
	_, err = g.co.Read(t.Context(), key(0, "k"), Quorum)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "of 2 required replicas") ||
		!strings.Contains(err.Error(), "n2: ResourceExhausted: too many requests") || !strings.Contains(err.Error(), "n3: Internal: ") {
		t.Fatalf("QUORUM read with n2, n3 failing: %v", err)
	}
}

// TestReadNotRegistered: a read with fewer registered replicas than its
// level needs fails before asking any, naming the missing ones.
func TestReadNotRegistered(t *testing.T) {
	g := newGrid(t, []string{"n1"}, [][]string{{"n1", "n2", "n3"}}, Options{})
	_, err := g.co.Read(t.Context(), key(0, "k"), Quorum)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reached 1 of 2 required replicas: n2: not registered; n3: not registered") {
		t.Fatalf("err = %v", err)
	}
	if n := g.calls("Read"); n != 0 {
		t.Errorf("%d calls for a read that cannot reach its level", n)
	}
	if _, err := g.co.Read(t.Context(), key(0, "k"), One); err != nil {
		t.Fatalf("ONE with one replica registered: %v", err)
	}
	if _, err := g.co.Read(t.Context(), key(3, "k"), One); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "partition out of range") {
		t.Fatalf("read of partition 3 of 1: %v", err)
	}
}

// TestReadInvalidArgument: a replica refusing the request itself ends the
// read: every replica would say the same.
func TestReadInvalidArgument(t *testing.T) {
	for _, level := range []Level{One, Quorum} {
		g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
		for _, n := range g.nodes {
			n.set(failWith(status.Error(codes.InvalidArgument, "sort key too long")))
		}
		_, err := g.co.Read(t.Context(), key(0, "k"), level)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "sort key too long") {
			t.Fatalf("%s: err = %v, want ErrInvalidArgument", level, err)
		}
		// A call launched with the first may be cancelled before it
		// arrives; none may be launched after the refusal.
		if n := g.calls("Read"); n < 1 || n > Need(level, 3) {
			t.Errorf("%s: %d calls, want 1 to %d: a bad request was sent on to other replicas", level, n, Need(level, 3))
		}
	}
}

// TestReadDeadline: a read whose replicas never answer ends with the
// caller's deadline, as such, and asks no more replicas once it passed.
// Over bufconn a replica's own DeadlineExceeded often arrives before the
// caller's context timer fires; that used to make the read move on to
// the next replicas (which failed at once) and report Unavailable in
// about one run of ten (TestPastDeadlineBeforeTimer makes it certain).
func TestReadDeadline(t *testing.T) {
	for _, level := range []Level{One, Quorum} {
		for range 5 {
			g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
			for id, n := range g.nodes {
				n.set(hang(id, nil))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			_, err := g.co.Read(ctx, key(0, "k"), level)
			_, berr := g.co.BatchRead(ctx, []*storagev1.Key{key(0, "k")}, level)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(berr, context.DeadlineExceeded) {
				t.Fatalf("%s: Read: %v; BatchRead: %v; want DeadlineExceeded", level, err, berr)
			}
			if n := g.calls("Read"); n > Need(level, 3) {
				t.Fatalf("%s: %d replicas asked, want at most %d", level, n, Need(level, 3))
			}
		}
	}
}

// TestHedge: the replica asked first does not answer within the hedge
// delay, so the read asks one more; the first answer wins, the hedge is
// counted, and the call that lost is cancelled.
func TestHedge(t *testing.T) {
	const delay = 20 * time.Millisecond
	for _, tc := range []struct {
		name  string
		level Level
		// first is the first-arriving call's action, second the
		// hedge's (or the second of QUORUM's two); cancelled receives
		// the id of the one that must lose.
		acts  func(cancelled chan string) []action
		loser int // arrival index of the call that must be cancelled
		calls int
	}{
		{"ONE: slow first, hedge answers", One, func(c chan string) []action {
			return []action{hangArrival(c), nil}
		}, 0, 2},
		{"ONE: first answers once the hedge is asked", One, func(c chan string) []action {
			hedged := make(chan struct{})
			return []action{waitFor(hedged), func(ctx context.Context) error { close(hedged); return hangArrival(c)(ctx) }}
		}, 1, 2},
		{"QUORUM: one of two hangs, third replica asked", Quorum, func(c chan string) []action {
			return []action{hangArrival(c), nil, nil}
		}, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := threeNodes(t, Options{HedgeMin: delay, HedgeMax: delay})
			k := key(0, "k")
			for _, n := range g.nodes {
				n.put(record(k, 5))
			}
			cancelled := make(chan string, 3)
			sc := newScript(tc.acts(cancelled)...)
			g.shareScript(sc)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			got, err := g.co.Read(ctx, k, tc.level)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			// The answer that won ends the read at once: the call that
			// lost is cancelled, not waited for until the deadline.
			if el := time.Since(start); el < delay || el > 2*time.Second {
				t.Errorf("read answered in %v, want after the hedge delay %v and well before the deadline", el, delay)
			}
			if got.GetVersion() != 5 {
				t.Errorf("version %d, want 5", got.GetVersion())
			}
			if h := counterValue(g.m.Hedges); h != 1 {
				t.Errorf("hedges = %v, want 1", h)
			}
			var order []string
			for range tc.calls {
				order = append(order, recv(t, sc.arrived, "a call"))
			}
			if id := recv(t, cancelled, "the losing call to be cancelled"); id != order[tc.loser] {
				t.Errorf("cancelled %s, want %s (arrivals %v)", id, order[tc.loser], order)
			}
			if n := g.calls("Read"); n != tc.calls {
				t.Errorf("%d calls, want %d", n, tc.calls)
			}
		})
	}
}

// hangArrival is hang for a script: it reports, when cancelled, the node
// it ran on, which the script's arrival order names.
func hangArrival(cancelled chan<- string) action {
	return func(ctx context.Context) error {
		<-ctx.Done()
		cancelled <- nodeOf(ctx)
		return status.FromContextError(ctx.Err()).Err()
	}
}

// timerLate is a context whose deadline has passed while its timer has
// not fired yet (Err is still nil): the moment in which a replica's own
// DeadlineExceeded can reach the coordinator.
type timerLate struct{ context.Context }

func (timerLate) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestPastDeadlineBeforeTimer makes TestReadDeadline's race
// deterministic: past the caller's deadline a failed replica ends the
// read with DeadlineExceeded instead of asking the next replica.
func TestPastDeadlineBeforeTimer(t *testing.T) {
	g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
	ctx := timerLate{context.Background()}
	for _, level := range []Level{One, Quorum} {
		if _, err := g.co.Read(ctx, key(0, "k"), level); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Read at %s: %v, want DeadlineExceeded", level, err)
		}
		if _, err := g.co.BatchRead(ctx, []*storagev1.Key{key(0, "k")}, level); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("BatchRead at %s: %v, want DeadlineExceeded", level, err)
		}
	}
}
