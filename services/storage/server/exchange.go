package server

import (
	"context"

	"github.com/veltrixdb/veltrix/pkg/client/streammux"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Exchange serves Read, BatchRead and Apply calls framed on one long-lived
// stream (the router's hot path; see the RPC's doc in storage.proto).
//
// The stream (its workers, at most exchangeWorkers, answers batched,
// cancel, deadlines, drain on shutdown) is streammux.Server's, as the
// router's KVService.Exchange's is. A worker runs the call through the
// same method as the unary RPC, so answers and errors are those of the
// unary path, and records it under the unary method's gRPC metrics
// (grpcx.InnerCalls).
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

// exchangeHandler runs Exchange's calls for streammux.Server.
type exchangeHandler struct{ svc *service }

func (svc *service) Exchange(stream storagev1.StorageService_ExchangeServer) error {
	srv := streammux.Server[*storagev1.ExchangeCall, *storagev1.ExchangeResult]{
		Handler: exchangeHandler{svc}, Drain: svc.s.exchangeDrain, Logger: svc.s.logger,
		Workers: exchangeWorkers, BatchBytes: exchangeBatchBytes,
	}
	return srv.Serve(exchangeStream{stream})
}

// exchangeStream adapts the generated stream to streammux.ServerStream.
type exchangeStream struct {
	storagev1.StorageService_ExchangeServer
}

func (s exchangeStream) RecvCalls() ([]*storagev1.ExchangeCall, error) {
	req, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return req.GetCalls(), nil
}

func (s exchangeStream) SendResults(results []*storagev1.ExchangeResult, draining bool, lastID uint64) error {
	return s.Send(&storagev1.ExchangeResponse{Results: results, Draining: draining, LastId: lastID})
}

// Size estimates a result's encoded size.
func (exchangeHandler) Size(r *storagev1.ExchangeResult) int { return answerBytes(r) }

// Sent keeps nothing to reuse: the answers are the engine's.
func (exchangeHandler) Sent([]*storagev1.ExchangeResult) {}

// Run runs one call as its unary RPC would.
func (h exchangeHandler) Run(ctx context.Context, call *storagev1.ExchangeCall) (res *storagev1.ExchangeResult) {
	res = &storagev1.ExchangeResult{Id: call.GetId()}
	svc := h.svc
	var err error
	defer func() {
		if p := recover(); p != nil {
			svc.s.logger.Error("panic in Exchange call", "panic", p)
			err = status.Errorf(codes.Internal, "internal error: %v", p)
			res.Response = nil
		}
		if err != nil {
			st := status.Convert(err)
			res.Code, res.Message, res.Details = int32(st.Code()), st.Message(), st.Proto().GetDetails()
		}
	}()
	m := svc.exchange
	if m == nil {
		m = &exchangeCalls{}
	}
	switch r := call.GetRequest().(type) {
	case *storagev1.ExchangeCall_Read:
		start := m.read.Start()
		var resp *storagev1.ReadResponse
		if resp, err = svc.Read(ctx, r.Read); err == nil {
			err = fits(resp, resp.GetRecord().GetValue())
		}
		m.read.Done(ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_Read{Read: resp}
		}
	case *storagev1.ExchangeCall_BatchRead:
		start := m.batchRead.Start()
		var resp *storagev1.BatchReadResponse
		if resp, err = svc.BatchRead(ctx, r.BatchRead); err == nil {
			err = fits(resp, nil)
		}
		m.batchRead.Done(ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_BatchRead{BatchRead: resp}
		}
	case *storagev1.ExchangeCall_Apply:
		start := m.apply.Start()
		var resp *storagev1.ApplyResponse
		resp, err = svc.Apply(ctx, r.Apply)
		m.apply.Done(ctx, start, err)
		if err == nil {
			res.Response = &storagev1.ExchangeResult_Apply{Apply: resp}
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "calls: call %d carries no request", call.GetId())
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
