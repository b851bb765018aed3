package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// Tests of the unary KV calls carried on KVService.Exchange
// (fake_exchange_test.go serves it).

// exFake starts a fake router serving Exchange over a store holding
// table, and a client of it.
func exFake(t *testing.T, opts ...client.Option) (*client.Client, *fakeRouter, *exchanger) {
	t.Helper()
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	f := startFakes(t, st, 1)[0]
	ex := serveExchange(f)
	return newClient(t, []string{f.addr}, opts...), f, ex
}

// sameStatus compares two errors' statuses: code, message and details.
func sameStatus(x, y error) bool {
	a, b := status.Convert(x), status.Convert(y)
	if a.Code() != b.Code() || a.Message() != b.Message() || len(a.Details()) != len(b.Details()) {
		return false
	}
	for i, d := range a.Details() {
		p, ok1 := d.(proto.Message)
		q, ok2 := b.Details()[i].(proto.Message)
		if !ok1 || !ok2 || !proto.Equal(p, q) {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// A liveness bound, generous: CI runs packages in parallel under the
	// race detector on two cores.
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 30s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// reqPK is the partition key of a single-key request ("" for others).
func reqPK(req proto.Message) string {
	if r, ok := req.(interface{ GetKey() *kvv1.Key }); ok {
		return string(r.GetKey().GetPartitionKey())
	}
	return ""
}

func pk(s string) *kvv1.Key { return &kvv1.Key{Table: table, PartitionKey: []byte(s)} }

// TestStreamParity: each method answers over the stream exactly as over
// the unary RPC (two fake routers over equal stores, one client of each),
// errors included, and the calls did go on the stream.
func TestStreamParity(t *testing.T) {
	cs, fs, exs := exFake(t)
	cu, fu, exu := exFake(t, client.WithStreams(false))
	type call func(kv kvv1.KVServiceClient) (proto.Message, error)
	wrap := func(m proto.Message, err error) (proto.Message, error) { return m, err }
	many := make([]*kvv1.Key, 1001)
	for i := range many {
		many[i] = pk("k")
	}
	calls := []struct {
		name string
		call call
	}{
		{"put", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Put(t.Context(), &kvv1.PutRequest{Key: pk("a"), Value: []byte("1")}))
		}},
		{"put sort key", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Put(t.Context(), &kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: []byte("a"), SortKey: []byte("s")}, Value: []byte("2")}))
		}},
		{"put versioned", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Put(t.Context(), &kvv1.PutRequest{Key: pk("a"), Value: []byte("old"), Version: 1 << 40}))
		}},
		{"get", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Get(t.Context(), &kvv1.GetRequest{Key: pk("a")}))
		}},
		{"get missing", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Get(t.Context(), &kvv1.GetRequest{Key: pk("nope")}))
		}},
		{"batch write", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.BatchWrite(t.Context(), &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
				{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: pk("b"), Value: []byte("3")},
				{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: pk("a")},
			}}))
		}},
		{"batch get", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.BatchGet(t.Context(), &kvv1.BatchGetRequest{Keys: []*kvv1.Key{pk("a"), pk("b"), pk("c")}}))
		}},
		{"query", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Query(t.Context(), &kvv1.QueryRequest{Table: table, PartitionKey: []byte("a"), Limit: 1}))
		}},
		{"delete", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Delete(t.Context(), &kvv1.DeleteRequest{Key: &kvv1.Key{Table: table, PartitionKey: []byte("a"), SortKey: []byte("s")}}))
		}},
		{"error not found", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Get(t.Context(), &kvv1.GetRequest{Key: &kvv1.Key{Table: "none", PartitionKey: []byte("a")}}))
		}},
		{"error invalid put", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Put(t.Context(), &kvv1.PutRequest{Key: pk("")}))
		}},
		{"error batch get", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.BatchGet(t.Context(), &kvv1.BatchGetRequest{Keys: many}))
		}},
		{"error query", func(kv kvv1.KVServiceClient) (proto.Message, error) {
			return wrap(kv.Query(t.Context(), &kvv1.QueryRequest{Table: table, PartitionKey: []byte("a"), Limit: 20000}))
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := c.call(cu.KV())
			got, gotErr := c.call(cs.KV())
			if !sameStatus(gotErr, wantErr) {
				t.Fatalf("over the stream: %v; unary: %v", gotErr, wantErr)
			}
			if wantErr == nil && !proto.Equal(got, want) {
				t.Fatalf("over the stream: %v; unary: %v", got, want)
			}
		})
	}

	// An error with details, as the router's fencing or quota errors carry.
	detailed, err := status.New(codes.FailedPrecondition, "table busy").WithDetails(&errdetails.ErrorInfo{
		Reason: "BUSY", Domain: "veltrix.router", Metadata: map[string]string{"table": table, "retry": "later"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fakeRouter{fs, fu} {
		f.setFail(func(context.Context, string) error { return detailed.Err() })
	}
	_, want := cu.KV().Get(t.Context(), &kvv1.GetRequest{Key: pk("a")})
	_, got := cs.KV().Get(t.Context(), &kvv1.GetRequest{Key: pk("a")})
	if !sameStatus(got, want) || len(status.Convert(got).Details()) != 1 {
		t.Fatalf("error with details over the stream: %v; unary: %v", status.Convert(got).Proto(), status.Convert(want).Proto())
	}

	n := int64(len(calls) + 1)
	if s, u := exs.streamed.Load(), fs.unary.Load(); s != n || u != 0 {
		t.Errorf("streaming client: %d calls on the stream and %d unary, want %d and 0", s, u, n)
	}
	if o, u := exu.opens.Load(), fu.unary.Load(); o != 0 || u != n {
		t.Errorf("client WithStreams(false): %d streams and %d unary calls, want 0 and %d", o, u, n)
	}
	if o := exs.opens.Load(); o != 1 {
		t.Errorf("%d streams opened, want 1: an error answer must not end the stream", o)
	}
}

// TestStreamConcurrent: many concurrent calls share the stream, each
// answered once with its own answer.
func TestStreamConcurrent(t *testing.T) {
	c, f, ex := exFake(t)
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k := fmt.Appendf(nil, "k%d", i)
			switch i % 3 {
			case 0:
				if _, err := c.Put(t.Context(), table, k, nil, k); err != nil {
					t.Errorf("put %s: %v", k, err)
				}
			case 1:
				if _, err := c.Put(t.Context(), table, k, nil, k); err != nil {
					t.Errorf("put %s: %v", k, err)
					return
				}
				it, found, err := c.Get(t.Context(), table, k, nil)
				if err != nil || !found || string(it.Value) != string(k) {
					t.Errorf("get %s: %q, %v, %v", k, it.Value, found, err)
				}
			case 2:
				r, err := c.KV().Put(t.Context(), &kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: k}, Version: uint64(1000 + i)})
				if err != nil || r.GetVersion() != uint64(1000+i) {
					t.Errorf("put %s: %v, %v", k, r, err)
				}
			}
		})
	}
	wg.Wait()
	if s, u, calls := ex.streamed.Load(), f.unary.Load(), f.calls.Load(); s != n+n/3 || u != 0 || calls != s {
		t.Errorf("%d calls on the stream, %d unary, %d in all; want %d, 0, %d", s, u, calls, n+n/3, n+n/3)
	}
	if o := ex.opens.Load(); o != 1 {
		t.Errorf("%d streams, want 1", o)
	}
	t.Logf("at most %d calls in one message", ex.maxCalls.Load())
}

// TestStreamDeadline: the call's deadline travels with it, and a call
// past it fails as the unary call does.
func TestStreamDeadline(t *testing.T) {
	cs, fs, ex := exFake(t)
	cu, fu, _ := exFake(t, client.WithStreams(false))
	var left atomic.Int64
	wait := func(ctx context.Context, _ string) error {
		d, ok := ctx.Deadline()
		if !ok {
			return status.Error(codes.Internal, "no deadline")
		}
		left.Store(int64(time.Until(d)))
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	fs.setFail(wait)
	fu.setFail(wait)
	for name, c := range map[string]*client.Client{"stream": cs, "unary": cu} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_, _, err := c.Get(ctx, table, []byte("k"), nil)
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%s: %v, want DeadlineExceeded", name, err)
		}
		if l := time.Duration(left.Load()); l <= 0 || l > 100*time.Millisecond {
			t.Fatalf("%s: the router saw %s left", name, l)
		}
	}
	if s := ex.streamed.Load(); s != 1 {
		t.Fatalf("%d calls on the stream, want 1", s)
	}
}

// TestStreamCancel: a cancelled call returns with the context's error
// without waiting for its answer, is cancelled on the router by a cancel
// frame, and its late answer is dropped without disturbing later calls.
func TestStreamCancel(t *testing.T) {
	c, _, ex := exFake(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	held := make(chan struct{}, 1)
	ex.hold = func(ctx context.Context, _ string, req proto.Message) error {
		if reqPK(req) == "slow" {
			held <- struct{}{}
			<-release // answers late, ignoring its cancellation
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, table, []byte("slow"), nil)
		done <- err
	}()
	<-held
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	waitFor(t, "the router cancels the call", func() bool { return ex.cancels.Load() == 1 })
	if _, _, err := c.Get(t.Context(), table, []byte("fast"), nil); err != nil {
		t.Fatalf("call after the cancel: %v", err)
	}
	releaseOnce.Do(func() { close(release) }) // the late answer arrives and is dropped
	if _, err := c.Put(t.Context(), table, []byte("after"), nil, []byte("v")); err != nil {
		t.Fatalf("call after the late answer: %v", err)
	}
	if it, _, err := c.Get(t.Context(), table, []byte("after"), nil); err != nil || string(it.Value) != "v" {
		t.Fatalf("get after the late answer: %q, %v", it.Value, err)
	}
	if o := ex.opens.Load(); o != 1 {
		t.Fatalf("%d streams, want 1", o)
	}
}

// TestStreamBreak: a stream that breaks fails its calls in flight with
// UNAVAILABLE, which the client retries as it retries a unary call (by
// the unary RPC during the backoff); later calls open a new stream.
func TestStreamBreak(t *testing.T) {
	for _, retries := range []int{0, client.DefaultMaxRetries} {
		t.Run(fmt.Sprint("retries=", retries), func(t *testing.T) {
			c, f, ex := exFake(t, client.WithMaxRetries(retries))
			var held atomic.Int64
			ex.hold = func(ctx context.Context, _ string, req proto.Message) error {
				if reqPK(req) == "held" && held.Add(1) <= 2 {
					<-ctx.Done() // until the stream breaks
					return ctx.Err()
				}
				return nil
			}
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					_, _, err := c.Get(t.Context(), table, []byte("held"), nil)
					errs <- err
				}()
			}
			waitFor(t, "both calls reach the router", func() bool { return held.Load() >= 2 })
			ex.breakStreams <- struct{}{}
			for range 2 {
				err := <-errs
				switch {
				case retries == 0 && status.Code(err) != codes.Unavailable:
					t.Fatalf("call in flight on the broken stream, no retries: %v, want Unavailable", err)
				case retries > 0 && err != nil:
					t.Fatalf("call in flight on the broken stream, retried: %v", err)
				}
			}
			if retries > 0 {
				// Retried once each: by the unary RPC during the stream's
				// backoff (or on a new stream after it).
				if u, s := f.unary.Load(), held.Load()-2; u+s != 2 {
					t.Fatalf("%d unary calls and %d on a new stream, want 2 retries", u, s)
				}
			}
			waitFor(t, "a new stream", func() bool {
				if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
					t.Fatal(err)
				}
				return ex.opens.Load() == 2
			})
			s := ex.streamed.Load()
			if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil || ex.streamed.Load() != s+1 {
				t.Fatalf("call on the new stream: %v; %d calls on streams, want %d", err, ex.streamed.Load(), s+1)
			}
		})
	}
}

// TestStreamUnimplemented: with a router that does not serve Exchange (an
// older version) every call succeeds by the unary RPC, and the stream is
// not tried again at once.
func TestStreamUnimplemented(t *testing.T) {
	c, f := setup(t, 1)
	if f[0].exchangeCalls.Load() != 1 {
		t.Fatalf("%d Exchange calls in the setup, want 1", f[0].exchangeCalls.Load())
	}
	f[0].unary.Store(0)
	for i := range 5 {
		k := fmt.Appendf(nil, "k%d", i)
		if _, err := c.Put(t.Context(), table, k, nil, k); err != nil {
			t.Fatal(err)
		}
		if it, _, err := c.Get(t.Context(), table, k, nil); err != nil || string(it.Value) != string(k) {
			t.Fatalf("get %s: %q, %v", k, it.Value, err)
		}
	}
	if u, e := f[0].unary.Load(), f[0].exchangeCalls.Load(); u != 10 || e != 1 {
		t.Fatalf("%d unary calls and %d Exchange calls, want 10 and 1", u, e)
	}
}

// TestStreamDrain: the calls a draining router did not take succeed by
// the unary RPC, the one it took by the stream, and the client closes the
// stream (the router's shutdown does not wait for it).
func TestStreamDrain(t *testing.T) {
	c, f, ex := exFake(t)
	ex.drain = true
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			k := fmt.Appendf(nil, "k%d", i)
			if _, err := c.Put(t.Context(), table, k, nil, k); err != nil {
				t.Errorf("put %s: %v", k, err)
			}
		})
	}
	wg.Wait()
	for i := range 10 {
		if it, _, err := c.Get(t.Context(), table, fmt.Appendf(nil, "k%d", i), nil); err != nil || string(it.Value) != fmt.Sprint("k", i) {
			t.Fatalf("get k%d: %q, %v", i, it.Value, err)
		}
	}
	// Each stream took one call (a call made after the drain's backoff
	// opens another).
	if s, o, u := ex.streamed.Load(), ex.opens.Load(), f.unary.Load(); s != o || s+u != 20 {
		t.Fatalf("%d calls on %d streams and %d unary; want one per stream, 20 in all", s, o, u)
	}
	waitFor(t, "the drained stream ends", func() bool { return ex.ended.Load() == ex.opens.Load() })
}

// TestStreamEndedUntaken: a stream the router ends cleanly without taking
// its calls (a draining router's stream whose first message came after the
// drain began) ran none of them: they go by the unary RPC, once, not fail
// with UNAVAILABLE.
func TestStreamEndedUntaken(t *testing.T) {
	c, f, ex := exFake(t, client.WithMaxRetries(0))
	ex.endAtFirst = true
	if _, err := c.Put(t.Context(), table, []byte("k"), nil, []byte("v")); err != nil {
		t.Fatalf("put on a stream ended untaken: %v", err)
	}
	if o, s, u := ex.opens.Load(), ex.streamed.Load(), f.unary.Load(); o != 1 || s != 0 || u != 1 {
		t.Fatalf("%d streams, %d calls on them, %d unary; want 1, 0, 1", o, s, u)
	}
}

// TestStreamSendBlocked: a caller whose call is held in the stream's send
// (the router runs as many of the stream's calls as it may and reads no
// more: flow control) still returns when its context ends.
func TestStreamSendBlocked(t *testing.T) {
	const workers = 256 // grpcx.MuxWorkers
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	// Static windows (no BDP growth): 64 KiB unread blocks the sender.
	f, err := startFake(st, grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Stop)
	ex := serveExchange(f)
	ex.workers = workers
	var held atomic.Int64
	ex.hold = func(ctx context.Context, _ string, _ proto.Message) error {
		held.Add(1)
		<-ctx.Done() // until the stream ends
		return ctx.Err()
	}
	// The held calls' deadlines (the default) do not end them meanwhile:
	// with the default 10 s a held send would wait up to that long.
	c := newClient(t, []string{f.addr}, client.WithMaxRetries(0), client.WithDefaultTimeout(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	// The router's pending read may take one whole message of calls (grpc
	// widens the window for a message being read), and one message holds
	// up to 128 calls: 200 × 8 KiB leaves at least 72 calls, 576 KiB, for
	// later messages, far more than the 64 KiB window and write quota.
	const n = 200
	errs := make(chan error, workers+n)
	for i := range workers {
		go func() {
			_, _, err := c.Get(ctx, table, fmt.Appendf(nil, "k%d", i), nil)
			errs <- err
		}()
	}
	waitFor(t, "the router's workers all busy", func() bool { return held.Load() == workers })
	for i := range n {
		go func() {
			_, err := c.Put(ctx, table, fmt.Appendf(nil, "p%d", i), nil, make([]byte, 8<<10))
			errs <- err
		}()
	}
	// A send held by flow control waits in grpc's write quota.
	waitFor(t, "a send held by flow control", func() bool {
		buf := make([]byte, 16<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*writeQuota).get"))
	})
	cancel()
	for i := range workers + n {
		select {
		case err := <-errs:
			if status.Code(err) != codes.Canceled {
				t.Errorf("call cancelled while a send was held: %v, want Canceled", err)
			}
		case <-time.After(30 * time.Second): // the held calls' deadline is an hour away
			t.Fatalf("%d of %d calls still running 30s after their context ended", workers+n-i, workers+n)
		}
	}
	ex.breakStreams <- struct{}{}
}

// TestStreamLargeRequest: a request over 256 KiB goes by the unary RPC.
func TestStreamLargeRequest(t *testing.T) {
	c, f, ex := exFake(t)
	if _, err := c.Put(t.Context(), table, []byte("big"), nil, make([]byte, 300<<10)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(t.Context(), table, []byte("small"), nil, make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	if s, u := ex.streamed.Load(), f.unary.Load(); s != 1 || u != 1 {
		t.Fatalf("%d calls on the stream and %d unary, want 1 and 1", s, u)
	}
}

// TestStreamOtherCalls: Scan, admin calls and calls with call options go
// by their own RPCs.
func TestStreamOtherCalls(t *testing.T) {
	c, f, ex := exFake(t)
	if _, err := c.ListTables(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Get(t.Context(), &kvv1.GetRequest{Key: pk("a")}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	if s, u := ex.streamed.Load(), f.unary.Load(); s != 0 || u != 2 {
		t.Fatalf("%d calls on the stream and %d unary, want 0 and 2", s, u)
	}
}

// TestStreamsSpread: with several routers each gets a stream of its own,
// and calls spread over them.
func TestStreamsSpread(t *testing.T) {
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	fs := startFakes(t, st, 3)
	var exs []*exchanger
	for _, f := range fs {
		exs = append(exs, serveExchange(f))
	}
	c := newClient(t, addrs(fs))
	waitFor(t, "calls on every router's stream", func() bool {
		if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
			t.Fatal(err)
		}
		return !slices.ContainsFunc(exs, func(ex *exchanger) bool { return ex.streamed.Load() == 0 })
	})
	for i, f := range fs {
		if u := f.unary.Load(); u != 0 {
			t.Errorf("router %d: %d unary calls, want 0", i, u)
		}
	}
}

// TestWithoutStreams: WithStreams(false) makes unary calls only.
func TestWithoutStreams(t *testing.T) {
	c, f, ex := exFake(t, client.WithStreams(false))
	for range 3 {
		if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if o, u := ex.opens.Load(), f.unary.Load(); o != 0 || u != 3 {
		t.Fatalf("%d streams and %d unary calls, want 0 and 3", o, u)
	}
}

// TestStreamTLSAndBearerToken: the stream is opened over TLS with the
// client's bearer token, like a unary call.
func TestStreamTLSAndBearerToken(t *testing.T) {
	cert, pool := selfSigned(t)
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	f, err := startFake(st, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Stop)
	ex := serveExchange(f)
	c := newClient(t, []string{f.addr}, client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), client.WithBearerToken("VXABC.secret"))
	if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
		t.Fatal(err)
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if len(ex.auth) != 1 || ex.auth[0] != "Bearer VXABC.secret" {
		t.Fatalf("authorization metadata of the stream %q", ex.auth)
	}
	if s, u := ex.streamed.Load(), f.unary.Load(); s != 1 || u != 0 {
		t.Fatalf("%d calls on the stream and %d unary, want 1 and 0", s, u)
	}
}

// TestStreamClose: closing the client fails its calls in flight on the
// stream with Canceled.
func TestStreamClose(t *testing.T) {
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	f := startFakes(t, st, 1)[0]
	ex := serveExchange(f)
	var held atomic.Int64
	ex.hold = func(ctx context.Context, _ string, _ proto.Message) error {
		held.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	c, err := client.New(t.Context(), []string{f.addr})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Get(t.Context(), table, []byte("k"), nil)
		done <- err
	}()
	waitFor(t, "the call reaches the router", func() bool { return held.Load() == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("call in flight at Close: %v, want Canceled", err)
	}
}

// TestStreamRefused: a router refusing the stream's credentials ran none
// of its calls: they go by the unary RPC, and the caller gets the unary
// RPC's error, not Unavailable (nor a retry).
func TestStreamRefused(t *testing.T) {
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	var refusedStreams atomic.Int64
	f, err := startFake(st, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod == kvv1.KVService_Exchange_FullMethodName {
			refusedStreams.Add(1)
			return status.Error(codes.Unauthenticated, "auth: unknown API key")
		}
		return h(srv, ss)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Stop)
	serveExchange(f)
	f.setFail(func(context.Context, string) error {
		return status.Error(codes.Unauthenticated, "auth: unknown API key")
	})
	unary := newClient(t, []string{f.addr}, client.WithStreams(false))
	_, want := unary.KV().Get(t.Context(), &kvv1.GetRequest{Key: pk("k")})
	for _, retries := range []int{0, client.DefaultMaxRetries} {
		c := newClient(t, []string{f.addr}, client.WithMaxRetries(retries))
		f.unary.Store(0)
		_, got := c.KV().Get(t.Context(), &kvv1.GetRequest{Key: pk("k")})
		if !sameStatus(got, want) {
			t.Fatalf("retries=%d: %v, want the unary RPC's %v", retries, got, want)
		}
		if u := f.unary.Load(); u != 1 {
			t.Fatalf("retries=%d: %d unary calls, want 1", retries, u)
		}
	}
	if r := refusedStreams.Load(); r != 2 {
		t.Fatalf("%d streams refused, want one per client", r)
	}
}

// TestStreamsSpreadAfterRestart: when a router restarts, its lane's stream
// moves to another router meanwhile, and back to it once it is up again.
func TestStreamsSpreadAfterRestart(t *testing.T) {
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	fs := startFakes(t, st, 2)
	exs := []*exchanger{serveExchange(fs[0]), serveExchange(fs[1])}
	c := newClient(t, addrs(fs))
	get := func() {
		t.Helper()
		if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "calls on both routers' streams", func() bool {
		get()
		return exs[0].streamed.Load() > 0 && exs[1].streamed.Load() > 0
	})
	fs[1].srv.Stop()
	waitFor(t, "both lanes on the router left", func() bool {
		get()
		return exs[0].opens.Load()-exs[0].ended.Load() == 2 // streams open
	})
	// The stopped router's port is ours until another process takes it;
	// a listener closing can hold it briefly, so retry (bounded).
	var f *fakeRouter
	var err error
	waitFor(t, "listening on the stopped router's address again", func() bool {
		f, err = startFakeAt(fs[1].addr, st)
		return err == nil
	})
	t.Cleanup(f.srv.Stop)
	ex := serveExchange(f)
	waitFor(t, "calls on the restarted router's stream", func() bool {
		get()
		return ex.streamed.Load() > 0
	})
}

// TestStreamDialOptionInterceptors: interceptors of WithDialOptions still
// see every attempt of a call carried on the stream.
func TestStreamDialOptionInterceptors(t *testing.T) {
	var seen atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		seen.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c, f, ex := exFake(t, client.WithDialOptions(grpc.WithChainUnaryInterceptor(count)))
	f.setFail(failWith(codes.Unavailable))
	if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("%v, want Unavailable after retries", err)
	}
	n := int64(client.DefaultMaxRetries + 1)
	if s, i := ex.streamed.Load(), seen.Load(); s != n || i != n {
		t.Fatalf("%d attempts on the stream, %d seen by the interceptor; want %d and %d", s, i, n, n)
	}
}
