package storagemux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/storagemux"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a fake storage node: read answers Read (and, key by key,
// BatchRead; Apply echoes outcomes); it serves Exchange as the storage
// node does (calls concurrently, answers by id, errors as statuses) unless
// noExchange.
type node struct {
	storagev1.UnimplementedStorageServiceServer
	read func(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error)
	// applyFn, if set, answers Apply (otherwise every record is applied).
	applyFn    func(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error)
	noExchange bool
	// drain: the stream answers its first message by draining, taking
	// none of its calls (as a node shutting down).
	drain bool

	unary, streams, cancels atomic.Int64
	ended                   atomic.Int64 // Exchange handlers returned
	maxCalls                atomic.Int64 // most calls seen in one message
	breakStreams            chan struct{}
}

func (n *node) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	n.unary.Add(1)
	return n.read(ctx, req)
}

func (n *node) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	n.unary.Add(1)
	return n.batchRead(ctx, req)
}

func (n *node) batchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	resp := &storagev1.BatchReadResponse{}
	for _, k := range req.GetKeys() {
		r, err := n.read(ctx, &storagev1.ReadRequest{Key: k})
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (n *node) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	n.unary.Add(1)
	return n.apply(ctx, req)
}

func (n *node) apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	if n.applyFn != nil {
		return n.applyFn(ctx, req)
	}
	return apply(req), nil
}

func apply(req *storagev1.ApplyRequest) *storagev1.ApplyResponse {
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
		resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
	}
	return resp
}

func (n *node) Exchange(stream storagev1.StorageService_ExchangeServer) error {
	if n.noExchange {
		return status.Error(codes.Unimplemented, "unknown method Exchange")
	}
	n.streams.Add(1)
	defer n.ended.Add(1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()    // before wg.Wait: ends the calls in flight
	var mu sync.Mutex // guards Send and calls
	calls := map[uint64]context.CancelFunc{}
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			n.maxCalls.Store(max(n.maxCalls.Load(), int64(len(req.GetCalls()))))
			if n.drain {
				mu.Lock()
				_ = stream.Send(&storagev1.ExchangeResponse{Draining: true, LastId: 0})
				mu.Unlock()
				continue
			}
			for _, c := range req.GetCalls() {
				mu.Lock()
				if c.GetCancel() {
					if cancel := calls[c.GetId()]; cancel != nil {
						n.cancels.Add(1)
						cancel()
					}
					mu.Unlock()
					continue
				}
				cctx, ccancel := context.WithCancel(ctx)
				if us := c.GetTimeoutMicros(); us > 0 {
					cctx, ccancel = context.WithTimeout(ctx, time.Duration(us)*time.Microsecond)
				}
				calls[c.GetId()] = ccancel
				wg.Add(1)
				mu.Unlock()
				go func() {
					defer wg.Done()
					defer ccancel()
					res := &storagev1.ExchangeResult{Id: c.GetId()}
					var err error
					switch r := c.GetRequest().(type) {
					case *storagev1.ExchangeCall_Read:
						var resp *storagev1.ReadResponse
						if resp, err = n.read(cctx, r.Read); err == nil {
							res.Response = &storagev1.ExchangeResult_Read{Read: resp}
						}
					case *storagev1.ExchangeCall_BatchRead:
						var resp *storagev1.BatchReadResponse
						if resp, err = n.batchRead(cctx, r.BatchRead); err == nil {
							res.Response = &storagev1.ExchangeResult_BatchRead{BatchRead: resp}
						}
					case *storagev1.ExchangeCall_Apply:
						var resp *storagev1.ApplyResponse
						if resp, err = n.apply(cctx, r.Apply); err == nil {
							res.Response = &storagev1.ExchangeResult_Apply{Apply: resp}
						}
					}
					if err != nil {
						st := status.Convert(err)
						res.Code, res.Message, res.Details = int32(st.Code()), st.Message(), st.Proto().GetDetails()
					}
					mu.Lock()
					delete(calls, c.GetId())
					if ctx.Err() != nil { // the stream is ending: no answer
						mu.Unlock()
						return
					}
					_ = stream.Send(&storagev1.ExchangeResponse{Results: []*storagev1.ExchangeResult{res}})
					mu.Unlock()
				}()
			}
		}
	}()
	select {
	case err := <-recvErr:
		if err == io.EOF {
			return nil
		}
		return err
	case <-n.breakStreams:
		return status.Error(codes.Internal, "stream broken by the test")
	}
}

// serve serves n over bufconn and returns a Client of it.
func serve(t testing.TB, n *node, o storagemux.Options) (*storagemux.Client, storagev1.StorageServiceClient) {
	t.Helper()
	if n.breakStreams == nil {
		n.breakStreams = make(chan struct{})
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	storagev1.RegisterStorageServiceServer(srv, n)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///node",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := storagemux.New(conn, o)
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
		srv.Stop()
		<-served
	})
	return c, storagev1.NewStorageServiceClient(conn)
}

func key(pk string) *storagev1.Key { return &storagev1.Key{TableId: 1, PartitionKey: []byte(pk)} }

// echo answers a read with the key's partition key as the value.
func echo(_ context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	return &storagev1.ReadResponse{Found: true, Record: &storagev1.Record{Version: 1, Value: req.GetKey().GetPartitionKey()}}, nil
}

// TestConcurrent: many concurrent calls of every kind share one stream,
// each gets its own answer, and calls waiting together go in one message.
func TestConcurrent(t *testing.T) {
	n := &node{read: echo}
	c, _ := serve(t, n, storagemux.Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Go(func() {
			pk := fmt.Sprint("k", i)
			switch i % 3 {
			case 0:
				r, err := c.Read(ctx, &storagev1.ReadRequest{Key: key(pk)})
				if err != nil || string(r.GetRecord().GetValue()) != pk {
					errs <- fmt.Errorf("read %s: %v, %v", pk, r, err)
				}
			case 1:
				r, err := c.BatchRead(ctx, &storagev1.BatchReadRequest{Keys: []*storagev1.Key{key(pk), key(pk + "b")}})
				if err != nil || len(r.GetResults()) != 2 || string(r.GetResults()[1].GetRecord().GetValue()) != pk+"b" {
					errs <- fmt.Errorf("batch read %s: %v, %v", pk, r, err)
				}
			case 2:
				r, err := c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(pk), Version: uint64(i)}}})
				if err != nil || r.GetCurrentVersions()[0] != uint64(i) {
					errs <- fmt.Errorf("apply %s: %v, %v", pk, r, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s, u := n.streams.Load(), n.unary.Load(); s != 1 || u != 0 {
		t.Errorf("%d streams and %d unary calls, want 1 and 0", s, u)
	}
	if m := n.maxCalls.Load(); m < 2 {
		t.Logf("no message carried more than one call (max %d): the scheduler never let calls wait together", m)
	}
}

// TestCancel: a cancelled call returns at once with the unary RPC's
// error, frees its slot, is cancelled on the node, and its late answer is
// dropped without disturbing the next call.
func TestCancel(t *testing.T) {
	release := make(chan struct{})
	n := &node{read: func(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
		if string(req.GetKey().GetPartitionKey()) == "slow" {
			<-release // answers late, ignoring its cancellation
		}
		return echo(ctx, req)
	}}
	c, _ := serve(t, n, storagemux.Options{MaxInFlight: 1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx, &storagev1.ReadRequest{Key: key("slow")})
		done <- err
	}()
	waitFor(t, func() bool { return n.streams.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	cancel()
	err := <-done
	if want := status.FromContextError(context.Canceled).Err(); !sameStatus(err, want) {
		t.Fatalf("cancelled call: %v, want %v", err, want)
	}
	waitFor(t, func() bool { return n.cancels.Load() == 1 })
	// The only slot is free again: the next call does not wait for the
	// slow one's answer.
	r, err := c.Read(t.Context(), &storagev1.ReadRequest{Key: key("fast")})
	if err != nil || string(r.GetRecord().GetValue()) != "fast" {
		t.Fatalf("call after the cancel: %v, %v", r, err)
	}
	close(release) // the late answer arrives and is dropped
	r, err = c.Read(t.Context(), &storagev1.ReadRequest{Key: key("after")})
	if err != nil || string(r.GetRecord().GetValue()) != "after" {
		t.Fatalf("call after the late answer: %v, %v", r, err)
	}
}

// TestDeadline: the caller's deadline travels with the call, and a call
// past it fails as the unary call does.
func TestDeadline(t *testing.T) {
	var left atomic.Int64
	n := &node{read: func(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return nil, status.Error(codes.Internal, "no deadline")
		}
		left.Store(int64(time.Until(d)))
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	c, unary := serve(t, n, storagemux.Options{})
	for name, cl := range map[string]storagev1.StorageServiceClient{"mux": c, "unary": unary} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_, err := cl.Read(ctx, &storagev1.ReadRequest{Key: key("k")})
		cancel()
		if want := status.FromContextError(context.DeadlineExceeded).Err(); !sameStatus(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if l := time.Duration(left.Load()); l <= 0 || l > 100*time.Millisecond {
			t.Fatalf("%s: the node saw %s left", name, l)
		}
	}
}

// TestBreak: a stream that breaks fails its calls in flight with
// UNAVAILABLE; calls go by the unary RPC during the backoff, then a new
// stream is opened.
func TestBreak(t *testing.T) {
	release := make(chan struct{})
	n := &node{breakStreams: make(chan struct{}, 1), read: func(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
		if string(req.GetKey().GetPartitionKey()) == "held" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return echo(ctx, req)
	}}
	c, _ := serve(t, n, storagemux.Options{MinBackoff: 200 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	ctx := t.Context()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.Read(ctx, &storagev1.ReadRequest{Key: key("held")})
			errs <- err
		}()
	}
	waitFor(t, func() bool { return n.streams.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	n.breakStreams <- struct{}{}
	for range 2 {
		if err := <-errs; status.Code(err) != codes.Unavailable {
			t.Fatalf("call in flight on the broken stream: %v, want Unavailable", err)
		}
	}
	// In the backoff: the unary RPC.
	if r, err := c.Read(ctx, &storagev1.ReadRequest{Key: key("a")}); err != nil || string(r.GetRecord().GetValue()) != "a" {
		t.Fatalf("call in the backoff: %v, %v", r, err)
	}
	if u := n.unary.Load(); u != 1 {
		t.Fatalf("%d unary calls in the backoff, want 1", u)
	}
	time.Sleep(250 * time.Millisecond)
	if r, err := c.Read(ctx, &storagev1.ReadRequest{Key: key("b")}); err != nil || string(r.GetRecord().GetValue()) != "b" {
		t.Fatalf("call after the backoff: %v, %v", r, err)
	}
	if s, u := n.streams.Load(), n.unary.Load(); s != 2 || u != 1 {
		t.Fatalf("%d streams, %d unary calls after the backoff; want 2 and 1", s, u)
	}
	close(release)
}

// TestUnimplemented: a node without Exchange (an older version) is called
// by the unary RPCs, every call succeeding, and the stream is not tried
// again before UnimplementedRetry.
func TestUnimplemented(t *testing.T) {
	n := &node{read: echo, noExchange: true}
	c, _ := serve(t, n, storagemux.Options{})
	for i := range 5 {
		pk := fmt.Sprint("k", i)
		r, err := c.Read(t.Context(), &storagev1.ReadRequest{Key: key(pk)})
		if err != nil || string(r.GetRecord().GetValue()) != pk {
			t.Fatalf("read %s: %v, %v", pk, r, err)
		}
	}
	if _, err := c.Apply(t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("a"), Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	if u := n.unary.Load(); u != 6 {
		t.Fatalf("%d unary calls, want 6", u)
	}
}

// TestDrain: the calls a draining node did not take go by the unary RPC,
// and the stream is closed (its node's shutdown does not wait for it).
func TestDrain(t *testing.T) {
	n := &node{read: echo, drain: true}
	c, _ := serve(t, n, storagemux.Options{})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			pk := fmt.Sprint("k", i)
			r, err := c.Read(t.Context(), &storagev1.ReadRequest{Key: key(pk)})
			if err != nil || string(r.GetRecord().GetValue()) != pk {
				t.Errorf("read %s: %v, %v", pk, r, err)
			}
		})
	}
	wg.Wait()
	if u := n.unary.Load(); u != 10 {
		t.Fatalf("%d unary calls, want 10", u)
	}
	// The router closed its side: the node's handler returned.
	waitFor(t, func() bool { return n.ended.Load() == n.streams.Load() })
}

// TestErrorParity: every error kind reaches the caller over the stream
// exactly as over the unary RPC: code, message and details (the router's
// fencing reads the stale-epoch ErrorInfo; its retries read the codes).
func TestErrorParity(t *testing.T) {
	stale := status.New(codes.FailedPrecondition, "keys[0]: storage: stale placement epoch: refresh the placement and retry")
	stale, err := stale.WithDetails(&errdetails.ErrorInfo{Reason: "STALE_PLACEMENT_EPOCH", Domain: "veltrix.storage",
		Metadata: map[string]string{"epoch": "7", "partition": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]error{
		"stale epoch":        stale.Err(),
		"not held":           status.Error(codes.FailedPrecondition, "storage: partition not held by this node"),
		"invalid argument":   status.Error(codes.InvalidArgument, "key: storage: invalid argument: partition key is empty"),
		"not found":          status.Error(codes.NotFound, "storage: not found"),
		"resource exhausted": status.Error(codes.ResourceExhausted, "storage: too large"),
		"unavailable":        status.Error(codes.Unavailable, "storage: closed"),
		"aborted":            status.Error(codes.Aborted, "lock contended"),
		"data loss":          status.Error(codes.DataLoss, "storage: corrupt"),
		"internal":           status.Error(codes.Internal, "boom"),
		"plain error":        errors.New("not a status"),
	}
	type errBox struct{ err error }
	var cur atomic.Value
	n := &node{read: func(context.Context, *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
		return nil, cur.Load().(errBox).err
	}}
	c, unary := serve(t, n, storagemux.Options{})
	for name, e := range kinds {
		t.Run(name, func(t *testing.T) {
			cur.Store(errBox{e})
			_, want := unary.Read(t.Context(), &storagev1.ReadRequest{Key: key("k")})
			_, got := c.Read(t.Context(), &storagev1.ReadRequest{Key: key("k")})
			if !sameStatus(got, want) {
				t.Fatalf("over the stream: %v; unary: %v", got, want)
			}
			_, want = unary.BatchRead(t.Context(), &storagev1.BatchReadRequest{Keys: []*storagev1.Key{key("k")}})
			_, got = c.BatchRead(t.Context(), &storagev1.BatchReadRequest{Keys: []*storagev1.Key{key("k")}})
			if !sameStatus(got, want) {
				t.Fatalf("BatchRead over the stream: %v; unary: %v", got, want)
			}
		})
	}
	if s := n.streams.Load(); s != 1 {
		t.Fatalf("%d streams: an error answer must not end the stream", s)
	}
}

// TestLargeApplyIsUnary: an Apply too large to share the stream goes by the
// unary RPC.
func TestLargeApplyIsUnary(t *testing.T) {
	n := &node{read: echo}
	c, _ := serve(t, n, storagemux.Options{})
	if _, err := c.Apply(t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("a"), Version: 1, Value: make([]byte, 1<<20)}}}); err != nil {
		t.Fatal(err)
	}
	if u, s := n.unary.Load(), n.streams.Load(); u != 1 || s != 0 {
		t.Fatalf("%d unary calls, %d streams; want 1 and 0", u, s)
	}
}

// sameStatus compares two errors' statuses: code, message and details
// (unpacked: an Any's bytes depend on map order).
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

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

type applyAnswer struct {
	resp *storagev1.ApplyResponse
	err  error
}

// applyAsync calls c.ApplyAsync and returns the channel its answer comes
// on; a second answer fails the test.
func applyAsync(t *testing.T, c *storagemux.Client, ctx context.Context, req *storagev1.ApplyRequest) <-chan applyAnswer {
	ch := make(chan applyAnswer, 2)
	c.ApplyAsync(ctx, req, func(resp *storagev1.ApplyResponse, err error) { ch <- applyAnswer{resp, err} })
	return ch
}

func answerOnce(t *testing.T, ch <-chan applyAnswer) applyAnswer {
	t.Helper()
	a := <-ch
	select {
	case b := <-ch:
		t.Fatalf("a second answer: %v, %v", b.resp, b.err)
	case <-time.After(20 * time.Millisecond):
	}
	return a
}

// TestApplyAsync: calls sent without waiting share one stream (the first
// opens it) and each gets its own answer, once.
func TestApplyAsync(t *testing.T) {
	n := &node{read: echo}
	c, _ := serve(t, n, storagemux.Options{})
	if _, err := c.Apply(t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("open"), Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	var chans []<-chan applyAnswer
	for i := range 50 {
		chans = append(chans, applyAsync(t, c, t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(fmt.Sprint("k", i)), Version: uint64(i + 1)}}}))
	}
	for i, ch := range chans {
		a := answerOnce(t, ch)
		if a.err != nil || a.resp.GetCurrentVersions()[0] != uint64(i+1) {
			t.Fatalf("apply %d: %v, %v", i, a.resp, a.err)
		}
	}
	if s, u := n.streams.Load(), n.unary.Load(); s != 1 || u != 0 {
		t.Errorf("%d streams and %d unary calls, want 1 and 0", s, u)
	}
	// Before any stream, and once closed, it still answers (by the
	// blocking path).
	c2, _ := serve(t, &node{read: echo}, storagemux.Options{})
	if a := answerOnce(t, applyAsync(t, c2, t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("a"), Version: 3}}})); a.err != nil {
		t.Fatal(a.err)
	}
	c2.Close()
	if a := answerOnce(t, applyAsync(t, c2, t.Context(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("a"), Version: 3}}})); a.err != nil {
		t.Fatal(a.err)
	}
}

// TestApplyAsyncDeadline: a call past its deadline answers as the unary
// RPC does, once, is cancelled on the node and frees its slot; an error
// answer keeps its status.
func TestApplyAsyncDeadline(t *testing.T) {
	stale := status.Error(codes.FailedPrecondition, "storage: stale placement epoch")
	n := &node{read: echo, applyFn: func(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
		switch string(req.GetRecords()[0].GetKey().GetPartitionKey()) {
		case "hang":
			<-ctx.Done()
			return nil, status.FromContextError(ctx.Err()).Err()
		case "stale":
			return nil, stale
		}
		return apply(req), nil
	}}
	c, _ := serve(t, n, storagemux.Options{MaxInFlight: 1})
	rec := func(pk string) *storagev1.ApplyRequest {
		return &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(pk), Version: 1}}}
	}
	if _, err := c.Apply(t.Context(), rec("open")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	a := answerOnce(t, applyAsync(t, c, ctx, rec("hang")))
	if want := status.FromContextError(context.DeadlineExceeded).Err(); !sameStatus(a.err, want) {
		t.Fatalf("call past its deadline: %v, want %v", a.err, want)
	}
	// The only slot is free again.
	if a := answerOnce(t, applyAsync(t, c, t.Context(), rec("next"))); a.err != nil {
		t.Fatalf("call after the deadline: %v", a.err)
	}
	if a := answerOnce(t, applyAsync(t, c, t.Context(), rec("stale"))); !sameStatus(a.err, stale) {
		t.Fatalf("error answer: %v, want %v", a.err, stale)
	}
	if u := n.unary.Load(); u != 0 {
		t.Fatalf("%d unary calls", u)
	}
}
