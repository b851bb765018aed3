package streammux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Defaults of a Server.
const (
	// DefaultWorkers bounds the calls one stream runs at once.
	DefaultWorkers = 256
	// DefaultBacklog bounds the calls a stream has read beyond those its
	// workers run: reading goes on meanwhile, so cancel frames still
	// reach the calls running; beyond it the stream is not read (HTTP/2
	// flow control holds the caller back).
	DefaultBacklog = 1024
	// DefaultBatchBytes bounds the (estimated) size of one answer
	// message; a larger answer goes alone.
	DefaultBatchBytes = 512 << 10
)

// ServerStream is one stream of a protocol as a Server sees it, adapted
// by its service from the generated stream (whose Recv and Send these
// names leave free, so an adapter can embed it).
type ServerStream[C Call, R any] interface {
	// Context is the stream's context.
	Context() context.Context
	// RecvCalls returns the calls of the next message; io.EOF once the
	// caller closed its side. It must return (with an error) once the
	// stream's context ends, as a gRPC stream's Recv does: the server's
	// reading goroutine relies on it to end.
	RecvCalls() ([]C, error)
	// SendResults sends one message: results and, once, the draining
	// notice with the last call id taken. It must be done with results
	// when it returns (as gRPC's SendMsg is): Handler.Sent may reuse them.
	SendResults(results []R, draining bool, lastID uint64) error
}

// Handler runs a protocol's calls.
type Handler[C Call, R any] interface {
	// Run runs call as its unary RPC would and returns its result frame,
	// its id set (an error as the result's status). It recovers its own
	// panics.
	Run(ctx context.Context, call C) R
	// Size estimates a result frame's encoded size.
	Size(res R) int
	// Sent is called with results once a SendResults of them returned
	// (sent or failed): the handler may reuse what they hold.
	Sent(results []R)
}

// Server serves calls multiplexed on streams of one protocol: the
// stream's handler reads messages and hands each call to one of the
// stream's workers (started on demand, at most Workers; calls beyond wait
// in a backlog, and beyond Backlog the stream is not read). A worker runs
// the call, then, unless another worker is sending, sends every answer
// ready in one message. A cancel frame cancels its call's context; a
// call's timeout_micros is its deadline. When Drain is closed the stream
// takes no more calls, tells the caller the last call it took, answers
// those and ends.
type Server[C Call, R any] struct {
	// Handler runs the calls. Required.
	Handler Handler[C, R]
	// Drain is closed when the server starts shutting down. Nil: never.
	Drain <-chan struct{}
	// Logger logs failed sends. Required.
	Logger *slog.Logger
	// Workers, Backlog, BatchBytes: zero takes DefaultWorkers,
	// DefaultBacklog, DefaultBatchBytes.
	Workers, Backlog, BatchBytes int
}

type task[C Call] struct {
	call   C
	ctx    context.Context
	cancel context.CancelFunc
}

// serverStream is one stream being served.
type serverStream[C Call, R any] struct {
	srv     *Server[C, R]
	stream  ServerStream[C, R]
	ctx     context.Context
	work    chan task[C] // to an idle worker
	quit    chan struct{}
	running sync.WaitGroup // calls taken and not answered

	mu       sync.Mutex
	workers  int                           // started
	idle     int                           // waiting on work, each owed one task or quit
	backlog  []task[C]                     // taken, waiting for a worker
	freed    sync.Cond                     // on mu: the backlog shrank
	calls    map[uint64]context.CancelFunc // in flight, to cancel
	lastID   uint64                        // highest id taken
	received bool                          // a message was received
	draining bool
	out      []R  // answers to send
	goaway   bool // send the draining notice next

	// sendMu is held by the one goroutine sending; batch is its buffer
	// and sendErr the first send's error.
	sendMu  sync.Mutex
	batch   []R
	sendErr error
}

// Serve serves stream until the caller closes its side (after its calls
// are answered), the stream breaks, or Drain is closed: then it sends the
// draining notice, answers the calls it took, and returns.
func (srv *Server[C, R]) Serve(stream ServerStream[C, R]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	x := &serverStream[C, R]{
		srv: srv, stream: stream, ctx: ctx,
		work: make(chan task[C]), quit: make(chan struct{}),
		calls: map[uint64]context.CancelFunc{},
	}
	x.freed.L = &x.mu
	// recv runs on its own goroutine so that a draining stream can end
	// without waiting for the caller to close its side: once the handler
	// returns, grpc cancels the stream and the pending read returns.
	recvErr := make(chan error, 1)
	go func() { recvErr <- x.recv() }()
	var err error
	select {
	case err = <-recvErr:
	case <-srv.Drain:
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
func (x *serverStream[C, R]) recv() error {
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
			t := task[C]{call: c}
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
			x.dispatchLocked(t)
		}
	}
}

// dispatchLocked hands t to an idle worker, starts one, or leaves it in
// the backlog for the next worker free, waiting for room there when it is
// full. The caller holds x.mu; dispatchLocked lets go of it.
func (x *serverStream[C, R]) dispatchLocked(t task[C]) {
	switch {
	case x.idle > 0:
		x.idle--
		x.mu.Unlock()
		x.work <- t // the idle worker is there, or on its way
	case x.workers < x.srv.workers():
		x.workers++
		x.mu.Unlock()
		go x.worker(t)
	default:
		for len(x.backlog) >= x.srv.backlog() {
			x.freed.Wait()
		}
		x.backlog = append(x.backlog, t)
		x.mu.Unlock()
	}
}

func (x *serverStream[C, R]) worker(t task[C]) {
	for {
		res := x.srv.Handler.Run(t.ctx, t.call)
		t.cancel()
		x.mu.Lock()
		delete(x.calls, t.call.GetId())
		x.out = append(x.out, res)
		x.mu.Unlock()
		x.flush()
		x.running.Done()
		x.mu.Lock()
		if len(x.backlog) > 0 {
			t = x.backlog[0]
			x.backlog[0] = task[C]{}
			x.backlog = x.backlog[1:]
			if len(x.backlog) == 0 {
				x.backlog = x.backlog[:0:0] // let the array go
			}
			x.freed.Signal()
			x.mu.Unlock()
			continue
		}
		x.idle++
		x.mu.Unlock()
		select {
		case t = <-x.work:
		case <-x.quit:
			return
		}
	}
}

// drain stops taking calls and queues the draining notice (none on a
// stream that never received a message: there is nothing to tell).
func (x *serverStream[C, R]) drain() {
	x.mu.Lock()
	x.draining = true
	x.goaway = x.received
	x.mu.Unlock()
	x.flush()
}

// flush sends the ready answers unless another goroutine is sending:
// that one sends them. Whoever sends looks again after letting go of
// sendMu, so no answer is left behind, and a worker finding nobody
// sending sends its own answer (with any others ready) without waking
// another goroutine.
func (x *serverStream[C, R]) flush() {
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

// sendLocked sends the ready answers, up to BatchBytes a message. The
// caller holds sendMu.
func (x *serverStream[C, R]) sendLocked() {
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
	limit := x.srv.batchBytes()
	for out := x.batch; len(out) > 0 && x.sendErr == nil; {
		n, size := 0, 0
		for n < len(out) && (n == 0 || size < limit) {
			size += x.srv.Handler.Size(out[n])
			n++
		}
		if n > 1 && size > limit {
			n-- // the last one would take the message over the bound
		}
		if err := x.stream.SendResults(out[:n], false, 0); err != nil {
			x.failSend(err)
		}
		x.srv.Handler.Sent(out[:n])
		out = out[n:]
	}
	clear(x.batch)
	x.batch = x.batch[:0]
}

func (x *serverStream[C, R]) failSend(err error) {
	if x.sendErr == nil {
		x.sendErr = err
		x.srv.Logger.Debug("multiplexed stream send failed", "err", fmt.Sprint(err))
	}
}

func (srv *Server[C, R]) workers() int {
	if srv.Workers > 0 {
		return srv.Workers
	}
	return DefaultWorkers
}

func (srv *Server[C, R]) backlog() int {
	if srv.Backlog > 0 {
		return srv.Backlog
	}
	return DefaultBacklog
}

func (srv *Server[C, R]) batchBytes() int {
	if srv.BatchBytes > 0 {
		return srv.BatchBytes
	}
	return DefaultBatchBytes
}

// MicrosTimeout is a framed call's timeout_micros (> 0) as a Duration,
// clamped as grpc clamps a grpc-timeout too long for one: a huge value (a
// client's "no deadline") must not wrap around to a deadline already past.
func MicrosTimeout(us int64) time.Duration {
	if us > math.MaxInt64/int64(time.Microsecond) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(us) * time.Microsecond
}
