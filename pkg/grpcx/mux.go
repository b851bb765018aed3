package grpcx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A Mux serves unary calls framed on one long-lived stream
// (veltrix.mux.v1.Call and Result, carried by a service's Exchange RPC; see
// KVService.Exchange in kv.proto for the semantics).
//
// Each call runs exactly as grpc runs the unary RPC: the method's generated
// handler decodes the request and calls the server's whole unary
// interceptor chain (metrics and logs under the inner method, recovery, the
// UTF-8 check, the service's own interceptors such as an auth guard), with
// the stream's context (peer, incoming metadata, credentials) plus the
// call's deadline. So answers, errors, metrics and audit lines are those of
// the unary RPC.
//
// The stream's handler goroutine reads messages and hands each call to one
// of the stream's workers (started on demand, at most MuxWorkers: when all
// are busy the stream is not read, and HTTP/2 flow control holds the
// caller back). A worker that finishes a call sends, unless another worker
// is sending, every answer ready in one message (storage's Exchange has the
// same structure: services/storage/server/exchange.go).
type Mux struct {
	s       *Server
	methods map[string]*unaryMethod // allowed, by full name
}

const (
	// MuxWorkers bounds the calls one Mux stream runs at once.
	MuxWorkers = 256
	// muxBatchBytes bounds the size of one answer message; a larger answer
	// goes alone.
	muxBatchBytes = 512 << 10
	// muxResultOverhead bounds what framing adds to a response in an
	// answer message (the Result's id and tags, the message's field tag).
	muxResultOverhead = 64
)

// MuxStream is a service's Exchange stream as a Mux sees it: the service
// adapts its generated stream (its request and response messages carry
// the calls and results).
type MuxStream interface {
	// Context is the stream's context (as grpc.ServerStream's).
	Context() context.Context
	// RecvCalls returns the calls of the next message; io.EOF once the
	// caller closed its side.
	RecvCalls() ([]*muxv1.Call, error)
	// SendResults sends one message: results and, once, the draining
	// notice with the last call id taken. It must be done with results
	// when it returns (as grpc's SendMsg is): their response buffers are
	// reused.
	SendResults(results []*muxv1.Result, draining bool, lastID uint64) error
}

// NewMux returns a Mux serving the unary methods named in allowed (full
// names, "/pkg.Service/Method"), which must be registered already through
// the Server's RegisterService. Calls of other methods are answered
// UNIMPLEMENTED.
func (s *Server) NewMux(allowed []string) (*Mux, error) {
	m := &Mux{s: s, methods: map[string]*unaryMethod{}}
	for _, name := range allowed {
		um := s.methods[name]
		if um == nil {
			return nil, fmt.Errorf("grpcx: mux: %s is not a registered unary method", name)
		}
		m.methods[name] = um
	}
	return m, nil
}

type muxTask struct {
	call   *muxv1.Call
	ctx    context.Context
	cancel context.CancelFunc
}

// muxStream is one stream being served.
type muxStream struct {
	m      *Mux
	stream MuxStream
	ctx    context.Context
	work   chan muxTask
	quit   chan struct{}
	// workers counts the started workers; only the reading goroutine
	// touches it.
	workers int
	running sync.WaitGroup // calls taken and not answered

	mu       sync.Mutex
	calls    map[uint64]context.CancelFunc // in flight, to cancel
	lastID   uint64                        // highest id taken
	received bool                          // a message was received
	draining bool
	out      []*muxv1.Result // answers to send
	goaway   bool            // send the draining notice next

	// sendMu is held by the one goroutine sending; batch is its buffer
	// and sendErr the first send's error.
	sendMu  sync.Mutex
	batch   []*muxv1.Result
	sendErr error
}

// Serve serves stream until the caller closes its side (after its calls
// are answered), the stream breaks, or the server drains (Drain): then it
// sends the draining notice, answers the calls it took, and returns.
func (m *Mux) Serve(stream MuxStream) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	x := &muxStream{
		m: m, stream: stream, ctx: ctx,
		work: make(chan muxTask), quit: make(chan struct{}),
		calls: map[uint64]context.CancelFunc{},
	}
	// recv runs on its own goroutine so that a draining stream can end
	// without waiting for the caller to close its side: once the handler
	// returns, grpc cancels the stream and the pending read returns.
	recvErr := make(chan error, 1)
	go func() { recvErr <- x.recv() }()
	var err error
	select {
	case err = <-recvErr:
	case <-m.s.drain:
		x.drain()
		answered := make(chan struct{})
		go func() {
			x.running.Wait()
			close(answered)
		}()
		select {
		case <-answered:
		case err = <-recvErr:
		}
	}
	if err != nil {
		// The caller went away (or the stream broke): nobody reads answers.
		cancel()
	}
	x.running.Wait()
	close(x.quit)
	x.flush()
	if err != nil {
		return err
	}
	return x.sendErr
}

// recv reads calls until the stream ends (nil when the caller closed its
// side).
func (x *muxStream) recv() error {
	for {
		calls, err := x.stream.RecvCalls()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		x.mu.Lock()
		x.received = true
		x.mu.Unlock()
		for _, c := range calls {
			if c.GetCancel() {
				x.mu.Lock()
				if cancel := x.calls[c.GetId()]; cancel != nil {
					cancel()
				}
				x.mu.Unlock()
				continue
			}
			t := muxTask{call: c}
			if us := c.GetTimeoutMicros(); us > 0 {
				t.ctx, t.cancel = context.WithTimeout(x.ctx, MicrosTimeout(us))
			} else {
				t.ctx, t.cancel = context.WithCancel(x.ctx)
			}
			x.mu.Lock()
			if x.draining {
				x.mu.Unlock()
				t.cancel()
				continue // not taken: the caller knows by last_id
			}
			x.calls[c.GetId()] = t.cancel
			x.lastID = max(x.lastID, c.GetId())
			x.running.Add(1)
			x.mu.Unlock()
			x.dispatch(t)
		}
	}
}

// dispatch hands t to an idle worker, starts one, or waits for one when
// MuxWorkers are busy.
func (x *muxStream) dispatch(t muxTask) {
	select {
	case x.work <- t:
		return
	default:
	}
	if x.workers < MuxWorkers {
		x.workers++
		go x.worker(t)
		return
	}
	x.work <- t
}

func (x *muxStream) worker(t muxTask) {
	for {
		res := x.run(t)
		t.cancel()
		x.mu.Lock()
		delete(x.calls, t.call.GetId())
		x.out = append(x.out, res)
		x.mu.Unlock()
		x.flush()
		x.running.Done()
		select {
		case t = <-x.work:
		case <-x.quit:
			return
		}
	}
}

// drain stops taking calls and queues the draining notice (none on a
// stream that never received a message: there is nothing to tell).
func (x *muxStream) drain() {
	x.mu.Lock()
	x.draining = true
	x.goaway = x.received
	x.mu.Unlock()
	x.flush()
}

// run runs one call as grpc runs its unary RPC.
func (x *muxStream) run(t muxTask) (res *muxv1.Result) {
	res = &muxv1.Result{Id: t.call.GetId()}
	resp, err := x.m.call(t.ctx, t.call)
	if err == nil {
		res.Response = resp
		return res
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	res.Code, res.Message, res.Details = int32(st.Code()), st.Message(), st.Proto().GetDetails()
	return res
}

// call runs c through its method's generated handler and the server's
// unary interceptor chain, and returns the serialized response.
func (m *Mux) call(ctx context.Context, c *muxv1.Call) (out []byte, err error) {
	um := m.methods[c.GetMethod()]
	if um == nil {
		return nil, status.Errorf(codes.Unimplemented, "grpcx: method %s is not served on this stream", c.GetMethod())
	}
	defer func() {
		// The recovery interceptor catches a handler's panics; this one
		// catches the decoder's and the generated handler's own.
		if p := recover(); p != nil {
			m.s.logger.ErrorContext(ctx, "panic in a multiplexed call", "method", um.fullMethod, "panic", p)
			out, err = nil, status.Errorf(codes.Internal, "internal error: %v", p)
		}
	}()
	ctx = grpc.NewContextWithServerTransportStream(ctx, um.ts)
	dec := func(v any) error {
		pm, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %T is not a proto.Message", v)
		}
		var err error
		if m.s.checkUTF8 {
			err = unmarshalUTF8(c.GetRequest(), pm)
		} else {
			err = proto.Unmarshal(c.GetRequest(), pm)
		}
		if err != nil {
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return nil
	}
	resp, err := um.handler(um.impl, ctx, dec, m.s.unary)
	if err != nil {
		return nil, err
	}
	pm, ok := resp.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %T is not a proto.Message", resp)
	}
	if out, err = marshalResponse(pm); err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	// As the unary RPC's send would: an answer larger than a message may
	// be is RESOURCE_EXHAUSTED (sending it would end the stream).
	if len(out)+muxResultOverhead > m.s.maxMsg {
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", len(out), m.s.maxMsg)
	}
	return out, nil
}

// flush sends the ready answers unless another goroutine is sending:
// that one sends them. Whoever sends looks again after letting go of
// sendMu, so no answer is left behind, and a worker finding nobody
// sending sends its own answer (with any others ready) without waking
// another goroutine.
func (x *muxStream) flush() {
	for x.sendMu.TryLock() {
		x.sendLocked()
		x.sendMu.Unlock()
		x.mu.Lock()
		more := len(x.out) > 0 || x.goaway
		x.mu.Unlock()
		if !more {
			return
		}
	}
}

// sendLocked sends the ready answers, up to muxBatchBytes a message. The
// caller holds sendMu.
func (x *muxStream) sendLocked() {
	x.mu.Lock()
	x.batch, x.out = x.out, x.batch[:0]
	goaway, last := x.goaway, x.lastID
	x.goaway = false
	x.mu.Unlock()
	if goaway && x.sendErr == nil {
		if err := x.stream.SendResults(nil, true, last); err != nil {
			x.failSend(err)
		}
	}
	for out := x.batch; len(out) > 0 && x.sendErr == nil; {
		n, size := 0, 0
		for n < len(out) && (n == 0 || size < muxBatchBytes) {
			size += resultBytes(out[n])
			n++
		}
		if n > 1 && size > muxBatchBytes {
			n-- // the last one would take the message over the bound
		}
		if err := x.stream.SendResults(out[:n], false, 0); err != nil {
			x.failSend(err)
		}
		releaseResponses(out[:n])
		out = out[n:]
	}
	clear(x.batch)
	x.batch = x.batch[:0]
}

// resultBytes estimates a result's encoded size.
func resultBytes(r *muxv1.Result) int {
	n := muxResultOverhead + len(r.GetResponse()) + len(r.GetMessage())
	for _, d := range r.GetDetails() {
		n += 16 + len(d.GetTypeUrl()) + len(d.GetValue())
	}
	return n
}

func (x *muxStream) failSend(err error) {
	if x.sendErr == nil {
		x.sendErr = err
		x.m.s.logger.Debug("mux stream send failed", "err", fmt.Sprint(err))
	}
}

// errNoHeaders refuses a multiplexed call's attempt to set headers or
// trailers: it shares the stream's, which are not its own to set.
var errNoHeaders = errors.New("grpcx: a call multiplexed on a stream has no headers or trailers of its own")

// muxTransportStream is what a multiplexed call sees as its transport
// stream: its own method name (grpc.Method), and no headers or trailers.
type muxTransportStream struct{ method string }

func (t *muxTransportStream) Method() string               { return t.method }
func (t *muxTransportStream) SetHeader(metadata.MD) error  { return errNoHeaders }
func (t *muxTransportStream) SendHeader(metadata.MD) error { return errNoHeaders }
func (t *muxTransportStream) SetTrailer(metadata.MD) error { return errNoHeaders }

// MicrosTimeout is a framed call's timeout_micros (> 0) as a Duration,
// clamped as grpc clamps a grpc-timeout too long for one: a huge value (a
// client's "no deadline") must not wrap around to a deadline already past.
func MicrosTimeout(us int64) time.Duration {
	if us > math.MaxInt64/int64(time.Microsecond) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(us) * time.Microsecond
}
