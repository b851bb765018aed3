// Package streammux multiplexes many unary calls over one long-lived
// bidirectional gRPC stream, instead of one unary RPC (a new HTTP/2
// stream: headers, trailers, hpack, interceptors) each. It is the one
// implementation of that mechanism; each protocol that uses it adapts its
// generated frames with a few small methods, generics over the frame
// types keeping the hot path free of per-call boxing:
//
//   - router → storage: StorageService.Exchange, typed frames
//     (storagev1.ExchangeCall/ExchangeResult): the router's storagemux
//     client and the storage node's Exchange handler;
//   - client → router: KVService.Exchange, generic frames (veltrix.mux.v1
//     Call/Result: a method name and the serialized request): pkg/client
//     and grpcx.Mux.
//
// A Client numbers calls and keeps them pending until their result.
// Whichever caller finds nobody sending writes every waiting call in one
// message, its own included (natural batching: nothing waits to fill a
// batch, no goroutine is woken to send). A cancelled or timed-out call
// frees its slot at once and sends a cancel frame; its late answer is
// dropped. A deadline travels as timeout_micros. A stream that breaks
// fails only its calls in flight, with UNAVAILABLE; the next stream opens
// no sooner than a backoff later, the unary RPC meanwhile. A server that
// refuses the stream (UNIMPLEMENTED: an older version) is called by the
// unary RPC and tried again later; a draining server's last_id says which
// calls it did not take, and those go by the unary RPC too. Beyond the
// calls the server runs at once, sending moves to a goroutine of its own,
// so a caller is never held by flow control past its context.
//
// A Server reads messages of calls and runs each on one of the stream's
// bounded workers (a bounded backlog beyond them keeps the stream read, so
// cancel frames reach running calls), batches the answers the same way,
// and on shutdown tells the caller the last call it took and answers it.
package streammux
