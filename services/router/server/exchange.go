package server

import (
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exchange serves KVService's unary methods framed on one stream (see the
// RPC's doc in kv.proto): grpcx.Mux runs each call through the server's
// unary interceptor chain (metrics, UTF-8 check, the auth guard with the
// method's rule) and the method's handler, as the unary RPC. Other methods
// are answered UNIMPLEMENTED; on shutdown the stream drains (grpcx's
// Server.Shutdown).
func (kv *kvService) Exchange(stream kvv1.KVService_ExchangeServer) error {
	if kv.s == nil || kv.s.kvMux == nil {
		return status.Error(codes.Unimplemented, "router: Exchange is not served by this server")
	}
	return kv.s.kvMux.Serve(kvExchangeStream{stream})
}

// kvExchangeStream adapts the generated stream to grpcx.MuxStream.
type kvExchangeStream struct{ kvv1.KVService_ExchangeServer }

func (s kvExchangeStream) RecvCalls() ([]*muxv1.Call, error) {
	req, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return req.GetCalls(), nil
}

func (s kvExchangeStream) SendResults(results []*muxv1.Result, draining bool, lastID uint64) error {
	return s.Send(&kvv1.ExchangeResponse{Results: results, Draining: draining, LastId: lastID})
}
