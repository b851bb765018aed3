package dynamodb

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb/migrationtest"
)

// mirrorEndpoint is an endpoint whose table "app" is in MIRROR towards
// upstream table "up" at upURL, with the queue replayed only by hand.
func mirrorEndpoint(t *testing.T, upURL string, fault func(string, ddb.Item) error) (*endpoint, *migrationtest.Control) {
	t.Helper()
	e := &endpoint{b: newTestBackend(t)}
	e.b.addTable(topology.Table{Name: "app", KeySchema: &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}}})
	ctl := migrationtest.New()
	ctl.Set(&migrationv1.Migration{Table: "app", Phase: migrationv1.Phase_PHASE_MIRROR,
		Upstream: &migrationv1.Upstream{Endpoint: upURL, Table: "up", Region: "us-east-1"}})
	e.h = NewHandler(e.b, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Migration: MigrationOptions{
		Control: ctl, Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		ReplayInterval: time.Hour, SyncFault: fault}})
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(func() { e.srv.Close(); e.h.Close() })
	return e, ctl
}

// putHTTP sends a PutItem of key pk to e from any goroutine and returns
// the status (0 and a test error when the call failed).
func putHTTP(t *testing.T, e *endpoint, pk string) int {
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/", bytes.NewReader([]byte(`{"TableName":"app","Item":{"pk":{"S":"`+pk+`"}}}`)))
	if err != nil {
		t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("Authorization", testAuth)
	req.Header.Set("X-Amz-Target", targetPrefix+"PutItem")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// waitFor waits until cond holds; 10s without is a failure, not a timing
// figure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResyncCoalescing: concurrent mirrored writes of one item on one
// router share re-sync rounds instead of each taking the item's lock in
// turn: while a round runs, the writes that arrive join the next one,
// which one of them runs after it; every write is answered only after a
// round that started after it joined. A failed round queues every write it
// served. Other items are not held up.
func TestResyncCoalescing(t *testing.T) {
	f := &fakeUpstream{status: http.StatusOK, body: `{}`}
	up := httptest.NewServer(f)
	defer up.Close()
	var (
		rounds   atomic.Int32                  // re-syncs of "hot" that ran (SyncFault is asked once per round)
		release  atomic.Pointer[chan struct{}] // closed to let the held round go on
		failNext atomic.Bool
	)
	e, ctl := mirrorEndpoint(t, up.URL, func(_ string, k ddb.Item) error {
		if k["pk"].(ddb.S) != "hot" {
			return nil
		}
		if rounds.Add(1) == 1 {
			<-*release.Load() // the first round runs until the test says so
			return nil
		}
		if failNext.Load() {
			return errors.New("injected")
		}
		return nil
	})
	mig := e.h.mig
	// On a failure, let the held round end, or closing the servers waits
	// for it forever.
	defer func() {
		if ch := release.Load(); ch != nil {
			select {
			case <-*ch:
			default:
				close(*ch)
			}
		}
	}()

	for _, fail := range []bool{false, true} {
		rounds.Store(0)
		ch := make(chan struct{})
		release.Store(&ch)
		failNext.Store(false)
		queued := ctl.Pending()
		const joiners = 5
		var wg sync.WaitGroup
		statuses := make([]int, joiners+1)
		wg.Go(func() { statuses[0] = putHTTP(t, e, "hot") })
		waitFor(t, "the first re-sync to start", func() bool { return rounds.Load() == 1 })
		joinedBefore := mig.joined.Load()
		for i := range joiners {
			wg.Go(func() { statuses[i+1] = putHTTP(t, e, "hot") })
		}
		// The first to arrive waits to run the next round; the others join it.
		waitFor(t, "the writes to join the next round", func() bool { return mig.joined.Load()-joinedBefore == joiners-1 })
		// Another item is re-synced meanwhile, not held up by "hot".
		if st := putHTTP(t, e, "cold"); st != http.StatusOK {
			t.Fatalf("PutItem of another item while hot's re-sync runs: status %d", st)
		}
		failNext.Store(fail)
		close(ch)
		wg.Wait()
		for i, st := range statuses {
			if st != http.StatusOK {
				t.Errorf("fail=%v: write %d: status %d", fail, i, st)
			}
		}
		if n := rounds.Load(); n != 2 {
			t.Errorf("fail=%v: %d re-sync rounds for %d concurrent writes of one item, want 2", fail, n, joiners+1)
		}
		want := 0
		if fail {
			want = joiners // the second round's runner and every joiner
		}
		if got := ctl.Pending() - queued; got != want {
			t.Errorf("fail=%v: %d re-syncs queued, want %d", fail, got, want)
		}
		mig.syncMu.Lock()
		left := len(mig.syncing)
		mig.syncMu.Unlock()
		if left != 0 {
			t.Errorf("fail=%v: %d items still tracked after every re-sync ended", fail, left)
		}
	}
}

// TestUpstreamConnectionReuse: one connection carries every upstream
// request of sequential mirrored writes (the write, then the re-sync's
// consistent read): no connection is opened per request, and so no TCP
// handshake or slow start is paid on the write path.
func TestUpstreamConnectionReuse(t *testing.T) {
	f := &fakeUpstream{status: http.StatusOK, body: `{}`}
	up := httptest.NewUnstartedServer(f)
	var conns atomic.Int32
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	e, _ := mirrorEndpoint(t, up.URL, nil)
	const writes = 20
	for range writes {
		if st := putHTTP(t, e, "a"); st != http.StatusOK {
			t.Fatalf("PutItem: status %d", st)
		}
	}
	f.mu.Lock()
	reqs := len(f.reqs)
	f.mu.Unlock()
	if reqs != 2*writes {
		t.Fatalf("%d upstream requests for %d mirrored writes, want %d", reqs, writes, 2*writes)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d upstream connections for %d sequential requests, want 1", n, reqs)
	}
}
