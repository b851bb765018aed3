package client

// The client's unary KV calls go as framed calls on long-lived
// KVService.Exchange streams (one per router) instead of one unary RPC
// each (a new HTTP/2 stream: headers, trailers, hpack, a server stream and
// context per call). The mechanism is streammux.Client's (the router's
// storage multiplexer uses it too), over the generic frame of
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/veltrixdb/veltrix/pkg/client/streammux"

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
	// muxUnaryBytes: a larger request goes by the unary RPC, so it neither
	// delays the stream's other calls nor risks a message over the limit.
	muxUnaryBytes = 256 << 10
	// muxRouterWorkers is how many of a stream's calls a router runs at
	// once (grpcx.MuxWorkers): with more unanswered an older router may
	// read nothing, and sending leaves the caller (streammux).
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

// mux carries the muxMethods of a ClientConn on Exchange streams. It has
// one lane (a stream and its state) per router endpoint, used in turn, so
// calls spread over the routers as round robin spreads unary calls: each
// lane's stream is opened on a router no other lane uses when one is
// ready.
type mux struct {
	kv kvv1.KVServiceClient // set before the first call
	c  *streammux.Client[*muxv1.Call, *frameResult]
}

func newMux(routers int) *mux {
	m := &mux{}
	m.c = streammux.NewClient(streammux.ClientOptions[*muxv1.Call, *frameResult]{
		Open: func(ctx context.Context) (streammux.ClientStream[*muxv1.Call, *frameResult], error) {
			cs, err := m.kv.Exchange(ctx, muxCodec())
			if err != nil {
				return nil, err
			}
			return exchangeStream{cs}, nil
		},
		Frames:      frames{},
		Lanes:       max(routers, 1),
		PeerWorkers: muxRouterWorkers,
		Broken:      "router stream",
		ClosedErr:   status.Error(codes.Canceled, "client: closed with the call in flight"),
	})
	return m
}

// exchangeStream adapts the generated stream to streammux.ClientStream.
type exchangeStream struct{ kvv1.KVService_ExchangeClient }

func (s exchangeStream) SendCalls(calls []*muxv1.Call) error {
	return s.Send(&kvv1.ExchangeRequest{Calls: calls})
}

// RecvResults decodes the next message with frameCodec: each result's
// response aliases the received buffer until it is released (a result
// nobody releases, such as a cancelled call's, leaves the buffer to the
// garbage collector instead of gRPC's pool).
func (s exchangeStream) RecvResults() ([]*frameResult, bool, uint64, error) {
	var resp resultFrame
	if err := s.RecvMsg(&resp); err != nil {
		return nil, false, 0, err
	}
	return resp.GetResults(), resp.GetDraining(), resp.GetLastId(), nil
}

// frames writes veltrix.mux.v1 call frames.
type frames struct{}

func (frames) Number(call *muxv1.Call, id uint64, timeoutMicros int64) {
	call.Id, call.TimeoutMicros = id, timeoutMicros
}

func (frames) Cancel(id uint64) *muxv1.Call { return &muxv1.Call{Id: id, Cancel: true} }

// intercept is the innermost unary client interceptor.
func (m *mux) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	in, ok1 := req.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !muxMethods[method] || !ok1 || !ok2 || !plainCall(opts) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if err := m.do(ctx, method, in, out); err != streammux.ErrUnary {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// do runs the call on a stream, unmarshals its response into out and
// returns nil, or returns its error as the unary RPC would, or
// streammux.ErrUnary.
func (m *mux) do(ctx context.Context, method string, in, out proto.Message) error {
	b, err := proto.Marshal(in)
	if err != nil || len(b) > muxUnaryBytes {
		return streammux.ErrUnary // the unary RPC reports a marshalling error as usual
	}
	res, err := m.c.Do(ctx, &muxv1.Call{Method: method, Request: b})
	if err != nil {
		return err
	}
	defer res.release()
	if err := proto.Unmarshal(res.GetResponse(), out); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
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
func (m *mux) close() { m.c.Close() }
