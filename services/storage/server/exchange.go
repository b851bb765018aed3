package server

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Exchange serves Read, BatchRead and Apply calls framed on one long-lived
// stream (the router's hot path; see the RPC's doc in storage.proto).
//
// The handler's goroutine reads messages and hands each call to one of the
// stream's workers (started on demand, at most exchangeWorkers: when all
// are busy the stream is not read, and HTTP/2 flow control holds the
// caller back). A worker runs the call through the same method as the
// unary RPC, so answers and errors are those of the unary path, and
// records it under the unary method's gRPC metrics (grpcx.InnerCalls).
// Then, unless another worker is sending, it sends every answer ready in
// one message.
const (
	exchangeWorkers = 256
	// exchangeBatchBytes bounds the (estimated) size of one answer
	// message; a larger answer goes alone. The router decodes a message
	// whole before handing out any of its answers.
	exchangeBatchBytes = 512 << 10
	// exchangeStreamWindow and exchangeConnWindow are the HTTP/2
	// flow-control windows the node grants for what it receives: one
	// Exchange stream carries the calls that had a stream, and a 64 KiB
	// window, each (routers use the same: storagemux.StreamWindow).
	exchangeStreamWindow = 4 << 20
	exchangeConnWindow   = 8 << 20
)

// exchangeCalls records the calls Exchange carries as the unary RPCs'.
type exchangeCalls struct {
	read, batchRead, apply *grpcx.InnerCalls
}

func newExchangeCalls(g *grpcx.Server) *exchangeCalls {
	if g == nil {
		return &exchangeCalls{}
	}
	return &exchangeCalls{
		read:      g.InnerCalls(storagev1.StorageService_Read_FullMethodName),
		batchRead: g.InnerCalls(storagev1.StorageService_BatchRead_FullMethodName),
		apply:     g.InnerCalls(storagev1.StorageService_Apply_FullMethodName),
	}
}

type exchangeTask struct {
	call   *storagev1.ExchangeCall
	ctx    context.Context
	cancel context.CancelFunc
}

// exchange is one Exchange stream being served.
type exchange struct {
	svc    *service
	stream storagev1.StorageService_ExchangeServer
	ctx    context.Context
	work   chan exchangeTask
	quit   chan struct{}
	// workers counts the started workers; only the reading goroutine
	// touches it.
	workers int
	running sync.WaitGroup // calls taken and not answered

	mu       sync.Mutex
	calls    map[uint64]context.CancelFunc // in flight, to cancel
	lastID   uint64                        // highest id taken
	draining bool
	out      []*storagev1.ExchangeResult // answers to send
	goaway   bool                        // send the draining message next

	// sendMu is held by the one goroutine sending; batch is its buffer
	// and sendErr the first send's error.
	sendMu  sync.Mutex
	batch   []*storagev1.ExchangeResult
	sendErr error
}

func (svc *service) Exchange(stream storagev1.StorageService_ExchangeServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	x := &exchange{
		svc: svc, stream: stream, ctx: ctx,
		work: make(chan exchangeTask), quit: make(chan struct{}),
		calls: map[uint64]context.CancelFunc{},
	}
	// A node shutting down takes no more calls; the caller closes its
	// side once the others are answered, which ends recv.
	recvDone, drained := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(drained)
		select {
		case <-svc.s.exchangeDrain:
			x.drain()
		case <-recvDone:
		}
	}()
	err := x.recv()
	close(recvDone)
	if err != nil {
		// The caller went away (or the stream broke): nobody reads answers.
		cancel()
	}
	x.running.Wait()
	close(x.quit)
	<-drained
	x.flush()
	if err != nil {
		return err
	}
	return x.sendErr
}

// recv reads calls until the stream ends (nil when the caller closed its
// side).
func (x *exchange) recv() error {
	for {
		req, err := x.stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, c := range req.GetCalls() {
			if c.GetCancel() {
				x.mu.Lock()
				if cancel := x.calls[c.GetId()]; cancel != nil {
					cancel()
				}
				x.mu.Unlock()
				continue
			}
			var t exchangeTask
			t.call = c
			if us := c.GetTimeoutMicros(); us > 0 {
				t.ctx, t.cancel = context.WithTimeout(x.ctx, grpcx.MicrosTimeout(us))
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
// exchangeWorkers are busy.
func (x *exchange) dispatch(t exchangeTask) {
	select {
	case x.work <- t:
		return
	default:
	}
	if x.workers < exchangeWorkers {
		x.workers++
		go x.worker(t)
		return
	}
	x.work <- t
}

func (x *exchange) worker(t exchangeTask) {
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

// drain stops taking calls and queues the draining message.
func (x *exchange) drain() {
	x.mu.Lock()
	x.draining = true
	x.goaway = true
	x.mu.Unlock()
	x.flush()
}

// run runs one call as its unary RPC would.
func (x *exchange) run(t exchangeTask) (res *storagev1.ExchangeResult) {
	res = &storagev1.ExchangeResult{Id: t.call.GetId()}
	var err error
	defer func() {
		if p := recover(); p != nil {
			x.svc.s.logger.Error("panic in Exchange call", "panic", p)
			err = status.Errorf(codes.Internal, "internal error: %v", p)
			res.Response = nil
		}
		if err != nil {
			st := status.Convert(err)
			res.Code, res.Message, res.Details = int32(st.Code()), st.Message(), st.Proto().GetDetails()
		}
	}()
	m := x.svc.exchange
	if m == nil {
		m = &exchangeCalls{}
	}
	switch r := t.call.GetRequest().(type) {
	case *storagev1.ExchangeCall_Read:
		start := m.read.Start()
		var resp *storagev1.ReadResponse
		if resp, err = x.svc.Read(t.ctx, r.Read); err == nil {
			err = fits(resp, resp.GetRecord().GetValue())
		}
		m.read.Done(t.ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_Read{Read: resp}
		}
	case *storagev1.ExchangeCall_BatchRead:
		start := m.batchRead.Start()
		var resp *storagev1.BatchReadResponse
		if resp, err = x.svc.BatchRead(t.ctx, r.BatchRead); err == nil {
			err = fits(resp, nil)
		}
		m.batchRead.Done(t.ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_BatchRead{BatchRead: resp}
		}
	case *storagev1.ExchangeCall_Apply:
		start := m.apply.Start()
		var resp *storagev1.ApplyResponse
		resp, err = x.svc.Apply(t.ctx, r.Apply)
		m.apply.Done(t.ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_Apply{Apply: resp}
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "calls: call %d carries no request", t.call.GetId())
	}
	return res
}

// fits refuses an answer larger than a gRPC message may be, as the unary
// RPC's send would (RESOURCE_EXHAUSTED); sending it would end the stream.
// The exact size is computed only for answers that may be that large.
func fits(m proto.Message, value []byte) error {
	if value != nil && len(value) < grpcx.MaxMessageSize/2 {
		return nil
	}
	if n := answerBytes(m); n < grpcx.MaxMessageSize/2 {
		return nil
	}
	if n := proto.Size(m); n > grpcx.MaxMessageSize {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, grpcx.MaxMessageSize)
	}
	return nil
}

// answerBytes estimates an answer's encoded size from its values.
func answerBytes(m proto.Message) int {
	switch r := m.(type) {
	case *storagev1.ReadResponse:
		return 32 + len(r.GetRecord().GetValue())
	case *storagev1.BatchReadResponse:
		n := 0
		for _, rr := range r.GetResults() {
			n += 32 + len(rr.GetRecord().GetValue())
		}
		return n
	case *storagev1.ExchangeResult:
		n := 32 + len(r.GetMessage())
		switch a := r.GetResponse().(type) {
		case *storagev1.ExchangeResult_Read:
			n += answerBytes(a.Read)
		case *storagev1.ExchangeResult_BatchRead:
			n += answerBytes(a.BatchRead)
		case *storagev1.ExchangeResult_Apply:
			n += 16 * len(a.Apply.GetOutcomes())
		}
		return n
	}
	return 0
}

// flush sends the ready answers unless another goroutine is sending:
// that one sends them. Whoever sends looks again after letting go of
// sendMu, so no answer is left behind, and a worker finding nobody
// sending sends its own answer (with any others ready) without waking
// another goroutine.
func (x *exchange) flush() {
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

// sendLocked sends the ready answers, up to exchangeBatchBytes a message.
// The caller holds sendMu.
func (x *exchange) sendLocked() {
	x.mu.Lock()
	x.batch, x.out = x.out, x.batch[:0]
	goaway, last := x.goaway, x.lastID
	x.goaway = false
	x.mu.Unlock()
	if goaway && x.sendErr == nil {
		if err := x.stream.Send(&storagev1.ExchangeResponse{Draining: true, LastId: last}); err != nil {
			x.failSend(err)
		}
	}
	for out := x.batch; len(out) > 0 && x.sendErr == nil; {
		n, size := 0, 0
		for n < len(out) && (n == 0 || size < exchangeBatchBytes) {
			size += answerBytes(out[n])
			n++
		}
		if err := x.stream.Send(&storagev1.ExchangeResponse{Results: out[:n]}); err != nil {
			x.failSend(err)
		}
		out = out[n:]
	}
	clear(x.batch)
	x.batch = x.batch[:0]
}

func (x *exchange) failSend(err error) {
	if x.sendErr == nil {
		x.sendErr = err
		x.svc.s.logger.Debug("Exchange stream send failed", "err", fmt.Sprint(err))
	}
}
