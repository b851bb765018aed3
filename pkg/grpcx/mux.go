package grpcx

import (
	"context"
	"errors"
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/client/streammux"
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
// The stream itself (workers, batching, cancel, deadlines, drain) is
// streammux.Server's, as storage's Exchange's is.
type Mux struct {
	s       *Server
	methods map[string]*unaryMethod // allowed, by full name
	srv     streammux.Server[*muxv1.Call, *muxv1.Result]
}

const (
	// MuxWorkers bounds the calls one Mux stream runs at once.
	MuxWorkers = streammux.DefaultWorkers
	// muxResultOverhead bounds what framing adds to a response in an
	// answer message (the Result's id and tags, the message's field tag).
	muxResultOverhead = 64
)

// MuxStream is a service's Exchange stream as a Mux sees it: the service
// adapts its generated stream (its request and response messages carry
// the calls and results).
type MuxStream = streammux.ServerStream[*muxv1.Call, *muxv1.Result]

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
	m.srv = streammux.Server[*muxv1.Call, *muxv1.Result]{Handler: muxHandler{m}, Drain: s.drain, Logger: s.logger, Workers: MuxWorkers}
	return m, nil
}

// Serve serves stream until the caller closes its side (after its calls
// are answered), the stream breaks, or the server drains (Drain): then it
// sends the draining notice, answers the calls it took, and returns.
func (m *Mux) Serve(stream MuxStream) error {
	return m.srv.Serve(stream)
}

// muxHandler runs a Mux's calls.
type muxHandler struct{ m *Mux }

// Run runs one call as grpc runs its unary RPC.
func (h muxHandler) Run(ctx context.Context, c *muxv1.Call) *muxv1.Result {
	res := &muxv1.Result{Id: c.GetId()}
	resp, err := h.m.call(ctx, c)
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

// Size estimates a result's encoded size.
// Sent gives the results' response buffers back to the pool: gRPC has
// encoded them within SendMsg.
func (muxHandler) Sent(results []*muxv1.Result) { releaseResponses(results) }

func (muxHandler) Size(r *muxv1.Result) int {
	n := muxResultOverhead + len(r.GetResponse()) + len(r.GetMessage())
	for _, d := range r.GetDetails() {
		n += 16 + len(d.GetTypeUrl()) + len(d.GetValue())
	}
	return n
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
