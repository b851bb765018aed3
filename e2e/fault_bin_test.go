package e2e

// Fault tests of the real binaries: processes are killed for real (SIGKILL:
// no flush, no deregistration) or stopped (SIGTERM) in the middle of a
// load, restarted on their data directories, and every acknowledged write
// must still be there.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// Retry budget of the fault tests' clients: enough to ride out a process
// restart (a few seconds), far less than the load's deadline.
var faultClientOpts = []client.Option{
	client.WithMaxRetries(10),
	client.WithBackoff(20*time.Millisecond, 500*time.Millisecond),
}

// ackedPut is an acknowledged write: its value and the version it carried.
type ackedPut struct {
	value   []byte
	version uint64
}

// load writes keys [0, n) of a table with a few goroutines through one
// client and records every acknowledged put. With readBack each put is
// followed by a QUORUM read of the same key, which must return it.
type load struct {
	cl       *client.Client
	table    string
	n        int
	readBack bool
	salt     string

	next  atomic.Int64 // next key index to write
	acks  atomic.Int64
	stop  atomic.Bool // no new operations once set
	done  chan struct{}
	marks map[int64]chan struct{} // closed when acks reaches the key

	mu         sync.Mutex
	acked      map[string]ackedPut
	failed     []error // operations that failed after the client's retries
	mismatched []string
}

func loadKey(i int) string { return fmt.Sprintf("key-%05d", i) }

// startLoad starts workers goroutines writing n keys. marks are ack counts
// the test can wait for with reached.
func startLoad(t *testing.T, cl *client.Client, table string, n, workers int, readBack bool, marks ...int) *load {
	t.Helper()
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	l := &load{
		cl: cl, table: table, n: n, readBack: readBack, salt: hex.EncodeToString(salt[:]),
		done: make(chan struct{}), marks: map[int64]chan struct{}{}, acked: map[string]ackedPut{},
	}
	for _, m := range marks {
		l.marks[int64(m)] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.work()
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

func (l *load) work() {
	for !l.stop.Load() {
		i := int(l.next.Add(1) - 1)
		if i >= l.n {
			return
		}
		key := loadKey(i)
		value := []byte(fmt.Sprintf("value-%05d-%s", i, l.salt))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := l.cl.Put(ctx, l.table, []byte(key), nil, value)
		version := res.Version
		if err != nil {
			cancel()
			l.fail(fmt.Errorf("put %s: %w", key, err))
			continue
		}
		l.mu.Lock()
		l.acked[key] = ackedPut{value: value, version: version}
		l.mu.Unlock()
		if ch, ok := l.marks[l.acks.Add(1)]; ok {
			close(ch)
		}
		if l.readBack {
			it, found, err := l.cl.Get(ctx, l.table, []byte(key), nil, client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
			switch {
			case err != nil:
				l.fail(fmt.Errorf("get %s: %w", key, err))
			case !found || string(it.Value) != string(value) || it.Version != version:
				l.mu.Lock()
				l.mismatched = append(l.mismatched, fmt.Sprintf("%s: read found=%v %q v%d, wrote %q v%d", key, found, it.Value, it.Version, value, version))
				l.mu.Unlock()
			}
		}
		cancel()
	}
}

func (l *load) fail(err error) {
	l.mu.Lock()
	l.failed = append(l.failed, err)
	l.mu.Unlock()
}

// reached waits until mark puts were acknowledged; it fails the test if the
// load ends first or it takes longer than timeout.
func (l *load) reached(t *testing.T, mark int, timeout time.Duration) {
	t.Helper()
	ch, ok := l.marks[int64(mark)]
	if !ok {
		t.Fatalf("load: %d is not a mark", mark)
	}
	select {
	case <-ch:
	case <-l.done:
		select {
		case <-ch:
		default:
			t.Fatalf("load ended with %d acknowledged puts, before reaching %d; failures: %v", l.acks.Load(), mark, l.failures(5))
		}
	case <-time.After(timeout):
		t.Fatalf("load: %d acknowledged puts after %s, want %d; failures: %v", l.acks.Load(), timeout, mark, l.failures(5))
	}
}

// wait waits for the load to end.
func (l *load) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		l.stop.Store(true)
		select {
		case <-l.done:
		case <-time.After(time.Minute):
		}
		t.Fatalf("load did not finish within %s (%d acknowledged puts)", timeout, l.acks.Load())
	}
}

func (l *load) failures(max int) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failed) > max {
		return append(append([]error(nil), l.failed[:max]...), fmt.Errorf("… %d more", len(l.failed)-max))
	}
	return append([]error(nil), l.failed...)
}

func (l *load) snapshot() map[string]ackedPut {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]ackedPut, len(l.acked))
	for k, v := range l.acked {
		out[k] = v
	}
	return out
}

// waitReadable polls a read of key at consistency until it succeeds (a
// restarted replica is reachable again), for at most timeout.
func waitReadable(t *testing.T, cl *client.Client, table, key string, cons kvv1.Consistency, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, found, err := cl.Get(ctx, table, []byte(key), nil, client.WithConsistency(cons))
		cancel()
		if err == nil && found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read of %s/%s at %s: found=%v err=%v after %s", table, key, cons, found, err, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstKey is the smallest acknowledged key.
func firstKey(acked map[string]ackedPut) string {
	first := ""
	for k := range acked {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

// verifyAcked reads every acknowledged key at consistency and fails the
// test if one is missing or holds another value or version.
func verifyAcked(t *testing.T, cl *client.Client, table string, acked map[string]ackedPut, cons kvv1.Consistency) {
	t.Helper()
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lost, wrong []string
	const batch = 250
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		req := make([]client.Key, 0, hi-lo)
		for _, k := range keys[lo:hi] {
			req = append(req, client.Key{Table: table, PartitionKey: []byte(k)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := cl.BatchGet(ctx, req, client.WithConsistency(cons))
		cancel()
		if err != nil {
			t.Fatalf("BatchGet of acknowledged keys %s..%s at %s: %v", keys[lo], keys[hi-1], cons, err)
		}
		for i, r := range res {
			k, want := keys[lo+i], acked[keys[lo+i]]
			switch {
			case !r.Found:
				lost = append(lost, k)
			case string(r.Item.Value) != string(want.value) || (want.version != 0 && r.Item.Version != want.version):
				wrong = append(wrong, fmt.Sprintf("%s: %q v%d, acknowledged %q v%d", k, r.Item.Value, r.Item.Version, want.value, want.version))
			}
		}
	}
	if len(lost) > 0 || len(wrong) > 0 {
		t.Errorf("of %d acknowledged writes read at %s, %d are lost %v and %d differ %v",
			len(keys), cons, len(lost), head(lost, 10), len(wrong), head(wrong, 10))
	}
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

func createTableBin(t *testing.T, cl *client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.CreateTable(ctx, name); err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
}

// waitTableOnRouters waits until every router of c serves table (a router
// learns of a table created through another one by its etcd watch).
func waitTableOnRouters(t *testing.T, c *framework.Cluster, table string) {
	t.Helper()
	for _, addr := range c.RouterAddrs() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cl, err := client.New(ctx, []string{addr}, client.WithMaxRetries(0))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		for {
			_, err := cl.DescribeTable(ctx, table)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				cl.Close()
				cancel()
				t.Fatalf("router %s does not know table %s after 30s: %v", addr, table, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cl.Close()
		cancel()
	}
}

// TestBinStorageSIGKILL kills a storage node with SIGKILL in the middle of
// a write load and restarts it on its data directory: no acknowledged write
// may be lost.
func TestBinStorageSIGKILL(t *testing.T) {
	binTest(t)

	// RF 3, writes at the default QUORUM: one replica down must not fail a
	// write, and after it comes back every acknowledged write reads back at
	// ALL (all three replicas answer; the newest version wins).
	t.Run("RF3Quorum", func(t *testing.T) {
		c := framework.Start(t, framework.Options{Nodes: 3, RF: 3})
		cl := c.Client(t, faultClientOpts...)
		createTableBin(t, cl, "sigkill_rf3")
		const total, killAt, restartAt = 3000, 1000, 2000
		start := time.Now()
		l := startLoad(t, cl, "sigkill_rf3", total, 6, false, killAt, restartAt)
		t.Cleanup(func() { l.stop.Store(true); <-l.done })

		victim := c.Nodes[1]
		l.reached(t, killAt, time.Minute)
		victim.Kill(t)
		ackedAtKill := l.acks.Load()
		select {
		case <-l.marks[restartAt]:
		case <-l.done:
		case <-time.After(time.Minute):
			t.Fatalf("load stalled at %d acknowledged puts with %s down; failures: %v", l.acks.Load(), victim.Name, l.failures(5))
		}
		ackedWhileDown := l.acks.Load() - ackedAtKill
		victim.Restart(t)
		l.wait(t, 2*time.Minute)
		t.Logf("%d puts acknowledged in %s, %d of them while %s was down; %d failed",
			l.acks.Load(), time.Since(start).Round(time.Millisecond), ackedWhileDown, victim.Name, len(l.failures(total)))
		if fs := l.failures(10); len(fs) > 0 {
			t.Errorf("with RF 3 and one node down, QUORUM writes must not fail; %d failed: %v", len(l.failures(total)), fs)
		}
		if ackedWhileDown == 0 {
			t.Errorf("no put was acknowledged while %s was down", victim.Name)
		}
		if got := l.acks.Load(); got != total && len(l.failures(1)) == 0 {
			t.Errorf("%d puts acknowledged; want %d", got, total)
		}

		acked := l.snapshot()
		waitReadable(t, cl, "sigkill_rf3", firstKey(acked), kvv1.Consistency_CONSISTENCY_ALL, 30*time.Second)
		verifyAcked(t, cl, "sigkill_rf3", acked, kvv1.Consistency_CONSISTENCY_ALL)
	})

	// RF 1, synced writes (--no-sync=false): the only replica is killed
	// while writes are in flight. Every write it acknowledged was on disk,
	// so all must be there after the restart.
	t.Run("RF1Synced", func(t *testing.T) {
		c := framework.Start(t, framework.Options{Nodes: 1, RF: 1})
		cl := c.Client(t, client.WithMaxRetries(3), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
		createTableBin(t, cl, "sigkill_rf1")
		const total, killAt = 3000, 600
		l := startLoad(t, cl, "sigkill_rf1", total, 6, false, killAt)
		t.Cleanup(func() { l.stop.Store(true); <-l.done })

		l.reached(t, killAt, time.Minute)
		c.Nodes[0].Kill(t)
		// Puts in flight at the kill fail or were acknowledged just before
		// it; no new ones start.
		l.stop.Store(true)
		l.wait(t, time.Minute)
		acked := l.snapshot()
		t.Logf("%d puts acknowledged before the SIGKILL, %d failed with the node down", len(acked), len(l.failures(total)))

		c.Nodes[0].Restart(t)
		waitReadable(t, cl, "sigkill_rf1", firstKey(acked), kvv1.Consistency_CONSISTENCY_ONE, 30*time.Second)
		verifyAcked(t, cl, "sigkill_rf1", acked, kvv1.Consistency_CONSISTENCY_ONE)

		// The restarted node takes writes again.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cl.Put(ctx, "sigkill_rf1", []byte("after-restart"), nil, []byte("ok")); err != nil {
			t.Errorf("put after restart: %v", err)
		}
	})
}

// TestBinRouterRestart runs a write-and-read load through a client of two
// routers while one router is stopped (SIGTERM) and restarted, then the
// other is killed (SIGKILL) and restarted. The client's retries must hide
// both: no operation may fail, and every acknowledged write reads back.
func TestBinRouterRestart(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Routers: 2})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "router_restart")
	waitTableOnRouters(t, c, "router_restart")

	// Each router stays down until the load has made progress without it,
	// so the outages overlap the traffic.
	const total, termAt, r1Back, killAt, r2Back = 1500, 300, 500, 800, 1000
	start := time.Now()
	l := startLoad(t, cl, "router_restart", total, 4, true, termAt, r1Back, killAt, r2Back)
	t.Cleanup(func() { l.stop.Store(true); <-l.done })

	l.reached(t, termAt, time.Minute)
	r1 := c.Routers[0]
	r1.Stop(t) // SIGTERM: graceful drain, exit 0
	l.reached(t, r1Back, time.Minute)
	r1.Restart(t)

	l.reached(t, killAt, time.Minute)
	r2 := c.Routers[1]
	r2.Kill(t)
	l.reached(t, r2Back, time.Minute)
	r2.Restart(t)

	l.wait(t, 2*time.Minute)
	failed := l.failures(total)
	l.mu.Lock()
	mismatched := append([]string(nil), l.mismatched...)
	l.mu.Unlock()
	t.Logf("%d puts (each read back at QUORUM) in %s, %d while router-1 was stopped (SIGTERM) and %d while router-2 was killed (SIGKILL); %d failed, %d mismatched",
		l.acks.Load(), time.Since(start).Round(time.Millisecond), r1Back-termAt, r2Back-killAt, len(failed), len(mismatched))
	if len(failed) > 0 {
		t.Errorf("%d operations failed despite the client's retries: %v", len(failed), l.failures(10))
	}
	if len(mismatched) > 0 {
		t.Errorf("%d reads did not return the write just acknowledged: %v", len(mismatched), head(mismatched, 10))
	}
	if got := l.acks.Load(); got != total {
		t.Errorf("%d puts acknowledged; want %d", got, total)
	}
	verifyAcked(t, cl, "router_restart", l.snapshot(), kvv1.Consistency_CONSISTENCY_QUORUM)

	// Both routers serve again, each on its own.
	for _, addr := range c.RouterAddrs() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		one, err := client.New(ctx, []string{addr}, client.WithMaxRetries(0))
		if err == nil {
			_, _, err = one.Get(ctx, "router_restart", []byte(firstKey(l.snapshot())), nil)
			one.Close()
		}
		cancel()
		if err != nil {
			t.Errorf("router %s after the restarts: %v", addr, err)
		}
	}
}
