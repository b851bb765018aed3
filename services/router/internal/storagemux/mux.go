// Package storagemux carries a router's Read, BatchRead and Apply calls to
// one storage node as framed calls on one long-lived
// StorageService.Exchange stream per connection, instead of one unary RPC
// (a new HTTP/2 stream: headers, trailers, hpack, interceptors) each.
//
// A Client is a storagev1.StorageServiceClient: those three methods go over
// the stream, every other one is the unary RPC. Calls are numbered and
// multiplexed. Whichever caller finds nobody sending writes every call
// waiting in one message, its own included (natural batching: nothing
// waits to fill a batch, and no goroutine is woken to send); the node
// answers the same way. The answer of a call is exactly the
// unary RPC's (the status code, message and details of an error
// included), so the router's retry, hedging and fencing logic cannot tell
// the two apart.
//
// A call waits for its answer, its context, or the stream's end
// (ApplyAsync does not wait: a callback gets the answer, so a write sent to
// several replicas needs no goroutine per call). A
// cancelled or timed-out call frees its slot at once, tells the node
// (which cancels it), and its late answer is dropped. A stream that breaks
// fails only its calls in flight, with UNAVAILABLE (an Apply may or may
// not have taken effect, as with a unary call whose connection broke); the
// next call opens a new stream, no sooner than a backoff after the break
// (100 ms doubling to 1 s) and by the unary RPC until then. A node that
// does not serve Exchange (an older version, during a rolling upgrade)
// answers UNIMPLEMENTED before running anything: its calls are sent again
// by the unary RPC, and the stream is tried again after a minute. A node
// shutting down says which calls it did not take; those go by the unary
// RPC too. The mechanism is streammux.Client's (shared with pkg/client's
// streams to the routers); this package adapts the typed Exchange frames,
// so the hot path encodes each request once, as the unary RPC does.
package storagemux

import (
	"context"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client/streammux"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// Defaults of Options.
const (
	// DefaultMaxInFlight bounds the calls waiting on one stream.
	DefaultMaxInFlight = streammux.DefaultMaxInFlight
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before a new
	// stream after one broke.
	DefaultMinBackoff = streammux.DefaultMinBackoff
	DefaultMaxBackoff = streammux.DefaultMaxBackoff
	// DefaultUnimplementedRetry is how long a node that answered
	// UNIMPLEMENTED is called by the unary RPCs before the stream is tried
	// again.
	DefaultUnimplementedRetry = streammux.DefaultUnimplementedRetry
	// unaryBytes: a call larger than this (an Apply of large values) goes
	// by the unary RPC, so it neither delays the stream's other calls nor
	// risks a message over the size limit.
	unaryBytes = 256 << 10
	// nodeWorkers is how many of a stream's calls a storage node runs at
	// once (its exchangeWorkers): with more unanswered an older node may
	// read nothing, and sending leaves the caller (streammux).
	nodeWorkers = 256
)

// HTTP/2 flow-control windows of a connection carrying an Exchange stream.
// One stream carries what a unary call per request carried on many, each
// with its own window: with gRPC's 64 KiB default (grown only by its BDP
// estimate, which a low-latency link keeps small) the node's answers would
// wait for window updates. Storage nodes use the same for what they
// receive.
const (
	StreamWindow = 4 << 20
	ConnWindow   = 8 << 20
)

// DialOptions are the options a connection to a storage node whose calls
// go through a Client needs (after the common ones): its windows.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow)}
}

// Options configures a Client. Zero values take the defaults.
type Options struct {
	// MaxInFlight bounds the calls in flight on the stream; a call beyond
	// it waits for a slot (or its context). Default: DefaultMaxInFlight.
	MaxInFlight int
	// MinBackoff, MaxBackoff: see DefaultMinBackoff.
	MinBackoff, MaxBackoff time.Duration
	// UnimplementedRetry: see DefaultUnimplementedRetry.
	UnimplementedRetry time.Duration
}

// Client multiplexes Read, BatchRead and Apply on an Exchange stream over
// cc; see the package doc. Safe for concurrent use.
type Client struct {
	storagev1.StorageServiceClient // the unary RPCs
	mux                            *streammux.Client[*storagev1.ExchangeCall, *storagev1.ExchangeResult]
}

// New returns a Client over cc.
func New(cc grpc.ClientConnInterface, o Options) *Client {
	c := &Client{StorageServiceClient: storagev1.NewStorageServiceClient(cc)}
	c.mux = streammux.NewClient(streammux.ClientOptions[*storagev1.ExchangeCall, *storagev1.ExchangeResult]{
		Open: func(ctx context.Context) (streammux.ClientStream[*storagev1.ExchangeCall, *storagev1.ExchangeResult], error) {
			cs, err := c.StorageServiceClient.Exchange(ctx)
			if err != nil {
				return nil, err
			}
			return exchangeStream{cs}, nil
		},
		Frames:             frames{},
		MaxInFlight:        o.MaxInFlight,
		MinBackoff:         o.MinBackoff,
		MaxBackoff:         o.MaxBackoff,
		UnimplementedRetry: o.UnimplementedRetry,
		PeerWorkers:        nodeWorkers,
		Broken:             "storage stream",
		ClosedErr:          grpcstatus.Error(codes.Unavailable, "storage stream broke with the call in flight: storagemux: client closed"),
	})
	return c
}

// exchangeStream adapts the generated stream to streammux.ClientStream.
type exchangeStream struct {
	storagev1.StorageService_ExchangeClient
}

func (s exchangeStream) SendCalls(calls []*storagev1.ExchangeCall) error {
	return s.Send(&storagev1.ExchangeRequest{Calls: calls})
}

func (s exchangeStream) RecvResults() ([]*storagev1.ExchangeResult, bool, uint64, error) {
	resp, err := s.Recv()
	if err != nil {
		return nil, false, 0, err
	}
	return resp.GetResults(), resp.GetDraining(), resp.GetLastId(), nil
}

// frames writes Exchange's call frames.
type frames struct{}

func (frames) Number(call *storagev1.ExchangeCall, id uint64, timeoutMicros int64) {
	call.Id, call.TimeoutMicros = id, timeoutMicros
}

func (frames) Cancel(id uint64) *storagev1.ExchangeCall {
	return &storagev1.ExchangeCall{Id: id, Cancel: true}
}

// Close ends the stream (failing its calls in flight) and makes later
// calls use the unary RPCs. Closing the connection has the same effect.
func (c *Client) Close() { c.mux.Close() }

// Read is StorageService.Read over the stream.
func (c *Client) Read(ctx context.Context, req *storagev1.ReadRequest, opts ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	if len(opts) == 0 {
		res, err := c.mux.Do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Read{Read: req}})
		if err != streammux.ErrUnary {
			if err != nil {
				return nil, err
			}
			if r, ok := res.GetResponse().(*storagev1.ExchangeResult_Read); ok {
				return r.Read, nil
			}
			return nil, mismatched(res)
		}
	}
	return c.StorageServiceClient.Read(ctx, req, opts...)
}

// BatchRead is StorageService.BatchRead over the stream.
func (c *Client) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest, opts ...grpc.CallOption) (*storagev1.BatchReadResponse, error) {
	if len(opts) == 0 && batchReadBytes(req) <= unaryBytes {
		res, err := c.mux.Do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_BatchRead{BatchRead: req}})
		if err != streammux.ErrUnary {
			if err != nil {
				return nil, err
			}
			if r, ok := res.GetResponse().(*storagev1.ExchangeResult_BatchRead); ok {
				return r.BatchRead, nil
			}
			return nil, mismatched(res)
		}
	}
	return c.StorageServiceClient.BatchRead(ctx, req, opts...)
}

// Apply is StorageService.Apply over the stream.
func (c *Client) Apply(ctx context.Context, req *storagev1.ApplyRequest, opts ...grpc.CallOption) (*storagev1.ApplyResponse, error) {
	if len(opts) == 0 && applyBytes(req) <= unaryBytes {
		res, err := c.mux.Do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Apply{Apply: req}})
		if err != streammux.ErrUnary {
			return applyAnswer(res, err)
		}
	}
	return c.StorageServiceClient.Apply(ctx, req, opts...)
}

// ApplyAsync is Apply that returns at once and calls done with its answer
// (exactly once, from another goroutine or, if it fails before sending,
// this one). done must not block. A coordinator sending one write to
// several replicas calls each without a goroutine of its own, so the calls
// are encoded and sent from the caller's goroutine, whose stack has grown
// already.
func (c *Client) ApplyAsync(ctx context.Context, req *storagev1.ApplyRequest, done func(*storagev1.ApplyResponse, error)) {
	if applyBytes(req) <= unaryBytes && ctx.Err() == nil {
		call := &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Apply{Apply: req}}
		if c.mux.Go(ctx, call, func(res *storagev1.ExchangeResult, err error) {
			if err == streammux.ErrUnary {
				go func() { done(c.StorageServiceClient.Apply(ctx, req)) }()
				return
			}
			done(applyAnswer(res, err))
		}) {
			return
		}
	}
	// No stream open yet (or it is full): the blocking path opens one,
	// waits for a slot or uses the unary RPC.
	go func() { done(c.Apply(ctx, req)) }()
}

// applyAnswer is the Apply answer (or error) in an Exchange outcome.
func applyAnswer(res *storagev1.ExchangeResult, err error) (*storagev1.ApplyResponse, error) {
	if err != nil {
		return nil, err
	}
	if r, ok := res.GetResponse().(*storagev1.ExchangeResult_Apply); ok {
		return r.Apply, nil
	}
	return nil, mismatched(res)
}

func applyBytes(req *storagev1.ApplyRequest) int {
	size := 0
	for _, r := range req.GetRecords() {
		size += 32 + len(r.GetKey().GetPartitionKey()) + len(r.GetKey().GetSortKey()) + len(r.GetValue())
	}
	return size
}

func batchReadBytes(req *storagev1.BatchReadRequest) int {
	size := 0
	for _, k := range req.GetKeys() {
		size += 16 + len(k.GetPartitionKey()) + len(k.GetSortKey())
	}
	return size
}

func mismatched(res *storagev1.ExchangeResult) error {
	return grpcstatus.Errorf(codes.Internal, "storagemux: call %d answered with %T", res.GetId(), res.GetResponse())
}
