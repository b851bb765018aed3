package dynamodb

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
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
