package streammux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Defaults of ClientOptions.
const (
	// DefaultMaxInFlight bounds the calls waiting on one stream.
	DefaultMaxInFlight = 1024
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before a new
	// stream after one broke (unary RPCs meanwhile).
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = time.Second
	// DefaultUnimplementedRetry is how long a server that answered
	// UNIMPLEMENTED (an older version) is called by the unary RPCs before
	// the stream is tried again.
	DefaultUnimplementedRetry = time.Minute
	// DefaultPeerWorkers: see ClientOptions.PeerWorkers.
	DefaultPeerWorkers = 256
	// sharedRetire: a stream opened to a server that another lane's
	// stream already uses (the others were not ready) is replaced after
	// this long, so that load spreads again once they are.
	sharedRetire = time.Second
	// maxBatchCalls bounds one message of calls: with the callers' bound
	// on a streamed call's size (256 KiB), to 32 MiB, under the message
	// size limit.
	maxBatchCalls = 128
)

// ErrUnary is a Client's answer meaning: make the unary call (no stream
// now, the server does not serve the stream, or it did not take the
// call). Nothing of the call ran. Compare with ==.
var ErrUnary = errors.New("streammux: use the unary RPC")

// Call is what a Client and a Server read of a call frame (the generated
// getters of a protocol's call message).
type Call interface {
	GetId() uint64
	GetCancel() bool
	GetTimeoutMicros() int64
}

// Result is what a Client reads of a result frame.
type Result interface {
	GetId() uint64
	GetCode() int32
	GetMessage() string
	GetDetails() []*anypb.Any
}

// ClientStream is one stream of a protocol, adapted by its caller from
// the generated stream (whose Send and Recv these names leave free, so an
// adapter can embed it).
type ClientStream[C Call, R Result] interface {
	// Context is the stream's context (its peer is read from it).
	Context() context.Context
	// SendCalls sends calls in one message.
	SendCalls(calls []C) error
	// RecvResults returns the next message's results and draining notice.
	RecvResults() (results []R, draining bool, lastID uint64, err error)
	// CloseSend closes the sending side.
	CloseSend() error
}

// ClientFrames writes a protocol's call frames.
type ClientFrames[C Call] interface {
	// Number sets call's id and timeout_micros (0: no deadline).
	Number(call C, id uint64, timeoutMicros int64)
	// Cancel returns the frame cancelling call id.
	Cancel(id uint64) C
}

// ClientOptions configures a Client. Zero numbers take the defaults.
type ClientOptions[C Call, R Result] struct {
	// Open opens a stream, which lives until ctx is cancelled. Required.
	Open func(ctx context.Context) (ClientStream[C, R], error)
	// Frames writes the call frames. Required.
	Frames ClientFrames[C]
	// Lanes is how many streams are used in turn, each opened on a server
	// no other lane's stream uses when one is ready (a connection
	// balancing over several servers). Default: 1.
	Lanes int
	// MaxInFlight bounds the calls in flight on one stream; a call beyond
	// it waits for a slot (or its context). Default: DefaultMaxInFlight.
	// Keep it at most the server's Workers + Backlog (1,280 by default):
	// beyond that the server stops reading the stream while it is full, so
	// a cancel frame waits for a running call to end, and calls without a
	// deadline that never end would hold the stream.
	MaxInFlight int
	// MinBackoff, MaxBackoff: see DefaultMinBackoff.
	MinBackoff, MaxBackoff time.Duration
	// UnimplementedRetry: see DefaultUnimplementedRetry.
	UnimplementedRetry time.Duration
	// PeerWorkers is how many of a stream's calls the server runs at
	// once, reading nothing more until one ends (Server.Workers, or fewer
	// for an older server): a caller sending beyond that many unanswered
	// calls could be held by HTTP/2 flow control past its context, so the
	// sending goes to a goroutine of its own. Default: DefaultPeerWorkers.
	PeerWorkers int
	// Broken names the stream in the error of a call in flight when it
	// breaks ("storage stream"). Default: "stream".
	Broken string
	// ClosedErr is the error of a call in flight when Close ends its
	// stream. Default: CANCELED.
	ClosedErr error
}

// Client multiplexes calls over streams of one protocol: numbered calls,
// natural batching (whichever caller finds nobody sending writes every
// call waiting in one message, its own included), cancel frames,
// deadlines as timeout_micros, bounded calls in flight, a broken stream
// failing only its calls in flight (UNAVAILABLE) and a new one after a
// backoff, unary RPCs while there is none, and the calls a refusing or
// draining server did not take answered ErrUnary. Safe for concurrent use.
type Client[C Call, R Result] struct {
	o      ClientOptions[C, R]
	lanes  []*lane[C, R]
	next   atomic.Uint64
	closed atomic.Bool
}

// NewClient returns a Client; it opens no stream before the first call.
func NewClient[C Call, R Result](o ClientOptions[C, R]) *Client[C, R] {
	if o.Lanes <= 0 {
		o.Lanes = 1
	}
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
	if o.PeerWorkers <= 0 {
		o.PeerWorkers = DefaultPeerWorkers
	}
	if o.Broken == "" {
		o.Broken = "stream"
	}
	if o.ClosedErr == nil {
		o.ClosedErr = status.Error(codes.Canceled, "streammux: client closed with the call in flight")
	}
	c := &Client[C, R]{o: o}
	for range o.Lanes {
		c.lanes = append(c.lanes, &lane[C, R]{c: c})
	}
	return c
}

// Close ends the streams, failing their calls in flight with ClosedErr;
// later calls answer ErrUnary.
func (c *Client[C, R]) Close() {
	c.closed.Store(true)
	for _, l := range c.lanes {
		l.mu.Lock()
		s := l.cur
		l.cur, l.closed = nil, true
		l.mu.Unlock()
		if s != nil {
			s.fail(status.Error(codes.Canceled, "streammux: client closed"))
		}
	}
}

// lane picks the lane of the next call.
func (c *Client[C, R]) lane() *lane[C, R] {
	if len(c.lanes) == 1 {
		return c.lanes[0]
	}
	return c.lanes[c.next.Add(1)%uint64(len(c.lanes))]
}

// Do sends call and waits for its result. The error is the call's as its
// unary RPC would return it (the result's status, or the context's), or
// ErrUnary.
func (c *Client[C, R]) Do(ctx context.Context, call C) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, status.FromContextError(err).Err()
	}
	s, err := c.lane().stream(ctx)
	if err != nil {
		return zero, err
	}
	if s == nil {
		return zero, ErrUnary
	}
	res, err := s.call(ctx, call)
	if err != nil {
		return zero, err
	}
	if err := resultErr(res); err != nil {
		return zero, err
	}
	return res, nil
}

// Go sends call without waiting: done gets its result (or error, as Do's)
// exactly once, under a lock of the stream: it must not block. It reports
// false, having done nothing, when no stream is open or it has no free
// slot (Do would open one, or wait for a slot). A caller sending one
// write to several servers needs no goroutine per call this way.
func (c *Client[C, R]) Go(ctx context.Context, call C, done func(R, error)) bool {
	l := c.lane()
	l.mu.Lock()
	s := l.cur
	l.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	default:
		return false
	}
	a := &async[R]{done: done}
	s.mu.Lock()
	id, ok := s.enqueueLocked(ctx, call, waiter[R]{async: a})
	if ok {
		a.stop = context.AfterFunc(ctx, func() {
			if s.abandon(id) {
				<-s.slots
				var zero R
				done(zero, status.FromContextError(ctx.Err()).Err())
			}
		})
	}
	s.mu.Unlock()
	if !ok {
		<-s.slots
		var zero R
		done(zero, ErrUnary)
		return true
	}
	s.flush()
	return true
}

// resultErr is the error a result carries, as its unary RPC would return
// it; nil for OK.
func resultErr[R Result](res R) error {
	if res.GetCode() == int32(codes.OK) {
		return nil
	}
	return status.FromProto(&spb.Status{Code: res.GetCode(), Message: res.GetMessage(), Details: res.GetDetails()}).Err()
}

// lane is one stream at a time and when the next may open.
type lane[C Call, R Result] struct {
	c        *Client[C, R]
	mu       sync.Mutex
	cur      *stream[C, R] // the stream in use; nil: open one (or not before next)
	next     time.Time     // no new stream before
	failures int           // breaks since a stream last answered
	opened   chan struct{} // non-nil while a stream is being opened; closed when it is
	closed   bool
	// healthy is set when the current stream answered (the next break
	// backs off from the start again).
	healthy atomic.Bool
}

// stream returns the stream to use, opening one if none is open and the
// backoff allows; nil means use the unary RPC. The stream is opened on a
// goroutine of its own (opening may wait for a connection): calls made
// meanwhile wait for it, or for their context.
func (l *lane[C, R]) stream(ctx context.Context) (*stream[C, R], error) {
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
		opened := make(chan struct{})
		l.opened = opened
		l.mu.Unlock()
		go l.opening(opened)
	}
}

// opening opens a stream for the lane and closes opened when done.
func (l *lane[C, R]) opening(opened chan struct{}) {
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

// open opens a stream, on a server no other lane's stream uses if one is
// ready: round robin picks the next server for each new stream.
func (l *lane[C, R]) open() (*stream[C, R], error) {
	c := l.c
	for try := 1; ; try++ {
		sctx, cancel := context.WithCancel(context.Background())
		cs, err := c.o.Open(sctx)
		if err != nil {
			cancel()
			return nil, err
		}
		s := &stream[C, R]{
			l: l, cs: cs, cancel: cancel,
			slots:   make(chan struct{}, c.o.MaxInFlight),
			pending: map[uint64]waiter[R]{},
			done:    make(chan struct{}),
		}
		if len(c.lanes) == 1 {
			return s, nil
		}
		if p, ok := peer.FromContext(cs.Context()); ok && p.Addr != nil {
			s.peer = p.Addr.String()
		}
		if !c.shared(l, s.peer) {
			return s, nil
		}
		if try >= len(c.lanes) {
			s.retireAt = time.Now().Add(sharedRetire)
			return s, nil
		}
		cancel() // nothing was sent on it
	}
}

// shared reports whether a lane other than l has a stream to addr.
func (c *Client[C, R]) shared(l *lane[C, R], addr string) bool {
	for _, o := range c.lanes {
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

// brokeLocked forgets s (nil: a stream that failed to open) after err, and
// sets when the next may open. The caller holds l.mu.
func (l *lane[C, R]) brokeLocked(s *stream[C, R], err error) {
	if s != nil && l.cur != s {
		// Forgotten already (its drain notice, or retired for another):
		// one stream is one break, not one per notice.
		return
	}
	l.cur = nil
	if status.Code(err) == codes.Unimplemented {
		l.next = time.Now().Add(l.c.o.UnimplementedRetry)
		return
	}
	if l.healthy.Swap(false) {
		l.failures = 0
	}
	l.failures++
	d := l.c.o.MinBackoff << min(l.failures-1, 16)
	l.next = time.Now().Add(min(d, l.c.o.MaxBackoff))
}

// outcome is a call's end: its result, an error, or ErrUnary.
type outcome[R Result] struct {
	res R
	err error
}

// waiter is how a call in flight gets its outcome: a caller waiting on ch
// (Do), or a callback (Go).
type waiter[R Result] struct {
	ch    chan outcome[R]
	async *async[R]
}

// async is a Go call's callback and the release of its context watch.
type async[R Result] struct {
	done func(R, error)
	stop func() bool
}

// deliver hands o to w. The caller holds the stream's mu.
func (s *stream[C, R]) deliver(w waiter[R], o outcome[R]) {
	if w.ch != nil {
		w.ch <- o
		return
	}
	<-s.slots
	w.async.stop()
	if o.err == nil {
		if o.err = resultErr(o.res); o.err != nil {
			var zero R
			o.res = zero
		}
	}
	w.async.done(o.res, o.err)
}

// queued is a frame waiting to be sent.
type queued[C Call] struct {
	call   C
	cancel bool // a cancel frame: it is not answered
}

// stream is one stream and its calls in flight.
type stream[C Call, R Result] struct {
	l        *lane[C, R]
	cs       ClientStream[C, R]
	cancel   context.CancelFunc
	peer     string    // the server's address (with several lanes)
	retireAt time.Time // non-zero: replace the stream after (set before use)
	slots    chan struct{}
	done     chan struct{} // closed when the stream ended
	// sendMu is held by the one goroutine sending; batch is its buffer.
	sendMu sync.Mutex
	batch  []C

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]waiter[R] // calls awaiting their answer
	queue   []queued[C]
	// unanswered counts the calls sent whose result has not come (those
	// whose caller stopped waiting included: the server still runs them).
	unanswered int
	err        error // why the stream ended; set once
	// answered: the server sent something (so it accepted the stream).
	answered bool
	// draining: the server takes no call above lastID; the stream takes
	// no new call and is closed once pending is empty.
	draining bool
	lastID   uint64
	retired  bool // draining by the client's choice (retire), not the server's
	closing  bool // CloseSend is due
	closed   bool // CloseSend was called
}

// call sends call and waits for its outcome.
func (s *stream[C, R]) call(ctx context.Context, call C) (R, error) {
	var zero R
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return zero, status.FromContextError(ctx.Err()).Err()
	case <-s.done:
		return zero, ErrUnary
	}
	defer func() { <-s.slots }()
	ch := make(chan outcome[R], 1)
	s.mu.Lock()
	id, ok := s.enqueueLocked(ctx, call, waiter[R]{ch: ch})
	s.mu.Unlock()
	if !ok {
		return zero, ErrUnary // not sent: the unary RPC is as good
	}
	s.flush()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		s.abandon(id)
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}

// enqueueLocked numbers call, registers w for its outcome and queues it;
// false, having done nothing, when the stream takes no new call. The
// caller holds s.mu, and flushes after letting go of it.
func (s *stream[C, R]) enqueueLocked(ctx context.Context, call C, w waiter[R]) (uint64, bool) {
	if s.err != nil || s.draining {
		return 0, false
	}
	s.nextID++
	id := s.nextID
	var us int64
	if d, ok := ctx.Deadline(); ok {
		us = max(time.Until(d).Microseconds(), 1)
	}
	s.l.c.o.Frames.Number(call, id, us)
	s.pending[id] = w
	s.queue = append(s.queue, queued[C]{call: call})
	return id, true
}

// abandon stops waiting for call id: the server is told to cancel it and
// its answer will be dropped. It reports whether the call was still
// pending (its outcome not delivered).
func (s *stream[C, R]) abandon(id uint64) bool {
	s.mu.Lock()
	_, ok := s.pending[id]
	if ok {
		delete(s.pending, id)
		if s.err == nil {
			s.queue = append(s.queue, queued[C]{call: s.l.c.o.Frames.Cancel(id), cancel: true})
		}
		s.closeIfDrainedLocked()
	}
	s.mu.Unlock()
	s.flush()
	return ok
}

// flush sends the queued calls, as many as fit in one message each time,
// unless another goroutine is sending: that one sends them. Whoever sends
// looks at the queue again after letting go of sendMu, so no call is left
// behind, and a caller whose queue was empty sends its own call without
// waking another goroutine.
//
// Unless the send may block: a server running PeerWorkers of the stream's
// calls may read nothing more (HTTP/2 flow control holds the send) until
// one ends, and a caller sending would stay there past its context
// (whoever's calls it was sending). Beyond that many calls unanswered,
// the sending goes to a goroutine of its own.
func (s *stream[C, R]) flush() {
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
func (s *stream[C, R]) sendRest() {
	s.sendLocked(false)
	s.sendMu.Unlock()
	for s.more() && s.sendMu.TryLock() {
		s.sendLocked(false)
		s.sendMu.Unlock()
	}
}

// more reports whether something is left to send.
func (s *stream[C, R]) more() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil && (len(s.queue) > 0 || s.closing && !s.closed)
}

// sendLocked sends until the queue is empty, or, inline (a caller
// sending), until the next message would take the calls unanswered beyond
// PeerWorkers: then it returns false, the rest left queued. The caller
// holds sendMu.
func (s *stream[C, R]) sendLocked(inline bool) bool {
	for {
		s.mu.Lock()
		n := min(len(s.queue), maxBatchCalls)
		calls := 0
		for _, q := range s.queue[:n] {
			if !q.cancel {
				calls++
			}
		}
		if inline && calls > 0 && s.unanswered+calls > s.l.c.o.PeerWorkers {
			s.mu.Unlock()
			return false
		}
		s.unanswered += calls
		for _, q := range s.queue[:n] {
			s.batch = append(s.batch, q.call)
		}
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
			return true
		}
		if n == 0 {
			return true
		}
		err := s.cs.SendCalls(s.batch)
		clear(s.batch)
		s.batch = s.batch[:0]
		if err != nil {
			// io.EOF: the stream ended; recv gets its status.
			return true
		}
	}
}

// recv delivers answers until the stream ends.
func (s *stream[C, R]) recv() {
	l := s.l
	for {
		results, draining, lastID, err := s.cs.RecvResults()
		if err != nil {
			s.fail(err)
			return
		}
		if !l.healthy.Load() {
			l.healthy.Store(true)
		}
		s.mu.Lock()
		s.answered = true
		s.unanswered -= len(results)
		for _, r := range results {
			if w, ok := s.pending[r.GetId()]; ok {
				delete(s.pending, r.GetId())
				s.deliver(w, outcome[R]{res: r})
			}
		}
		if draining && !s.draining {
			// The server is shutting down: the calls it did not take go
			// by the unary RPC (to it or another server).
			s.draining, s.lastID = true, lastID
			for id, w := range s.pending {
				if id > s.lastID {
					delete(s.pending, id)
					s.deliver(w, outcome[R]{err: ErrUnary})
				}
			}
			l.mu.Lock()
			l.brokeLocked(s, nil)
			l.mu.Unlock()
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
func (s *stream[C, R]) retire() {
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
func (s *stream[C, R]) closeIfDrainedLocked() {
	if s.draining && len(s.pending) == 0 && !s.closing {
		s.closing = true
	}
}

// fail ends the stream after err: its calls in flight fail with
// UNAVAILABLE (ClosedErr if the client was closed), or go by the unary RPC
// if the server refused the stream (it ran none of them).
func (s *stream[C, R]) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	code := status.Code(err)
	// A server refusing the stream itself (one that predates it, or
	// credentials its auth guard rejects) ran none of its calls: the unary
	// RPC gets them, and its answer (the same refusal, for credentials).
	// So did a server ending the stream cleanly (io.EOF: status OK): it
	// does so only draining, once it answered every call it took (the
	// calls still waiting are above its last_id, or came after the drain
	// began on a stream it had told nothing yet, or on a retired stream).
	refused := err == io.EOF || code == codes.Unimplemented || !s.answered && (code == codes.Unauthenticated || code == codes.PermissionDenied)
	c := s.l.c
	var broken error
	switch {
	case refused:
		broken = ErrUnary
	case c.closed.Load():
		broken = c.o.ClosedErr
	default:
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = st.Code().String() + ": " + st.Message()
		}
		// The call's own outcome is unknown, as when a unary call's
		// connection breaks: UNAVAILABLE, retried like one.
		broken = status.Error(codes.Unavailable, fmt.Sprintf("%s broke with the call in flight: %s", c.o.Broken, msg))
	}
	s.err = err
	for id, w := range s.pending {
		delete(s.pending, id)
		s.deliver(w, outcome[R]{err: broken})
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
