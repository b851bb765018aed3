package grpcx

import (
	"sync"

	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/protobuf/proto"
)

// A multiplexed call's response is marshalled into a pooled buffer, which
// its Result holds until the answer message is sent: gRPC encodes a
// message before SendMsg returns (and the server installs no stats
// handler that would keep it), so the buffer is free again then. Without
// the pool each BatchGet answer (16 values of 1 KiB in the bench)
// allocated its response twice over: here, then in the frame.
var muxRespPool sync.Pool // of *[]byte

// muxPooledCap bounds the buffers kept: a rare huge response is left to
// the garbage collector rather than pinned in the pool.
const muxPooledCap = 256 << 10

// marshalResponse marshals pm into a buffer from the pool; the caller
// gives it back with releaseResponses once the result is sent.
func marshalResponse(pm proto.Message) ([]byte, error) {
	var b []byte
	if bp, ok := muxRespPool.Get().(*[]byte); ok {
		b = (*bp)[:0]
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pm)
}

// releaseResponses gives the sent results' response buffers back to the
// pool; the results must not be used afterwards.
func releaseResponses(results []*muxv1.Result) {
	for _, r := range results {
		if b := r.GetResponse(); cap(b) > 0 && cap(b) <= muxPooledCap {
			b = b[:0]
			muxRespPool.Put(&b)
		}
		r.Response = nil
	}
}
