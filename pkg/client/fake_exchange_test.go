package client_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
)

// exchanger makes a fake router serve KVService.Exchange as the contract
// says a router does: each call runs through the unary path (the fake's
// interceptor, then the method's generated handler) with the stream's
// context plus the call's deadline, concurrently; results go back by id;
// a cancel frame cancels its call. It records what it saw.
type exchanger struct {
	// drain: at its first call the router starts draining: it takes that
	// call only (last_id is its id), answers it and ends the stream once
	// the client closed its side.
	drain bool
	// endAtFirst: the router takes no call: it reads the stream's first
	// message and ends the stream (status OK), as grpcx.Mux does with a
	// stream whose first message arrives once the router drains (no
	// draining notice: nothing may be sent before a message is received).
	endAtFirst bool
	// workers, when set, bounds the calls a stream runs at once, as
	// grpcx.Mux does: with that many running the stream is not read, and
	// HTTP/2 flow control holds the client's sends back.
	workers int
	// hold, when set, runs before each call made on a stream.
	hold func(ctx context.Context, method string, req proto.Message) error
	// breakStreams: a value ends every open stream with an error.
	breakStreams chan struct{}

	opens    atomic.Int64 // Exchange RPCs
	ended    atomic.Int64 // Exchange handlers returned
	streamed atomic.Int64 // calls run on streams
	cancels  atomic.Int64 // calls cancelled by a cancel frame
	maxCalls atomic.Int64 // most calls in one message

	mu   sync.Mutex
	auth []string // the authorization metadata of each stream
}

func newExchanger() *exchanger { return &exchanger{breakStreams: make(chan struct{}, 16)} }

// serveExchange makes f serve Exchange with a new exchanger.
func serveExchange(f *fakeRouter) *exchanger {
	ex := newExchanger()
	f.ex.Store(ex)
	return ex
}

func (f *fakeRouter) Exchange(stream kvv1.KVService_ExchangeServer) error {
	ex := f.ex.Load()
	f.exchangeCalls.Add(1)
	if ex == nil {
		return status.Error(codes.Unimplemented, "method Exchange not implemented")
	}
	ex.opens.Add(1)
	defer ex.ended.Add(1)
	md, _ := metadata.FromIncomingContext(stream.Context())
	ex.mu.Lock()
	ex.auth = append(ex.auth, md.Get("authorization")...)
	ex.mu.Unlock()
	if ex.endAtFirst {
		_, _ = stream.Recv()
		return nil
	}

	ctx, cancel := context.WithCancel(stream.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex // guards Send, calls, draining, stopped
	calls := map[uint64]context.CancelFunc{}
	var draining, stopped bool
	defer func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		cancel() // ends the calls in flight
		wg.Wait()
	}()
	recvErr := make(chan error, 1)
	var workers chan struct{}
	if ex.workers > 0 {
		workers = make(chan struct{}, ex.workers)
	}
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			ex.maxCalls.Store(max(ex.maxCalls.Load(), int64(len(req.GetCalls()))))
			for _, c := range req.GetCalls() {
				mu.Lock()
				switch {
				case stopped:
				case c.GetCancel():
					if cancel := calls[c.GetId()]; cancel != nil {
						ex.cancels.Add(1)
						cancel()
					}
				case draining:
				default:
					if workers != nil {
						mu.Unlock()
						select {
						case workers <- struct{}{}:
						case <-ctx.Done():
							return
						}
						mu.Lock()
						if stopped {
							mu.Unlock()
							return
						}
					}
					if ex.drain {
						draining = true
						_ = stream.Send(&kvv1.ExchangeResponse{Draining: true, LastId: c.GetId()})
					}
					cctx, ccancel := context.WithCancel(ctx)
					if us := c.GetTimeoutMicros(); us > 0 {
						cctx, ccancel = context.WithTimeout(ctx, time.Duration(us)*time.Microsecond)
					}
					calls[c.GetId()] = ccancel
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer ccancel()
						if workers != nil {
							defer func() { <-workers }()
						}
						res := f.run(cctx, ex, c)
						mu.Lock()
						defer mu.Unlock()
						delete(calls, c.GetId())
						if ctx.Err() == nil {
							_ = stream.Send(&kvv1.ExchangeResponse{Results: []*muxv1.Result{res}})
						}
					}()
				}
				mu.Unlock()
			}
		}
	}()
	select {
	case err := <-recvErr:
		if err != io.EOF {
			return err
		}
		return nil // the client closed its side; wg.Wait answers the rest
	case <-ex.breakStreams:
		return status.Error(codes.Internal, "stream broken by the test")
	}
}

// run runs one call through the unary path: the fake's interceptor and
// the method's generated handler.
func (f *fakeRouter) run(ctx context.Context, ex *exchanger, c *muxv1.Call) *muxv1.Result {
	res := &muxv1.Result{Id: c.GetId()}
	var md *grpc.MethodDesc
	for i, m := range kvv1.KVService_ServiceDesc.Methods {
		if "/"+kvv1.KVService_ServiceDesc.ServiceName+"/"+m.MethodName == c.GetMethod() {
			md = &kvv1.KVService_ServiceDesc.Methods[i]
		}
	}
	if md == nil {
		res.Code, res.Message = int32(codes.Unimplemented), fmt.Sprintf("method %s cannot be called on Exchange", c.GetMethod())
		return res
	}
	dec := func(m any) error { return proto.Unmarshal(c.GetRequest(), m.(proto.Message)) }
	resp, err := md.Handler(f, ctx, dec, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ex.streamed.Add(1)
		if ex.hold != nil {
			if err := ex.hold(ctx, info.FullMethod, req.(proto.Message)); err != nil {
				return nil, err
			}
		}
		return f.intercept(ctx, req, info, h)
	})
	if err != nil {
		// As a gRPC server turns a handler's error into a status.
		st, ok := status.FromError(err)
		if !ok {
			st = status.FromContextError(err)
		}
		res.Code, res.Message, res.Details = int32(st.Code()), st.Message(), st.Proto().GetDetails()
		return res
	}
	b, err := proto.Marshal(resp.(proto.Message))
	if err != nil {
		res.Code, res.Message = int32(codes.Internal), err.Error()
		return res
	}
	res.Response = b
	return res
}
