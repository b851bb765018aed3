package grpcx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const muxSvc = "/grpcx.test.Mux/"

// muxImpl serves the test service's unary methods. Hold waits for release
// (or its context); Barrier returns once barrier calls are in it at once.
type muxImpl struct {
	release chan struct{}
	mu      sync.Mutex
	arrived int
	all     chan struct{}
	barrier int
	// holding is the number of Hold calls running, maxHolding its peak.
	holding, maxHolding int
}

func (m *muxImpl) echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	switch in.GetValue() {
	case "fail":
		st, err := status.New(codes.NotFound, "no such thing").WithDetails(wrapperspb.String("detail"))
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case "plain error":
		return nil, errors.New("not a status")
	case "panic":
		panic("boom")
	case "meta":
		err := grpc.SetHeader(ctx, metadata.Pairs("k", "v"))
		method, _ := grpc.Method(ctx)
		return wrapperspb.String(fmt.Sprintf("%s|%v", method, err != nil)), nil
	}
	return wrapperspb.String("echo:" + in.GetValue()), nil
}

func (m *muxImpl) hold(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	m.mu.Lock()
	m.holding++
	m.maxHolding = max(m.maxHolding, m.holding)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.holding--
		m.mu.Unlock()
	}()
	select {
	case <-m.release:
		return wrapperspb.String("released"), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *muxImpl) meetAll(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	m.mu.Lock()
	m.arrived++
	if m.arrived == m.barrier {
		close(m.all)
	}
	m.mu.Unlock()
	select {
	case <-m.all:
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func muxMethod(name string, f func(*muxImpl, context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			return f(srv.(*muxImpl), ctx, req.(*wrapperspb.StringValue))
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: muxSvc + name}, h)
	}}
}

// muxExchange adapts a raw bidi stream carrying kvv1's Exchange messages.
type muxExchange struct{ grpc.ServerStream }

func (s muxExchange) RecvCalls() ([]*muxv1.Call, error) {
	var req kvv1.ExchangeRequest
	if err := s.RecvMsg(&req); err != nil {
		return nil, err
	}
	return req.GetCalls(), nil
}

func (s muxExchange) SendResults(r []*muxv1.Result, draining bool, lastID uint64) error {
	return s.SendMsg(&kvv1.ExchangeResponse{Results: r, Draining: draining, LastId: lastID})
}

type muxTest struct {
	srv  *Server
	impl *muxImpl
	cc   *grpc.ClientConn
	reg  *prometheus.Registry
	// calls lists the methods the service's own unary interceptor saw.
	mu    sync.Mutex
	calls []string
}

// startMuxServer serves the test service, whose Exchange stream carries
// Echo, Hold and Barrier (not Other), with CheckUTF8 and a unary
// interceptor refusing calls without "authorization: ok" metadata.
func startMuxServer(t testing.TB) *muxTest {
	t.Helper()
	mt := &muxTest{reg: prometheus.NewRegistry(), impl: &muxImpl{release: make(chan struct{}), all: make(chan struct{})}}
	var mux *Mux
	desc := &grpc.ServiceDesc{
		ServiceName: "grpcx.test.Mux",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			muxMethod("Echo", (*muxImpl).echo), muxMethod("Hold", (*muxImpl).hold),
			muxMethod("Barrier", (*muxImpl).meetAll), muxMethod("Other", (*muxImpl).echo),
		},
		Streams: []grpc.StreamDesc{{StreamName: "Exchange", ClientStreams: true, ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error { return mux.Serve(muxExchange{ss}) }}},
	}
	auth := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mt.mu.Lock()
		mt.calls = append(mt.calls, info.FullMethod)
		mt.mu.Unlock()
		if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) != 1 || v[0] != "ok" {
			return nil, status.Error(codes.Unauthenticated, "no authorization")
		}
		return handler(ctx, req)
	}
	mt.srv = NewServer(ServerOptions{
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registerer: mt.reg,
		CheckUTF8: true, Unary: []grpc.UnaryServerInterceptor{auth},
	})
	mt.srv.RegisterService(desc, mt.impl)
	var err error
	mux, err = mt.srv.NewMux([]string{muxSvc + "Echo", muxSvc + "Hold", muxSvc + "Barrier"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mt.srv.NewMux([]string{muxSvc + "Exchange"}); err == nil {
		t.Fatal("NewMux accepted a streaming method")
	}
	mt.srv.InitMetrics()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = mt.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		mt.srv.Stop()
		<-served
	})
	mt.cc, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mt.cc.Close() })
	return mt
}

func authorized(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "ok")
}

// rawExchange is a test client of an Exchange stream.
type rawExchange struct {
	t  *testing.T
	cs grpc.ClientStream
}

func (mt *muxTest) open(t *testing.T, ctx context.Context) *rawExchange {
	t.Helper()
	cs, err := mt.cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, muxSvc+"Exchange")
	if err != nil {
		t.Fatal(err)
	}
	return &rawExchange{t: t, cs: cs}
}

func (x *rawExchange) send(calls ...*muxv1.Call) {
	x.t.Helper()
	if err := x.cs.SendMsg(&kvv1.ExchangeRequest{Calls: calls}); err != nil {
		x.t.Fatal(err)
	}
}

func (x *rawExchange) recv() (*kvv1.ExchangeResponse, error) {
	var m kvv1.ExchangeResponse
	if err := x.cs.RecvMsg(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// results reads messages until n results came, failing on a duplicate id.
func (x *rawExchange) results(n int) map[uint64]*muxv1.Result {
	x.t.Helper()
	out := map[uint64]*muxv1.Result{}
	for len(out) < n {
		m, err := x.recv()
		if err != nil {
			x.t.Fatalf("after %d of %d results: %v", len(out), n, err)
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

func call(id uint64, method string, req proto.Message) *muxv1.Call {
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return &muxv1.Call{Id: id, Method: method, Request: b}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// rawBytes is a request sent as is (rawCodec), for requests protobuf
// would not marshal (invalid UTF-8, truncated).
type rawBytes []byte

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawBytes))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// TestMuxAnswersAsUnary: every call answers, fails, records metrics and
// goes through the interceptors as the unary RPC does.
func TestMuxAnswersAsUnary(t *testing.T) {
	mt := startMuxServer(t)
	ctx := authorized(t.Context())
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("x\xff"))
	cases := []struct {
		name string
		req  []byte
	}{
		{"ok", mustMarshal(wrapperspb.String("hi"))},
		{"details", mustMarshal(wrapperspb.String("fail"))},
		{"plain error", mustMarshal(wrapperspb.String("plain error"))},
		{"panic", mustMarshal(wrapperspb.String("panic"))},
		{"meta", mustMarshal(wrapperspb.String("meta"))},
		{"bad UTF-8", badUTF8},
		{"garbage", []byte{0x0a, 0x05, 'x'}},
	}
	x := mt.open(t, ctx)
	for i, tc := range cases {
		x.send(&muxv1.Call{Id: uint64(i + 1), Method: muxSvc + "Echo", Request: tc.req})
	}
	got := x.results(len(cases))
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out wrapperspb.StringValue
			err := mt.cc.Invoke(ctx, muxSvc+"Echo", rawBytes(tc.req), &out, grpc.ForceCodecV2(rawCodec{}))
			r := got[uint64(i+1)]
			if tc.name == "meta" {
				// grpc.Method names the inner method; the call has no
				// headers of its own to set (unary: it has).
				var m wrapperspb.StringValue
				if err := proto.Unmarshal(r.GetResponse(), &m); err != nil || m.GetValue() != muxSvc+"Echo|true" || out.GetValue() != muxSvc+"Echo|false" {
					t.Fatalf("mux %q (%v), unary %q %v", m.GetValue(), err, out.GetValue(), err)
				}
				return
			}
			if err == nil {
				if r.GetCode() != 0 || string(r.GetResponse()) != string(mustMarshal(&out)) {
					t.Fatalf("mux %v, unary %v", r, &out)
				}
				return
			}
			want := status.Convert(err).Proto()
			if r.GetCode() == 0 || r.GetCode() != want.GetCode() || r.GetMessage() != want.GetMessage() || len(r.GetResponse()) != 0 {
				t.Fatalf("mux code %d %q, unary %v", r.GetCode(), r.GetMessage(), err)
			}
			if len(r.GetDetails()) != len(want.GetDetails()) {
				t.Fatalf("mux details %v, unary %v", r.GetDetails(), want.GetDetails())
			}
			for j := range want.GetDetails() {
				if !proto.Equal(r.GetDetails()[j], want.GetDetails()[j]) {
					t.Fatalf("detail %d: mux %v, unary %v", j, r.GetDetails()[j], want.GetDetails()[j])
				}
			}
		})
	}
	if r := got[2]; len(r.GetDetails()) != 1 || codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("details case: %v", r)
	}
	if r := got[6]; codes.Code(r.GetCode()) != codes.InvalidArgument || r.GetMessage() != "value: not valid UTF-8" {
		t.Fatalf("bad UTF-8: %v", r)
	}

	// Not allowed on the stream: UNIMPLEMENTED naming it, and the stream
	// goes on.
	x.send(call(100, muxSvc+"Other", wrapperspb.String("x")), call(101, "/grpcx.test.Svc/OK", wrapperspb.String("x")),
		call(102, muxSvc+"Echo", wrapperspb.String("after")))
	got = x.results(3)
	for _, id := range []uint64{100, 101} {
		if codes.Code(got[id].GetCode()) != codes.Unimplemented {
			t.Fatalf("call %d: %v, want UNIMPLEMENTED", id, got[id])
		}
	}
	if got[100].GetMessage() != "grpcx: method "+muxSvc+"Other is not served on this stream" {
		t.Fatalf("message %q does not name the method", got[100].GetMessage())
	}
	var after wrapperspb.StringValue
	if err := proto.Unmarshal(got[102].GetResponse(), &after); err != nil || after.GetValue() != "echo:after" {
		t.Fatalf("after an unknown method: %v %v", got[102], err)
	}

	// The stream's metadata reaches each call's interceptors: without it
	// every call is refused by the service's interceptor.
	y := mt.open(t, t.Context())
	y.send(call(1, muxSvc+"Echo", wrapperspb.String("hi")))
	if r := y.results(1)[1]; codes.Code(r.GetCode()) != codes.Unauthenticated {
		t.Fatalf("without metadata: %v", r)
	}
	if err := x.cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := x.recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want the stream's end", err)
	}

	// Metrics: every Echo counted under the inner method, unary, by code:
	// the cases twice (unary and mux), "after" and the refused call once;
	// the garbage request fails in decoding, before the interceptors.
	echo := map[string]string{"grpc_type": "unary", "grpc_service": "grpcx.test.Mux", "grpc_method": "Echo"}
	for code, want := range map[string]float64{"OK": 2*2 + 1, "NotFound": 2, "Unknown": 2, "Internal": 2, "InvalidArgument": 2, "Unauthenticated": 1} {
		l := map[string]string{"grpc_code": code}
		for k, v := range echo {
			l[k] = v
		}
		if v, _ := value(t, mt.reg, "grpc_server_handled_total", l); v != want {
			t.Errorf("handled{Echo, %s} = %v, want %v", code, v, want)
		}
	}
	mt.mu.Lock()
	defer mt.mu.Unlock()
	for _, m := range mt.calls {
		if m != muxSvc+"Echo" {
			t.Errorf("the interceptor saw %s", m)
		}
	}
}

// TestMuxDeadlineCancelConcurrency: a call's deadline and cancel reach its
// context; calls run concurrently and each is answered once.
func TestMuxDeadlineCancelConcurrency(t *testing.T) {
	mt := startMuxServer(t)
	x := mt.open(t, authorized(t.Context()))
	deadline := call(1, muxSvc+"Hold", wrapperspb.String(""))
	deadline.TimeoutMicros = 1000
	x.send(deadline, call(2, muxSvc+"Hold", wrapperspb.String("")))
	if r := x.results(1)[1]; codes.Code(r.GetCode()) != codes.DeadlineExceeded {
		t.Fatalf("deadline: %v", r)
	}
	x.send(&muxv1.Call{Id: 2, Cancel: true})
	if r := x.results(1)[2]; codes.Code(r.GetCode()) != codes.Canceled {
		t.Fatalf("cancel: %v", r)
	}

	// Barrier returns only once all n calls are in it together: they run
	// concurrently (n is within MuxWorkers), and each is answered once.
	const n = 200
	mt.impl.barrier = n
	var calls []*muxv1.Call
	for i := range n {
		calls = append(calls, call(uint64(1000+i), muxSvc+"Barrier", wrapperspb.String(fmt.Sprint(i))))
		if len(calls) == 7 || i == n-1 {
			x.send(calls...)
			calls = nil
		}
	}
	got := x.results(n)
	for i := range n {
		var v wrapperspb.StringValue
		r := got[uint64(1000+i)]
		if err := proto.Unmarshal(r.GetResponse(), &v); err != nil || r.GetCode() != 0 || v.GetValue() != fmt.Sprint(i) {
			t.Fatalf("call %d: %v %v", 1000+i, r, err)
		}
	}
}

// TestMuxLongTimeout: a timeout longer than a time.Duration holds (in
// nanoseconds, ~292 years) is as long as one can be, as grpc clamps a
// unary call's grpc-timeout, not one already past by overflow.
func TestMuxLongTimeout(t *testing.T) {
	mt := startMuxServer(t)
	x := mt.open(t, authorized(t.Context()))
	timeouts := []int64{math.MaxInt64, math.MaxInt64/1000 + 1}
	for i, us := range timeouts {
		c := call(uint64(i+1), muxSvc+"Hold", wrapperspb.String(""))
		c.TimeoutMicros = us
		x.send(c)
	}
	for i := range timeouts {
		x.send(&muxv1.Call{Id: uint64(i + 1), Cancel: true})
	}
	for id, r := range x.results(len(timeouts)) {
		if codes.Code(r.GetCode()) != codes.Canceled {
			t.Errorf("call %d (timeout %d µs): %v, want Canceled (held until its cancel)", id, timeouts[id-1], r)
		}
	}
}

// TestMuxDrain: on Shutdown a stream says it drains with the last id it
// took, runs no later call, answers the calls it took and ends, and
// Shutdown returns; a stream that never received a message just ends.
func TestMuxDrain(t *testing.T) {
	mt := startMuxServer(t)
	// Bounded: a stream that does not drain fails the test, not hangs it.
	ctx, cancel := context.WithTimeout(authorized(t.Context()), time.Minute)
	defer cancel()
	x := mt.open(t, ctx)
	idle := mt.open(t, ctx)
	x.send(call(7, muxSvc+"Hold", wrapperspb.String("")), call(8, muxSvc+"Echo", wrapperspb.String("a")))
	if r := x.results(1)[8]; r.GetCode() != 0 {
		t.Fatalf("echo: %v", r)
	}
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		mt.srv.Shutdown(sctx)
	}()
	m, err := x.recv()
	if err != nil || !m.GetDraining() || m.GetLastId() != 8 || len(m.GetResults()) != 0 {
		t.Fatalf("first message after Shutdown: %v %v, want draining with last_id 8", m, err)
	}
	// Not taken: no answer. The held call is answered once released.
	x.send(call(9, muxSvc+"Echo", wrapperspb.String("late")))
	close(mt.impl.release)
	r := x.results(1)[7]
	if r.GetCode() != 0 {
		t.Fatalf("held call: %v", r)
	}
	if m, err := x.recv(); err != io.EOF {
		t.Fatalf("after the drain: %v %v, want the stream's end", m, err)
	}
	if m, err := idle.recv(); err != io.EOF {
		t.Fatalf("idle stream: %v %v, want its end", m, err)
	}
	select {
	case <-shut:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return with drained streams")
	}
}

// TestMuxWorkersBounded: a stream runs at most MuxWorkers calls at once;
// the others wait (unread) and run as workers free up.
func TestMuxWorkersBounded(t *testing.T) {
	mt := startMuxServer(t)
	ctx, cancel := context.WithTimeout(authorized(t.Context()), time.Minute)
	defer cancel()
	x := mt.open(t, ctx)
	const n = MuxWorkers + 40
	var calls []*muxv1.Call
	for i := range n {
		calls = append(calls, call(uint64(i+1), muxSvc+"Hold", wrapperspb.String("")))
	}
	x.send(calls[:n/2]...)
	x.send(calls[n/2:]...)
	holding := func() int {
		mt.impl.mu.Lock()
		defer mt.impl.mu.Unlock()
		return mt.impl.holding
	}
	for deadline := time.Now().Add(30 * time.Second); holding() < MuxWorkers; {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls running, want %d", holding(), MuxWorkers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(mt.impl.release)
	got := x.results(n)
	for id, r := range got {
		if r.GetCode() != 0 {
			t.Fatalf("call %d: %v", id, r)
		}
	}
	mt.impl.mu.Lock()
	defer mt.impl.mu.Unlock()
	if mt.impl.maxHolding != MuxWorkers {
		t.Fatalf("at most %d calls ran at once, want %d (MuxWorkers)", mt.impl.maxHolding, MuxWorkers)
	}
}
