package client

// The client's unary KV calls go as framed calls on long-lived
// KVService.Exchange streams (one per router) instead of one unary RPC
// each (a new HTTP/2 stream: headers, trailers, hpack, a server stream and
// context per call). The structure is the router's storage multiplexer
// (services/router/internal/storagemux), over the generic frame of
// veltrix.mux.v1: a call is its method's full name and serialized request,
// an answer the serialized response or the status the unary RPC would
// return.
//
// The multiplexer is the innermost unary interceptor: the default
// deadline, retries and attempt accounting wrap it unchanged, and a call
// it does not carry (another method, call options, a large request, no
// stream now) goes on to the unary RPC.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
)

// muxMethods are the KVService methods Exchange carries.
var muxMethods = map[string]bool{
	kvv1.KVService_Get_FullMethodName:        true,
	kvv1.KVService_Put_FullMethodName:        true,
	kvv1.KVService_Delete_FullMethodName:     true,
	kvv1.KVService_BatchGet_FullMethodName:   true,
	kvv1.KVService_BatchWrite_FullMethodName: true,
	kvv1.KVService_Query_FullMethodName:      true,
}

const (
	// muxMaxInFlight bounds the calls waiting on one stream; a call beyond
	// it waits for a slot (or its context).
	muxMaxInFlight = 1024
	// muxMinBackoff and muxMaxBackoff bound the wait before a new stream
	// after one broke (unary RPCs meanwhile).
	muxMinBackoff = 100 * time.Millisecond
	muxMaxBackoff = time.Second
	// muxUnimplementedRetry: how long a router that answered UNIMPLEMENTED
	// (an older version) is called by the unary RPCs before the stream is
	// tried again.
	muxUnimplementedRetry = time.Minute
	// muxSharedRetire: a stream opened to a router that another lane's
	// stream already uses (the others were not ready) is replaced after
	// this long, so that load spreads again once they are.
	muxSharedRetire = time.Second
	// muxMaxBatchCalls bounds one message of calls: with muxUnaryBytes, to
	// 32 MiB, under the message size limit.
	muxMaxBatchCalls = 128
	// muxUnaryBytes: a larger request goes by the unary RPC, so it neither
	// delays the stream's other calls nor risks a message over the limit.
	muxUnaryBytes = 256 << 10
	// muxRouterWorkers is how many of a stream's calls a router runs at
	// once (grpcx.MuxWorkers): with more unanswered it may read nothing.
	muxRouterWorkers = 256
)

// HTTP/2 flow-control windows of the connections to the routers: one
// stream carries what a unary call each carried on many, each with its own
// window; with gRPC's 64 KiB default the answers would wait for window
// updates.
const (
	muxStreamWindow = 4 << 20
	muxConnWindow   = 8 << 20
)

// errUnary says: make the unary call (no stream now, the router does not
// serve Exchange, or it did not take the call).
var errUnary = errors.New("client: use the unary RPC")

// mux carries the muxMethods of a ClientConn on Exchange streams. It has
// one lane (a stream and its state) per router endpoint, used in turn, so
// calls spread over the routers as round robin spreads unary calls: each
// lane's stream is opened on a router no other lane uses when one is
// ready.
type mux struct {
	kv     kvv1.KVServiceClient // set before the first call
	lanes  []*lane
	next   atomic.Uint64
	closed atomic.Bool
}

func newMux(routers int) *mux {
	m := &mux{}
	for range max(routers, 1) {
		m.lanes = append(m.lanes, &lane{m: m})
	}
	return m
}

// intercept is the innermost unary client interceptor.
func (m *mux) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	in, ok1 := req.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !muxMethods[method] || !ok1 || !ok2 || !plainCall(opts) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	l := m.lanes[0]
	if len(m.lanes) > 1 {
		l = m.lanes[m.next.Add(1)%uint64(len(m.lanes))]
	}
	if err := l.do(ctx, method, in, out); err != errUnary {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// plainCall reports whether a call's options are only those the stream
// has as well: the generated clients' StaticMethod and the connection's
// message size limits (default call options come first in opts). Other
// options (headers or trailers to read, a peer, per-call credentials,
// compression...) are the unary RPC's business.
func plainCall(opts []grpc.CallOption) bool {
	for _, o := range opts {
		switch o.(type) {
		case grpc.StaticMethodCallOption, grpc.MaxRecvMsgSizeCallOption, grpc.MaxSendMsgSizeCallOption:
		default:
			return false
		}
	}
	return true
}

// close ends the streams, failing their calls in flight with Canceled;
// later calls use the unary RPCs (of a closed connection).
func (m *mux) close() {
	m.closed.Store(true)
	for _, l := range m.lanes {
		l.mu.Lock()
		s := l.cur
		l.cur, l.closed = nil, true
		l.mu.Unlock()
		if s != nil {
			s.fail(status.Error(codes.Canceled, "client: closed"))
		}
	}
}

// shared reports whether a lane other than l has a stream to addr.
func (m *mux) shared(l *lane, addr string) bool {
	for _, o := range m.lanes {
		if o == l {
			continue
		}
		o.mu.Lock()
		s := o.cur
		o.mu.Unlock()
		if s != nil && s.peer == addr {
			return true
		}
	}
	return false
}

// lane is one stream at a time and when the next may open.
type lane struct {
	m        *mux
	mu       sync.Mutex
	cur      *muxStream    // the stream in use; nil: open one (or not before next)
	next     time.Time     // no new stream before
	failures int           // breaks since a stream last answered
	opened   chan struct{} // non-nil while a stream is being opened; closed when it is
	closed   bool
	// healthy is set when the current stream answered (the next break
	// backs off from the start again).
	healthy atomic.Bool
}

// do runs the call on the stream, unmarshals its response into out and
// returns nil, or returns its error as the unary RPC would, or errUnary.
func (l *lane) do(ctx context.Context, method string, in, out proto.Message) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	s, err := l.stream(ctx)
	if err != nil || s == nil {
		if err == nil {
			err = errUnary
		}
		return err
	}
	b, err := proto.Marshal(in)
	if err != nil || len(b) > muxUnaryBytes {
		return errUnary // the unary RPC reports a marshalling error as usual
	}
	res, err := s.call(ctx, &muxv1.Call{Method: method, Request: b})
	if err != nil {
		return err
	}
	defer res.release()
	if res.GetCode() != int32(codes.OK) {
		return status.FromProto(&spb.Status{Code: res.GetCode(), Message: res.GetMessage(), Details: res.GetDetails()}).Err()
	}
	if err := proto.Unmarshal(res.GetResponse(), out); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// stream returns the stream to use, opening one if none is open and the
// backoff allows; nil means use the unary RPC. The stream is opened
// without l.mu held (opening may wait for a connection); calls made
// meanwhile wait for it, or for their context.
func (l *lane) stream(ctx context.Context) (*muxStream, error) {
	for {
		l.mu.Lock()
		if opened := l.opened; opened != nil {
			l.mu.Unlock()
			select {
			case <-opened:
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			continue
		}
		if s := l.cur; s != nil && !s.retireAt.IsZero() && time.Now().After(s.retireAt) {
			l.cur = nil
			l.mu.Unlock()
			s.retire()
			continue
		}
		if l.cur != nil || l.closed || time.Now().Before(l.next) {
			s := l.cur
			l.mu.Unlock()
			return s, nil
		}
		// Opened in the background: this call waits for it as the others
		// do, or for its context (opening may wait for a connection).
		opened := make(chan struct{})
		l.opened = opened
		l.mu.Unlock()
		go l.opening(opened)
	}
}

// opening opens a stream for the lane and closes opened when done.
func (l *lane) opening(opened chan struct{}) {
	s, err := l.open()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opened = nil
	close(opened)
	if err != nil {
		l.brokeLocked(nil, err)
		return
	}
	if l.closed {
		s.cancel()
		return
	}
	l.cur = s
	go s.recv()
}

// open opens a stream, on a router no other lane's stream uses if one is
// ready: round robin picks the next router for each new stream.
func (l *lane) open() (*muxStream, error) {
	for try := 1; ; try++ {
		sctx, cancel := context.WithCancel(context.Background())
		cs, err := l.m.kv.Exchange(sctx, muxCodec())
		if err != nil {
			cancel()
			return nil, err
		}
		s := &muxStream{
			l: l, cs: cs, cancel: cancel,
			slots:   make(chan struct{}, muxMaxInFlight),
			pending: map[uint64]chan muxOutcome{},
			done:    make(chan struct{}),
		}
		if len(l.m.lanes) == 1 {
			return s, nil
		}
		if p, ok := peer.FromContext(cs.Context()); ok && p.Addr != nil {
			s.peer = p.Addr.String()
		}
		if !l.m.shared(l, s.peer) {
			return s, nil
		}
		if try >= len(l.m.lanes) {
			s.retireAt = time.Now().Add(muxSharedRetire)
			return s, nil
		}
		cancel() // nothing was sent on it
	}
}

// brokeLocked forgets s (nil: a stream that failed to open) after err, and
// sets when the next may open. The caller holds l.mu.
func (l *lane) brokeLocked(s *muxStream, err error) {
	if l.cur == s || s == nil {
		l.cur = nil
	}
	if status.Code(err) == codes.Unimplemented {
		l.next = time.Now().Add(muxUnimplementedRetry)
		return
	}
	if l.healthy.Swap(false) {
		l.failures = 0
	}
	l.failures++
	d := muxMinBackoff << min(l.failures-1, 16)
	l.next = time.Now().Add(min(d, muxMaxBackoff))
}

// answered records that a stream works: the next break backs off from the
// start again.
func (l *lane) answered() {
	if !l.healthy.Load() {
		l.healthy.Store(true)
	}
}

// muxOutcome is a call's end: its result, an error, or errUnary.
type muxOutcome struct {
	res *frameResult
	err error
}

// muxStream is one Exchange stream and its calls in flight.
type muxStream struct {
	l        *lane
	cs       kvv1.KVService_ExchangeClient
	cancel   context.CancelFunc
	peer     string    // the router's address
	retireAt time.Time // non-zero: replace the stream after (set before use)
	slots    chan struct{}
	done     chan struct{} // closed when the stream ended
	// sendMu is held by the one goroutine sending; batch is its buffer.
	sendMu sync.Mutex
	batch  []*muxv1.Call

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan muxOutcome // calls awaiting their answer
	queue   []*muxv1.Call
	// unanswered counts the calls sent whose result has not come (those
	// whose caller stopped waiting included: the router still runs them).
	unanswered int
	err        error // why the stream ended; set once
	// answered: the router sent something (so it accepted the stream).
	answered bool
	// draining: the router takes no call above lastID; the stream takes no
	// new call and is closed once pending is empty.
	draining bool
	lastID   uint64
	retired  bool // draining by the client's choice (retire), not the router's
	closing  bool // CloseSend is due
	closed   bool // CloseSend was called
}

// call sends call and waits for its outcome.
func (s *muxStream) call(ctx context.Context, call *muxv1.Call) (*frameResult, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.done:
		return nil, errUnary
	}
	defer func() { <-s.slots }()
	ch := make(chan muxOutcome, 1)
	s.mu.Lock()
	if s.err != nil || s.draining {
		s.mu.Unlock()
		return nil, errUnary // not sent: the unary RPC is as good
	}
	s.nextID++
	id := s.nextID
	call.Id = id
	if d, ok := ctx.Deadline(); ok {
		call.TimeoutMicros = max(time.Until(d).Microseconds(), 1)
	}
	s.pending[id] = ch
	s.queue = append(s.queue, call)
	s.mu.Unlock()
	s.flush()

	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		s.mu.Lock()
		if _, ok := s.pending[id]; ok {
			delete(s.pending, id)
			if s.err == nil {
				s.queue = append(s.queue, &muxv1.Call{Id: id, Cancel: true})
			}
			s.closeIfDrainedLocked()
		}
		s.mu.Unlock()
		s.flush()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// flush sends the queued calls, as many as fit in one message each time,
// unless another goroutine is sending: that one sends them. Whoever sends
// looks at the queue again after letting go of sendMu, so no call is left
// behind, and a caller whose queue was empty sends its own call without
// waking another goroutine.
//
// Unless the send may block: a router running muxRouterWorkers of the
// stream's calls reads nothing more (HTTP/2 flow control holds the send)
// until one ends, and a caller sending would stay there past its context
// (whoever's calls it was sending). Beyond that many calls unanswered, the
// sending goes to a goroutine of its own.
func (s *muxStream) flush() {
	for s.sendMu.TryLock() {
		if !s.sendLocked(true) {
			go s.sendRest()
			return
		}
		s.sendMu.Unlock()
		if !s.more() {
			return
		}
	}
}

// sendRest sends until nothing is queued, on a goroutine of its own; it is
// called with sendMu held.
func (s *muxStream) sendRest() {
	s.sendLocked(false)
	s.sendMu.Unlock()
	for s.more() && s.sendMu.TryLock() {
		s.sendLocked(false)
		s.sendMu.Unlock()
	}
}

// more reports whether something is left to send.
func (s *muxStream) more() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil && (len(s.queue) > 0 || s.closing && !s.closed)
}

// sendLocked sends until the queue is empty, or, inline (a caller
// sending), until the next message would take the calls unanswered beyond
// muxRouterWorkers: then it returns false, the rest left queued. The
// caller holds sendMu.
func (s *muxStream) sendLocked(inline bool) bool {
	for {
		s.mu.Lock()
		n := min(len(s.queue), muxMaxBatchCalls)
		if inline && n > 0 && s.unanswered+n > muxRouterWorkers {
			s.mu.Unlock()
			return false
		}
		s.batch = append(s.batch[:0], s.queue[:n]...)
		rest := copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		for _, c := range s.batch {
			if !c.GetCancel() {
				s.unanswered++
			}
		}
		closeSend := n == 0 && s.closing && !s.closed && s.err == nil
		if closeSend {
			s.closed = true
		}
		s.mu.Unlock()
		if closeSend {
			_ = s.cs.CloseSend()
			return true
		}
		if n == 0 {
			return true
		}
		err := s.cs.Send(&kvv1.ExchangeRequest{Calls: s.batch})
		clear(s.batch)
		if err != nil {
			// io.EOF: the stream ended; recv gets its status.
			return true
		}
	}
}

// recv delivers answers until the stream ends.
func (s *muxStream) recv() {
	for {
		var resp resultFrame
		err := s.cs.RecvMsg(&resp) // decoded by frameCodec
		if err != nil {
			s.fail(err)
			return
		}
		s.l.answered()
		s.mu.Lock()
		s.answered = true
		s.unanswered -= len(resp.GetResults())
		for _, r := range resp.GetResults() {
			if ch, ok := s.pending[r.GetId()]; ok {
				delete(s.pending, r.GetId())
				ch <- muxOutcome{res: r}
			} else {
				r.release()
			}
		}
		if resp.GetDraining() && !s.draining {
			// The router is shutting down: the calls it did not take go
			// by the unary RPC (to it or another router).
			s.draining, s.lastID = true, resp.GetLastId()
			for id, ch := range s.pending {
				if id > s.lastID {
					delete(s.pending, id)
					ch <- muxOutcome{err: errUnary}
				}
			}
			s.l.mu.Lock()
			s.l.brokeLocked(s, nil)
			s.l.mu.Unlock()
		}
		s.closeIfDrainedLocked()
		closing := s.closing && !s.closed
		s.mu.Unlock()
		if closing {
			s.flush()
		}
	}
}

// retire stops giving s new calls and closes it once its calls in flight
// are answered; its lane has already let go of it.
func (s *muxStream) retire() {
	s.mu.Lock()
	if s.err == nil && !s.draining {
		s.retired, s.draining, s.lastID = true, true, s.nextID
		s.closeIfDrainedLocked()
	}
	s.mu.Unlock()
	s.flush()
}

// closeIfDrainedLocked marks the sending side of a draining stream to be
// closed (by the next flush) once no call awaits an answer. The caller
// holds s.mu.
func (s *muxStream) closeIfDrainedLocked() {
	if s.draining && len(s.pending) == 0 && !s.closing {
		s.closing = true
	}
}

// fail ends the stream after err: its calls in flight fail with
// UNAVAILABLE (Canceled if the client was closed), or go by the unary RPC
// if the router refused the stream (it ran none of them).
func (s *muxStream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	code := status.Code(err)
	// A router refusing the stream itself (one that predates Exchange, or
	// credentials its auth guard rejects) ran none of its calls: the unary
	// RPC gets them, and its answer (the same refusal, for credentials).
	// So did a router ending the stream cleanly (io.EOF: status OK): it
	// does so only draining, once it answered every call it took (the
	// calls still waiting are above its last_id, or came after the drain
	// began on a stream it had told nothing yet, or on a retired stream).
	refused := err == io.EOF || code == codes.Unimplemented || !s.answered && (code == codes.Unauthenticated || code == codes.PermissionDenied)
	closed := s.l.m.closed.Load()
	s.err = err
	for id, ch := range s.pending {
		delete(s.pending, id)
		switch {
		case refused:
			ch <- muxOutcome{err: errUnary}
		case closed:
			ch <- muxOutcome{err: status.Error(codes.Canceled, "client: closed with the call in flight")}
		default:
			ch <- muxOutcome{err: muxBrokenErr(err)}
		}
	}
	s.queue = nil
	retired := s.retired
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	if retired {
		return // its end was asked for, and its lane has a new one
	}
	s.l.mu.Lock()
	s.l.brokeLocked(s, err)
	s.l.mu.Unlock()
}

// muxBrokenErr is the error of a call in flight on a stream that broke:
// UNAVAILABLE, whatever ended the stream (the call's own outcome is
// unknown, as when a unary call's connection breaks), so the call is
// retried like one.
func muxBrokenErr(err error) error {
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Code().String() + ": " + st.Message()
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("router stream broke with the call in flight: %s", msg))
}
