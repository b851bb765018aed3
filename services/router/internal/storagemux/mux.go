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
// RPC too.
package storagemux

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// Defaults of Options.
const (
	// DefaultMaxInFlight bounds the calls waiting on one stream.
	DefaultMaxInFlight = 1024
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before a new
	// stream after one broke.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = time.Second
	// DefaultUnimplementedRetry is how long a node that answered
	// UNIMPLEMENTED is called by the unary RPCs before the stream is tried
	// again.
	DefaultUnimplementedRetry = time.Minute
	// maxBatchCalls bounds one message of calls: with unaryBytes, to 32
	// MiB, well under the message size limit.
	maxBatchCalls = 128
	// unaryBytes: a call larger than this (an Apply of large values) goes
	// by the unary RPC, so it neither delays the stream's other calls nor
	// risks a message over the size limit.
	unaryBytes = 256 << 10
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
	o                              Options

	mu       sync.Mutex
	cur      *stream       // the stream in use; nil: open one (or not before next)
	next     time.Time     // no new stream before
	failures int           // breaks since a stream last answered
	opened   chan struct{} // non-nil while a stream is being opened; closed when it is
	closed   bool
	// healthy is set when the current stream answered (the next break
	// backs off from the start again).
	healthy atomic.Bool
}

// New returns a Client over cc.
func New(cc grpc.ClientConnInterface, o Options) *Client {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.UnimplementedRetry <= 0 {
		o.UnimplementedRetry = DefaultUnimplementedRetry
	}
	return &Client{StorageServiceClient: storagev1.NewStorageServiceClient(cc), o: o}
}

// Close ends the stream (failing its calls in flight) and makes later
// calls use the unary RPCs. Closing the connection has the same effect.
func (c *Client) Close() {
	c.mu.Lock()
	s := c.cur
	c.cur, c.closed = nil, true
	c.mu.Unlock()
	if s != nil {
		s.fail(grpcstatus.Error(codes.Canceled, "storagemux: client closed"))
	}
}

// Read is StorageService.Read over the stream.
func (c *Client) Read(ctx context.Context, req *storagev1.ReadRequest, opts ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	if len(opts) == 0 {
		res, err := c.do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Read{Read: req}}, 0)
		if err != errUnary {
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
	if len(opts) == 0 {
		size := 0
		for _, k := range req.GetKeys() {
			size += 16 + len(k.GetPartitionKey()) + len(k.GetSortKey())
		}
		res, err := c.do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_BatchRead{BatchRead: req}}, size)
		if err != errUnary {
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
	if len(opts) == 0 {
		res, err := c.do(ctx, &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Apply{Apply: req}}, applyBytes(req))
		if err != errUnary {
			if err != nil {
				return nil, err
			}
			return applyAnswer(res, nil)
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
	call := &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Apply{Apply: req}}
	var s *stream
	if size := applyBytes(req); size <= unaryBytes && ctx.Err() == nil {
		s = c.current()
	}
	if s == nil || !s.tryAcquire() {
		// No stream open yet (or it is full): the blocking path opens
		// one, waits for a slot or uses the unary RPC.
		go func() { done(c.Apply(ctx, req)) }()
		return
	}
	var stop func() bool
	deliver := func(o outcome) {
		<-s.slots
		if stop != nil {
			stop()
		}
		if o.err == errUnary {
			go func() { done(c.StorageServiceClient.Apply(ctx, req)) }()
			return
		}
		done(applyAnswer(o.res, o.err))
	}
	// deliver runs under s.mu (from recv or fail): stop, set below under
	// s.mu too, is seen by it.
	s.mu.Lock()
	id, ok := s.enqueueLocked(ctx, call, deliver)
	if ok {
		stop = context.AfterFunc(ctx, func() {
			if s.abandon(id) {
				<-s.slots
				done(nil, grpcstatus.FromContextError(ctx.Err()).Err())
			}
		})
	}
	s.mu.Unlock()
	if !ok {
		<-s.slots
		go func() { done(c.StorageServiceClient.Apply(ctx, req)) }()
		return
	}
	s.flush()
}

// applyAnswer is the Apply answer (or error) in an Exchange outcome.
func applyAnswer(res *storagev1.ExchangeResult, err error) (*storagev1.ApplyResponse, error) {
	if err != nil {
		return nil, err
	}
	if res.GetCode() != int32(codes.OK) {
		return nil, grpcstatus.FromProto(&status.Status{Code: res.GetCode(), Message: res.GetMessage(), Details: res.GetDetails()}).Err()
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

// current returns the open stream, or nil.
func (c *Client) current() *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func mismatched(res *storagev1.ExchangeResult) error {
	return grpcstatus.Errorf(codes.Internal, "storagemux: call %d answered with %T", res.GetId(), res.GetResponse())
}

// errUnary says: make the unary call (no stream now, the node does not
// serve Exchange, or it did not take the call).
var errUnary = errors.New("storagemux: use the unary RPC")

// do runs call on the stream and returns its successful result, its error
// as the unary RPC would return it, or errUnary.
func (c *Client) do(ctx context.Context, call *storagev1.ExchangeCall, size int) (*storagev1.ExchangeResult, error) {
	if size > unaryBytes {
		return nil, errUnary
	}
	if err := ctx.Err(); err != nil {
		return nil, grpcstatus.FromContextError(err).Err()
	}
	s, err := c.stream(ctx)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errUnary
	}
	res, err := s.call(ctx, call)
	if err != nil {
		return nil, err
	}
	if res.GetCode() != int32(codes.OK) {
		return nil, grpcstatus.FromProto(&status.Status{Code: res.GetCode(), Message: res.GetMessage(), Details: res.GetDetails()}).Err()
	}
	return res, nil
}

// stream returns the stream to use, opening one if none is open and the
// backoff allows; nil means use the unary RPC. The stream is opened
// without c.mu held (opening may wait for the connection); calls made
// meanwhile wait for it, or for their context.
func (c *Client) stream(ctx context.Context) (*stream, error) {
	c.mu.Lock()
	if opened := c.opened; opened != nil {
		c.mu.Unlock()
		select {
		case <-opened:
		case <-ctx.Done():
			return nil, grpcstatus.FromContextError(ctx.Err()).Err()
		}
		c.mu.Lock()
	}
	if c.cur != nil || c.closed || c.opened != nil || time.Now().Before(c.next) {
		s := c.cur
		c.mu.Unlock()
		return s, nil
	}
	opened := make(chan struct{})
	c.opened = opened
	c.mu.Unlock()

	sctx, cancel := context.WithCancel(context.Background())
	cs, err := c.StorageServiceClient.Exchange(sctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened = nil
	close(opened)
	if err != nil || c.closed {
		cancel()
		if err != nil {
			c.brokeLocked(nil, err)
		}
		return nil, nil
	}
	s := &stream{
		c: c, cs: cs, cancel: cancel,
		slots:   make(chan struct{}, c.o.MaxInFlight),
		pending: map[uint64]func(outcome){},
		done:    make(chan struct{}),
	}
	c.cur = s
	go s.recv()
	return s, nil
}

// brokeLocked forgets s (nil: a stream that failed to open) after err, and
// sets when the next may open. The caller holds c.mu.
func (c *Client) brokeLocked(s *stream, err error) {
	if c.cur == s || s == nil {
		c.cur = nil
	}
	if grpcstatus.Code(err) == codes.Unimplemented {
		c.next = time.Now().Add(c.o.UnimplementedRetry)
		return
	}
	if c.healthy.Swap(false) {
		c.failures = 0
	}
	c.failures++
	d := c.o.MinBackoff << min(c.failures-1, 16)
	c.next = time.Now().Add(min(d, c.o.MaxBackoff))
}

// answered records that a stream works: the next break backs off from the
// start again.
func (c *Client) answered() {
	if !c.healthy.Load() {
		c.healthy.Store(true)
	}
}

// outcome is a call's end: its result, an error, or errUnary.
type outcome struct {
	res *storagev1.ExchangeResult
	err error
}

// stream is one Exchange stream and its calls in flight.
type stream struct {
	c      *Client
	cs     storagev1.StorageService_ExchangeClient
	cancel context.CancelFunc
	slots  chan struct{}
	done   chan struct{} // closed when the stream ended
	// sendMu is held by the one goroutine sending; batch is its buffer.
	sendMu sync.Mutex
	batch  []*storagev1.ExchangeCall

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]func(outcome) // calls awaiting their answer: called once, under mu, must not block
	queue   []*storagev1.ExchangeCall
	err     error // why the stream ended; set once
	// draining: the node takes no call above lastID; the stream takes no
	// new call and is closed once pending is empty.
	draining bool
	lastID   uint64
	closing  bool // CloseSend is due
	closed   bool // CloseSend was called
}

// call sends call and waits for its outcome.
func (s *stream) call(ctx context.Context, call *storagev1.ExchangeCall) (*storagev1.ExchangeResult, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, grpcstatus.FromContextError(ctx.Err()).Err()
	case <-s.done:
		return nil, errUnary
	}
	defer func() { <-s.slots }()
	ch := make(chan outcome, 1)
	id, ok := s.enqueue(ctx, call, func(o outcome) { ch <- o })
	if !ok {
		return nil, errUnary // not sent: the unary RPC is as good
	}
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		s.abandon(id)
		return nil, grpcstatus.FromContextError(ctx.Err()).Err()
	}
}

// enqueue numbers call, registers done for its outcome, and sends it
// (or leaves it to the goroutine sending). It returns false, having sent
// nothing, when the stream takes no new call.
func (s *stream) enqueue(ctx context.Context, call *storagev1.ExchangeCall, done func(outcome)) (uint64, bool) {
	s.mu.Lock()
	id, ok := s.enqueueLocked(ctx, call, done)
	s.mu.Unlock()
	if ok {
		s.flush()
	}
	return id, ok
}

// enqueueLocked is enqueue without the send. The caller holds s.mu.
func (s *stream) enqueueLocked(ctx context.Context, call *storagev1.ExchangeCall, done func(outcome)) (uint64, bool) {
	if s.err != nil || s.draining {
		return 0, false
	}
	s.nextID++
	id := s.nextID
	call.Id = id
	if d, ok := ctx.Deadline(); ok {
		call.TimeoutMicros = max(time.Until(d).Microseconds(), 1)
	}
	s.pending[id] = done
	s.queue = append(s.queue, call)
	return id, true
}

// tryAcquire takes a slot for a call if one is free.
func (s *stream) tryAcquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// abandon stops waiting for call id: the node is told to cancel it and
// its answer will be dropped. It reports whether the call was still
// pending (its outcome not delivered).
func (s *stream) abandon(id uint64) bool {
	s.mu.Lock()
	_, ok := s.pending[id]
	if ok {
		delete(s.pending, id)
		if s.err == nil {
			s.queue = append(s.queue, &storagev1.ExchangeCall{Id: id, Cancel: true})
		}
		s.closeIfDrainedLocked()
	}
	s.mu.Unlock()
	s.flush()
	return ok
}

// flush sends the queued calls, as many as fit in one message each time,
// unless another goroutine is sending: that one sends them. Whoever
// sends looks at the queue again after letting go of sendMu, so no call is
// left behind, and a caller whose queue was empty sends its own call
// without waking another goroutine.
func (s *stream) flush() {
	for s.sendMu.TryLock() {
		s.sendLocked()
		s.sendMu.Unlock()
		s.mu.Lock()
		more := s.err == nil && (len(s.queue) > 0 || s.closing && !s.closed)
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// sendLocked sends until the queue is empty. The caller holds sendMu.
func (s *stream) sendLocked() {
	for {
		s.mu.Lock()
		n := min(len(s.queue), maxBatchCalls)
		s.batch = append(s.batch[:0], s.queue[:n]...)
		rest := copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		closeSend := n == 0 && s.closing && !s.closed && s.err == nil
		if closeSend {
			s.closed = true
		}
		s.mu.Unlock()
		if closeSend {
			_ = s.cs.CloseSend()
			return
		}
		if n == 0 {
			return
		}
		err := s.cs.Send(&storagev1.ExchangeRequest{Calls: s.batch})
		clear(s.batch)
		if err != nil {
			// io.EOF: the stream ended; recv gets its status.
			return
		}
	}
}

// recv delivers answers until the stream ends.
func (s *stream) recv() {
	for {
		resp, err := s.cs.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.c.answered()
		s.mu.Lock()
		for _, r := range resp.GetResults() {
			if done, ok := s.pending[r.GetId()]; ok {
				delete(s.pending, r.GetId())
				done(outcome{res: r})
			}
		}
		if resp.GetDraining() && !s.draining {
			s.draining, s.lastID = true, resp.GetLastId()
			for id, done := range s.pending {
				if id > s.lastID {
					delete(s.pending, id)
					done(outcome{err: errUnary})
				}
			}
			s.c.mu.Lock()
			s.c.brokeLocked(s, nil)
			s.c.mu.Unlock()
		}
		s.closeIfDrainedLocked()
		closing := s.closing && !s.closed
		s.mu.Unlock()
		if closing {
			s.flush()
		}
	}
}

// closeIfDrainedLocked marks the sending side of a draining stream to be
// closed (by the next flush) once no call awaits an answer. The caller
// holds s.mu.
func (s *stream) closeIfDrainedLocked() {
	if s.draining && len(s.pending) == 0 && !s.closing {
		s.closing = true
	}
}

// fail ends the stream after err: its calls in flight fail with
// UNAVAILABLE, or go by the unary RPC if the node does not serve Exchange
// (it ran none of them).
func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	unimplemented := grpcstatus.Code(err) == codes.Unimplemented
	s.err = err
	for id, done := range s.pending {
		delete(s.pending, id)
		if unimplemented {
			done(outcome{err: errUnary})
		} else {
			done(outcome{err: brokenErr(err)})
		}
	}
	s.queue = nil
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	s.c.mu.Lock()
	s.c.brokeLocked(s, err)
	s.c.mu.Unlock()
}

// brokenErr is the error of a call in flight on a stream that broke:
// UNAVAILABLE, whatever ended the stream (the call's own outcome is
// unknown).
func brokenErr(err error) error {
	msg := err.Error()
	if st, ok := grpcstatus.FromError(err); ok {
		msg = st.Code().String() + ": " + st.Message()
	}
	return grpcstatus.Error(codes.Unavailable, fmt.Sprintf("storage stream broke with the call in flight: %s", msg))
}
