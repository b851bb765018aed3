package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/auth"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"github.com/veltrixdb/veltrix/services/router/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const kvMethod = "/veltrix.kv.v1.KVService/"

// exchangeClient is a raw KVService.Exchange client: hand-built calls,
// results by id.
type exchangeClient struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[kvv1.ExchangeRequest, kvv1.ExchangeResponse]
}

func openExchange(t *testing.T, ctx context.Context, kv kvv1.KVServiceClient) *exchangeClient {
	t.Helper()
	st, err := kv.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &exchangeClient{t: t, stream: st}
}

func (x *exchangeClient) send(calls ...*muxv1.Call) {
	x.t.Helper()
	if err := x.stream.Send(&kvv1.ExchangeRequest{Calls: calls}); err != nil {
		x.t.Fatal(err)
	}
}

// results reads until n results came, failing on a duplicate or a
// draining notice.
func (x *exchangeClient) results(n int) map[uint64]*muxv1.Result {
	x.t.Helper()
	out := map[uint64]*muxv1.Result{}
	for len(out) < n {
		m, err := x.stream.Recv()
		if err != nil {
			x.t.Fatalf("after %d of %d results: %v", len(out), n, err)
		}
		if m.GetDraining() {
			x.t.Fatalf("unexpected draining notice: %v", m)
		}
		for _, r := range m.GetResults() {
			if out[r.GetId()] != nil {
				x.t.Fatalf("call %d answered twice", r.GetId())
			}
			out[r.GetId()] = r
		}
	}
	return out
}

// do runs one call on the stream and returns its result.
func (x *exchangeClient) do(id uint64, method string, req proto.Message) *muxv1.Result {
	x.t.Helper()
	x.send(kvCall(id, method, req))
	return x.results(1)[id]
}

func kvCall(id uint64, method string, req proto.Message) *muxv1.Call {
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return &muxv1.Call{Id: id, Method: kvMethod + method, Request: b}
}

// sameAsUnary fails unless r carries what the unary call answered: the
// same response bytes, or the same code, message and details.
func sameAsUnary(t *testing.T, what string, r *muxv1.Result, resp proto.Message, err error) {
	t.Helper()
	if err == nil {
		want, merr := proto.Marshal(resp)
		if merr != nil {
			t.Fatal(merr)
		}
		if r.GetCode() != 0 || string(r.GetResponse()) != string(want) {
			t.Errorf("%s: Exchange answered code %d %q response %x, unary %v (%x)", what, r.GetCode(), r.GetMessage(), r.GetResponse(), resp, want)
		}
		return
	}
	st := status.Convert(err).Proto()
	if r.GetCode() != st.GetCode() || r.GetMessage() != st.GetMessage() || len(r.GetResponse()) != 0 || len(r.GetDetails()) != len(st.GetDetails()) {
		t.Errorf("%s: Exchange answered code %d %q details %v, unary %v details %v", what, r.GetCode(), r.GetMessage(), r.GetDetails(), err, st.GetDetails())
		return
	}
	for i := range st.GetDetails() {
		if !proto.Equal(r.GetDetails()[i], st.GetDetails()[i]) {
			t.Errorf("%s: detail %d: Exchange %v, unary %v", what, i, r.GetDetails()[i], st.GetDetails()[i])
		}
	}
}

func counter(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func handled(method, code string) map[string]string {
	return map[string]string{"grpc_type": "unary", "grpc_service": "veltrix.kv.v1.KVService", "grpc_method": method, "grpc_code": code}
}

// TestExchange: KVService's unary calls framed on Exchange answer exactly as
// the unary RPCs (responses byte for byte, errors with their code, message
// and details), are counted under their own methods, honour deadlines,
// run concurrently; other methods are UNIMPLEMENTED; and a router shutting
// down drains the stream and returns.
func TestExchange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an in-process cluster (etcd, a storage node, a router); CI runs it without -short")
	}
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: t.TempDir(), Cluster: "xchg", Nodes: 1, Routers: 1, RF: 1, Partitions: 8,
		NoSync: true, CacheBytes: 1 << 20, ReadyTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc, err := grpc.NewClient(c.RouterAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	kv, admin := kvv1.NewKVServiceClient(cc), kvv1.NewAdminServiceClient(cc)
	ctx := t.Context()
	if _, err := admin.CreateTable(ctx, &kvv1.CreateTableRequest{Name: "ttt"}); err != nil {
		t.Fatal(err)
	}
	reg := c.Routers[0].Registry
	getsBefore := counter(t, reg, "grpc_server_handled_total", handled("Get", "OK"))
	// Bounded: a stream that does not drain on shutdown fails the test,
	// not hangs it.
	xctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	x := openExchange(t, xctx, kv)
	id := uint64(0)
	next := func() uint64 { id++; return id }
	key := func(pk string) *kvv1.Key {
		return &kvv1.Key{Table: "ttt", PartitionKey: []byte(pk), SortKey: []byte("s")}
	}
	// Writes carry their own versions, so the unary and the framed write
	// (of different keys) answer the same.
	const v1, v2 = 1_000_000, 2_000_000

	put := func(k *kvv1.Key) *kvv1.PutRequest {
		return &kvv1.PutRequest{Key: k, Value: []byte("value"), Version: v1}
	}
	up, uerr := kv.Put(ctx, put(key("u")))
	sameAsUnary(t, "Put", x.do(next(), "Put", put(key("x"))), up, uerr)
	get := func(k *kvv1.Key) *kvv1.GetRequest { return &kvv1.GetRequest{Key: k} }
	ug, uerr := kv.Get(ctx, get(key("u")))
	if !ug.GetFound() {
		t.Fatalf("unary Get after Put: %v %v", ug, uerr)
	}
	sameAsUnary(t, "Get", x.do(next(), "Get", get(key("u"))), ug, uerr)
	sameAsUnary(t, "Get of the framed Put", x.do(next(), "Get", get(key("x"))), ug, uerr)
	bw := func(pk string) *kvv1.BatchWriteRequest {
		return &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
			{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key(pk + "1"), Value: []byte("a"), Version: v1},
			{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key(pk + "2"), Value: []byte("b"), Version: v1},
		}}
	}
	ubw, uerr := kv.BatchWrite(ctx, bw("u"))
	sameAsUnary(t, "BatchWrite", x.do(next(), "BatchWrite", bw("x")), ubw, uerr)
	bg := &kvv1.BatchGetRequest{Keys: []*kvv1.Key{key("u1"), key("u2"), key("absent")}}
	ubg, uerr := kv.BatchGet(ctx, bg)
	sameAsUnary(t, "BatchGet", x.do(next(), "BatchGet", bg), ubg, uerr)
	del := func(k *kvv1.Key) *kvv1.DeleteRequest { return &kvv1.DeleteRequest{Key: k, Version: v2} }
	ud, uerr := kv.Delete(ctx, del(key("u")))
	sameAsUnary(t, "Delete", x.do(next(), "Delete", del(key("x"))), ud, uerr)
	q := &kvv1.QueryRequest{Table: "ttt", PartitionKey: []byte("u1")}
	uq, uerr := kv.Query(ctx, q)
	sameAsUnary(t, "Query", x.do(next(), "Query", q), uq, uerr)

	// Errors: the same code, message and details.
	for _, tc := range []struct {
		name   string
		method string
		req    proto.Message
		code   codes.Code
		inMsg  string
	}{
		{"invalid argument", "Put", &kvv1.PutRequest{Key: &kvv1.Key{Table: "ttt"}, Value: []byte("v")}, codes.InvalidArgument, "partition_key"},
		{"unknown table", "Get", &kvv1.GetRequest{Key: &kvv1.Key{Table: "nope", PartitionKey: []byte("k")}}, codes.NotFound, "nope"},
		{"bad consistency", "BatchGet", &kvv1.BatchGetRequest{Keys: []*kvv1.Key{key("u")}, Consistency: 42}, codes.InvalidArgument, "consistency"},
	} {
		uerr := cc.Invoke(ctx, kvMethod+tc.method, tc.req, responseOf(tc.method))
		if status.Code(uerr) != tc.code || !strings.Contains(status.Convert(uerr).Message(), tc.inMsg) {
			t.Fatalf("%s: unary %v, want %v naming %q", tc.name, uerr, tc.code, tc.inMsg)
		}
		sameAsUnary(t, tc.name, x.do(next(), tc.method, tc.req), nil, uerr)
	}
	// Invalid UTF-8 in a string field: InvalidArgument naming the field,
	// not grpc's Internal decode failure (the UTF-8 check applies).
	badKey := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("t\xff"))
	badKey = protowire.AppendBytes(protowire.AppendTag(badKey, 2, protowire.BytesType), []byte("pk"))
	badGet := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), badKey)
	x.send(&muxv1.Call{Id: next(), Method: kvMethod + "Get", Request: badGet})
	if r := x.results(1)[id]; codes.Code(r.GetCode()) != codes.InvalidArgument || r.GetMessage() != "key.table: not valid UTF-8" {
		t.Errorf("invalid UTF-8: %v", r)
	}

	// Not a unary KVService method: UNIMPLEMENTED naming it; the stream
	// goes on.
	for _, m := range []string{kvMethod + "Scan", kvMethod + "Exchange", "/veltrix.kv.v1.AdminService/ListTables", "nonsense"} {
		x.send(&muxv1.Call{Id: next(), Method: m})
		r := x.results(1)[id]
		if codes.Code(r.GetCode()) != codes.Unimplemented || !strings.Contains(r.GetMessage(), m) {
			t.Errorf("%s: %v, want UNIMPLEMENTED naming it", m, r)
		}
	}

	// A deadline that has passed: DEADLINE_EXCEEDED.
	late := kvCall(next(), "Get", get(key("u")))
	late.TimeoutMicros = 1
	x.send(late)
	if r := x.results(1)[id]; codes.Code(r.GetCode()) != codes.DeadlineExceeded {
		t.Errorf("1µs deadline: %v, want DEADLINE_EXCEEDED", r)
	}

	// Many calls at once, several per message: each answered once, right.
	const n = 300
	first := id + 1
	var batch []*muxv1.Call
	for i := range n {
		batch = append(batch, kvCall(next(), "Get", get(key(fmt.Sprint("x", 1+i%2)))))
		if len(batch) == 16 || i == n-1 {
			x.send(batch...)
			batch = nil
		}
	}
	got := x.results(n)
	for i := range n {
		var g kvv1.GetResponse
		r := got[first+uint64(i)]
		if err := proto.Unmarshal(r.GetResponse(), &g); err != nil || r.GetCode() != 0 || string(g.GetValue()) != string("ab"[i%2]) {
			t.Fatalf("concurrent call %d: %v %v", first+uint64(i), r, err)
		}
	}

	// Metrics: the framed Gets are counted under Get, as the unary one.
	if got := counter(t, reg, "grpc_server_handled_total", handled("Get", "OK")) - getsBefore; got != 1+2+n {
		t.Errorf("handled{Get, OK} grew by %v, want %d", got, 1+2+n)
	}
	if got := counter(t, reg, "grpc_server_handled_total", handled("Get", "DeadlineExceeded")); got != 1 {
		t.Errorf("handled{Get, DeadlineExceeded} = %v, want 1", got)
	}

	// Shutdown: the stream is told it drains with the last id taken, then
	// ends, and Close returns.
	closed := make(chan error, 1)
	go func() { closed <- c.StopRouter(0) }()
	m, err := x.stream.Recv()
	if err != nil || !m.GetDraining() || m.GetLastId() != id {
		t.Fatalf("on shutdown: %v %v, want draining with last_id %d", m, err, id)
	}
	if m, err := x.stream.Recv(); err != io.EOF {
		t.Fatalf("after the draining notice: %v %v, want the stream's end", m, err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("router shutdown hangs on an open Exchange stream")
	}
}

func responseOf(method string) proto.Message {
	switch method {
	case "Get":
		return &kvv1.GetResponse{}
	case "Put":
		return &kvv1.PutResponse{}
	case "BatchGet":
		return &kvv1.BatchGetResponse{}
	}
	panic(method)
}

// TestExchangeAuth: with --auth on, the stream needs credentials, and each
// framed call is checked by its own method's rule and audited like the
// unary call.
func TestExchangeAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an in-process cluster (etcd, a storage node, a router); CI runs it without -short")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "seal.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: dir, Cluster: "xauth", Nodes: 1, Routers: 1, RF: 1, Partitions: 8,
		NoSync: true, CacheBytes: 1 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
		RouterAuth: server.AuthConfig{Enabled: true, KeyFile: keyFile, Admins: []string{"root"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc, err := grpc.NewClient(c.RouterAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	kv, admin, authc := kvv1.NewKVServiceClient(cc), kvv1.NewAdminServiceClient(cc), authv1.NewAuthServiceClient(cc)
	ctx := t.Context()
	seal, err := auth.LoadSealKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(ctx, c.EtcdCli, "xauth", seal, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.SetGrants(ctx, "root", nil); err != nil {
		t.Fatal(err)
	}
	rootKey, err := st.CreateKey(ctx, "root", "test")
	if err != nil {
		t.Fatal(err)
	}
	root := rootKey.Token()
	waitFor(t, "the router knows root's key", func() bool {
		_, err := authc.ListPrincipals(bearer(ctx, root), &authv1.ListPrincipalsRequest{})
		return err == nil
	})
	if _, err := admin.CreateTable(bearer(ctx, root), &kvv1.CreateTableRequest{Name: "aaa"}); err != nil {
		t.Fatal(err)
	}
	if _, err := authc.SetGrants(bearer(ctx, root), &authv1.SetGrantsRequest{Principal: "reader",
		Grants: []*authv1.Grant{{Table: "aaa", Permission: authv1.Permission_PERMISSION_READ}}}); err != nil {
		t.Fatal(err)
	}
	ck, err := authc.CreateKey(bearer(ctx, root), &authv1.CreateKeyRequest{Principal: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	reader := ck.GetToken()
	k := &kvv1.Key{Table: "aaa", PartitionKey: []byte("k")}
	if _, err := kv.Put(bearer(ctx, root), &kvv1.PutRequest{Key: k, Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	x := openExchange(t, bearer(ctx, reader), kv)
	ug, uerr := kv.Get(bearer(ctx, reader), &kvv1.GetRequest{Key: k})
	if uerr != nil {
		t.Fatal(uerr)
	}
	sameAsUnary(t, "reader Get", x.do(1, "Get", &kvv1.GetRequest{Key: k}), ug, uerr)
	put := &kvv1.PutRequest{Key: k, Value: []byte("after")}
	_, uerr = kv.Put(bearer(ctx, reader), put)
	if status.Code(uerr) != codes.PermissionDenied {
		t.Fatalf("reader's unary Put: %v", uerr)
	}
	sameAsUnary(t, "reader Put", x.do(2, "Put", put), nil, uerr)
	g, err := kv.Get(bearer(ctx, root), &kvv1.GetRequest{Key: k})
	if err != nil || string(g.GetValue()) != "before" {
		t.Fatalf("after the refused Puts: %v %v, want the value unchanged", g, err)
	}

	// No credentials: the stream itself is refused.
	y := openExchange(t, ctx, kv)
	y.send(kvCall(1, "Get", &kvv1.GetRequest{Key: k}))
	if m, err := y.stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream without credentials: %v %v, want UNAUTHENTICATED", m, err)
	}

	// Audited like the unary calls: the refused Put twice (unary and
	// framed), the refused stream once.
	out := logs.String()
	denied := `outcome=denied subject=reader via=token key_id=` + ck.GetKey().GetId() + ` op=/veltrix.kv.v1.KVService/Put table=aaa need=write`
	if n := strings.Count(out, denied); n != 2 {
		t.Errorf("audit log has %d lines %q, want 2", n, denied)
	}
	noCreds := `outcome=denied subject="" via="" key_id="" op=/veltrix.kv.v1.KVService/Exchange table="" need=none reason="missing credentials"`
	if !strings.Contains(out, noCreds) {
		t.Errorf("audit log lacks %q", noCreds)
	}
}
