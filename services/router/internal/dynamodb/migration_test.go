package dynamodb

import (
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb/migrationtest"
)

// fakeUpstream records the requests it gets and answers each with status
// and body.
type fakeUpstream struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	status int
	body   string
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.bodies = append(f.bodies, string(b))
	status, body := f.status, f.body
	f.mu.Unlock()
	w.Header().Set("x-amzn-RequestId", "REQ123")
	w.Header().Set("x-amz-crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// proxyEndpoint is an endpoint whose table "app" is in PROXY towards
// upstream table "up" served by f.
func proxyEndpoint(t *testing.T, upURL string) (*endpoint, *migrationtest.Control) {
	t.Helper()
	e := &endpoint{b: newTestBackend(t)}
	e.b.addTable(topology.Table{Name: "app", KeySchema: &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}}})
	ctl := migrationtest.New()
	ctl.Set(&migrationv1.Migration{Table: "app", Phase: migrationv1.Phase_PHASE_PROXY,
		Upstream: &migrationv1.Upstream{Endpoint: upURL, Table: "up", Region: "us-east-1"}})
	e.h = NewHandler(e.b, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Migration: MigrationOptions{
		Control: ctl, Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}})
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(func() { e.srv.Close(); e.h.Close() })
	return e, ctl
}

// TestUpstreamForwarding: a PROXY table's request reaches DynamoDB signed
// and renamed, and DynamoDB's answer comes back with its status, request
// id and a checksum of the body as sent.
func TestUpstreamForwarding(t *testing.T) {
	f := &fakeUpstream{status: http.StatusOK, body: `{"ConsumedCapacity":{"TableName":"up","CapacityUnits":1}}`}
	up := httptest.NewServer(f)
	defer up.Close()
	e, ctl := proxyEndpoint(t, up.URL)

	status, hdr, body := rawCall(t, e, http.MethodPost, targetPrefix+"PutItem", []byte(`{"TableName":"app","Item":{"pk":{"S":"a"}},"ReturnConsumedCapacity":"TOTAL"}`), nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var out struct{ ConsumedCapacity struct{ TableName string } }
	if err := json.Unmarshal(body, &out); err != nil || out.ConsumedCapacity.TableName != "app" {
		t.Fatalf("answer %s: the table name is not the client's", body)
	}
	if hdr.Get("x-amzn-RequestId") != "REQ123" {
		t.Errorf("x-amzn-RequestId %q", hdr.Get("x-amzn-RequestId"))
	}
	if c := hdr.Get("x-amz-crc32"); c != strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10) {
		t.Errorf("x-amz-crc32 %s does not match the body sent", c)
	}
	f.mu.Lock()
	r, sent := f.reqs[0], f.bodies[0]
	f.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKID/") ||
		!strings.Contains(r.Header.Get("Authorization"), "/us-east-1/dynamodb/aws4_request") {
		t.Errorf("not re-signed for the upstream: Authorization %q", r.Header.Get("Authorization"))
	}
	if r.Header.Get("X-Amz-Target") != targetPrefix+"PutItem" || !strings.Contains(sent, `"TableName":"up"`) {
		t.Errorf("forwarded %s %s", r.Header.Get("X-Amz-Target"), sent)
	}

	// DynamoDB's errors come back as they are.
	f.mu.Lock()
	f.status, f.body = http.StatusBadRequest, `{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}`
	f.mu.Unlock()
	status, _, body = rawCall(t, e, http.MethodPost, targetPrefix+"PutItem", []byte(`{"TableName":"app","Item":{"pk":{"S":"a"}}}`), nil)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "ConditionalCheckFailedException") {
		t.Fatalf("status %d: %s", status, body)
	}

	// An operation Veltrix lacks is forwarded too.
	status, _, _ = rawCall(t, e, http.MethodPost, targetPrefix+"TransactGetItems", []byte(`{"TransactItems":[{"Get":{"TableName":"app","Key":{"pk":{"S":"a"}}}}]}`), nil)
	f.mu.Lock()
	n, last := len(f.bodies), f.bodies[len(f.bodies)-1]
	f.mu.Unlock()
	if status != http.StatusBadRequest || n != 3 || !strings.Contains(last, `"TableName":"up"`) {
		t.Fatalf("TransactGetItems: status %d, forwarded %d, last %s", status, n, last)
	}

	// A batch naming the migrating table and another is refused.
	status, _, body = rawCall(t, e, http.MethodPost, targetPrefix+"BatchGetItem",
		[]byte(`{"RequestItems":{"app":{"Keys":[{"pk":{"S":"a"}}]},"other":{"Keys":[{"pk":{"S":"a"}}]}}}`), nil)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "ValidationException") {
		t.Fatalf("mixed batch: %d %s", status, body)
	}

	// In MIRROR, a write DynamoDB answered with a 5xx may have been
	// applied: it is re-synced (here that fails too, so it is queued) and
	// the client gets DynamoDB's answer.
	ctl.SetPhase("app", migrationv1.Phase_PHASE_MIRROR, 0)
	f.mu.Lock()
	f.status, f.body = http.StatusInternalServerError, `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}`
	f.mu.Unlock()
	status, _, body = rawCall(t, e, http.MethodPost, targetPrefix+"PutItem", []byte(`{"TableName":"app","Item":{"pk":{"S":"a"}}}`), nil)
	if status != http.StatusInternalServerError || !strings.Contains(string(body), "boom") || ctl.Pending() != 1 {
		t.Fatalf("5xx write: status %d %s, %d queued; want DynamoDB's answer and one queued re-sync", status, body, ctl.Pending())
	}
	// A refused write (4xx) is not re-synced.
	f.mu.Lock()
	f.status, f.body = http.StatusBadRequest, `{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"no"}`
	f.mu.Unlock()
	if status, _, _ = rawCall(t, e, http.MethodPost, targetPrefix+"PutItem", []byte(`{"TableName":"app","Item":{"pk":{"S":"b"}}}`), nil); status != http.StatusBadRequest || ctl.Pending() != 1 {
		t.Fatalf("refused write: status %d, %d queued", status, ctl.Pending())
	}
	ctl.SetPhase("app", migrationv1.Phase_PHASE_PROXY, 0)

	// An upstream that cannot be reached is ServiceUnavailable.
	up.Close()
	status, _, body = rawCall(t, e, http.MethodPost, targetPrefix+"GetItem", []byte(`{"TableName":"app","Key":{"pk":{"S":"a"}}}`), nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("upstream down: %d %s", status, body)
	}
}

// TestReplayDropsStaleSyncs: queued re-syncs of a table whose migration was
// deleted, or is DONE, are removed by the replay loop and counted; those of
// a table still mirroring stay until they are replayed.
func TestReplayDropsStaleSyncs(t *testing.T) {
	ctl := migrationtest.New()
	up := &migrationv1.Upstream{Endpoint: "http://127.0.0.1:1", Table: "up", Region: "us-east-1"}
	for table, p := range map[string]migrationv1.Phase{"app": migrationv1.Phase_PHASE_MIRROR, "gone": migrationv1.Phase_PHASE_MIRROR, "fin": migrationv1.Phase_PHASE_VELTRIX} {
		ctl.Set(&migrationv1.Migration{Table: table, Phase: p, Upstream: up})
	}
	ctx := t.Context()
	for _, q := range []struct{ table, key string }{{"app", "a"}, {"gone", "b"}, {"gone", "c"}, {"fin", "d"}} {
		if err := ctl.EnqueueSync(ctx, q.table, `{"pk":{"S":"`+q.key+`"}}`); err != nil {
			t.Fatal(err)
		}
	}
	ctl.Delete("gone")
	ctl.SetPhase("fin", migrationv1.Phase_PHASE_DONE, 0)
	metrics := NewMetrics(prometheus.NewRegistry())
	b := newTestBackend(t)
	b.addTable(topology.Table{Name: "app", KeySchema: &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}}})
	h := NewHandler(b, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Metrics: metrics, Migration: MigrationOptions{
		Control: ctl, ReplayInterval: 5 * time.Millisecond,
		// app's re-syncs keep failing, so its entry stays queued.
		SyncFault: func(string, ddb.Item) error { return errors.New("veltrix down") }}})
	defer h.Close()
	// The entries leave the queue before the drop is counted: wait for
	// both (reading the counter as soon as the queue shrank raced it).
	deadline := time.Now().Add(5 * time.Second)
	for ctl.Pending() != 1 || testutil.ToFloat64(metrics.syncsDropped) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d re-syncs queued, want only app's; %g drops counted, want 3",
				ctl.Pending(), testutil.ToFloat64(metrics.syncsDropped))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if left, _ := ctl.PendingSyncs(ctx, 10); len(left) != 1 || left[0].Table != "app" {
		t.Fatalf("queued: %v, want app's entry", left)
	}
	if n := testutil.ToFloat64(metrics.syncsDropped); n != 3 {
		t.Fatalf("veltrix_dynamodb_migration_syncs_dropped_total = %g, want 3", n)
	}
}

// TestUpstreamDefaultRegion: an upstream whose migration names no region
// (a document from before StartMigration stored one) is signed for
// MigrationOptions.Region, the router's AWS SDK default, not the
// endpoint's own region name.
func TestUpstreamDefaultRegion(t *testing.T) {
	f := &fakeUpstream{status: http.StatusOK, body: `{}`}
	up := httptest.NewServer(f)
	defer up.Close()
	e := &endpoint{b: newTestBackend(t)}
	e.b.addTable(topology.Table{Name: "app", KeySchema: &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}}})
	ctl := migrationtest.New()
	ctl.Set(&migrationv1.Migration{Table: "app", Phase: migrationv1.Phase_PHASE_PROXY, Upstream: &migrationv1.Upstream{Endpoint: up.URL, Table: "up"}})
	e.h = NewHandler(e.b, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Region: "veltrix", Migration: MigrationOptions{
		Control: ctl, Region: "eu-west-2", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}})
	e.srv = httptest.NewServer(e.h)
	defer func() { e.srv.Close(); e.h.Close() }()
	if status, _, body := rawCall(t, e, http.MethodPost, targetPrefix+"GetItem", []byte(`{"TableName":"app","Key":{"pk":{"S":"a"}}}`), nil); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	f.mu.Lock()
	auth := f.reqs[0].Header.Get("Authorization")
	f.mu.Unlock()
	if !strings.Contains(auth, "/eu-west-2/dynamodb/aws4_request") {
		t.Fatalf("signed for another region: Authorization %q", auth)
	}
}

// TestShadowConsistentRead: a shadow comparison reads Veltrix at QUORUM
// whatever the client asked for, and the rest of the request is kept.
func TestShadowConsistentRead(t *testing.T) {
	body, err := consistentRead("GetItem", []byte(`{"TableName":"t","Key":{"pk":{"S":"a<b"}},"consistentRead":false,"ProjectionExpression":"v"}`))
	if err != nil {
		t.Fatal(err)
	}
	var g getItemInput
	if err := decode(body, &g); err != nil || !g.ConsistentRead || g.TableName != "t" || *g.ProjectionExpression != "v" || g.Key["pk"] != ddb.S("a<b") {
		t.Fatalf("GetItem: %s → %+v, %v", body, g, err)
	}
	body, err = consistentRead("Query", []byte(`{"TableName":"t","KeyConditionExpression":"pk = :k","ExpressionAttributeValues":{":k":{"S":"a"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var q queryInput
	if err := decode(body, &q); err != nil || !q.ConsistentRead || *q.KeyConditionExpression != "pk = :k" {
		t.Fatalf("Query: %s → %+v, %v", body, q, err)
	}
	body, err = consistentRead("BatchGetItem", []byte(`{"requestItems":{"t":{"Keys":[{"pk":{"S":"a"}}],"ConsistentRead":false},"u":{"Keys":[{"pk":{"S":"b"}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var b batchGetItemInput
	if err := decode(body, &b); err != nil || len(b.RequestItems) != 2 {
		t.Fatalf("BatchGetItem: %s → %+v, %v", body, b, err)
	}
	for name, ka := range b.RequestItems {
		if ka.ConsistentRead == nil || !*ka.ConsistentRead || len(ka.Keys) != 1 {
			t.Fatalf("BatchGetItem table %s: %s", name, body)
		}
	}
	if _, err := consistentRead("GetItem", []byte(`{"TableName":`)); err == nil {
		t.Fatal("a malformed request was accepted")
	}
}
