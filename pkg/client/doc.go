// Package client is the Go client of Veltrix: typed helpers over the public
// KVService and AdminService that every router serves, with load spreading
// and retries built in.
//
// It is a module of its own, github.com/veltrixdb/veltrix/pkg/client, whose
// dependencies are grpc, protobuf, github.com/veltrixdb/veltrix/proto and
// go-grpc-middleware's retry interceptor; nothing of the servers.
//
// # Endpoints
//
// New takes the addresses (host:port) of one or more routers. Routers are
// stateless and interchangeable, so the client opens one gRPC connection per
// router behind a single grpc.ClientConn and spreads calls over them round
// robin. A router that is down or unreachable drops out of the rotation until
// it reconnects; calls go to the others in the meantime. New waits until at
// least one router is reachable.
//
// # Retries
//
// A call that fails with codes.Unavailable (the router is unreachable or
// shutting down, or the requested consistency level could not be reached) is
// retried by go-grpc-middleware's retry interceptor, up to WithMaxRetries
// times (default 10), after an exponential backoff with jitter: the n-th
// retry waits a uniformly random time in [c/2, c], c = min(max, base·2ⁿ⁻¹)
// (WithBackoff, default base 50ms, max 2s). The default budget is 5.6 to
// 11 s of waiting, bounded by the call's deadline, which covers a router or
// storage node restart. A call that gives up says how many attempts it made.
// Round robin sends each retry to the next router. No other code is retried: not
// DeadlineExceeded, not ResourceExhausted, and nothing a retry cannot fix.
// Retries stop as soon as the context is done; the error then carries the
// context's code (Canceled or DeadlineExceeded) and the last failure. A call
// whose context has no deadline gets one: WithDefaultTimeout (default 10s)
// bounds the call and all its retries.
//
// Every write carries a version, and replicas apply a write only if its
// version is newer than the stored one, so retrying a write with the same
// version is idempotent. A Put or Delete without an explicit version gets a
// fresh version from the router on every attempt: if an attempt failed
// ambiguously (it reached the router but the answer was lost), the retry may
// apply the write a second time with a newer version. Last-writer-wins makes
// that harmless unless another client wrote the same key in between, in
// which case the retry can overwrite that write. Pass WithVersion (for
// instance from your own hybrid logical clock: Unix microseconds shifted left
// 12 bits plus a logical counter, what package
// github.com/veltrixdb/veltrix/pkg/hlc computes) when retries must be
// strictly idempotent. CreateTable and DeleteTable are not
// idempotent either: a retry after an ambiguous failure can report
// AlreadyExists or NotFound for a call that in fact succeeded.
//
// Scan resumes an interrupted stream from its last page token, with the same
// retry budget and backoff. Query follows page tokens, one retried call per
// page.
//
// # Streams
//
// The unary KV calls (Get, Put, Delete, BatchGet, BatchWrite, Query, from
// the typed helpers or KV()) are carried as framed calls on one long-lived
// KVService.Exchange stream per router, instead of one unary RPC (a new
// HTTP/2 stream, headers and trailers) each: it costs the client and the
// routers less CPU per call. Calls waiting together go in one message.
// Each call is answered, authorised (the stream carries WithBearerToken's
// token, over WithTLS's connection) and recorded exactly as the unary RPC,
// with the same status code, message and details on error; its deadline
// travels with it and a cancelled call is cancelled on the router. The
// stream is the innermost layer, under the default deadline, the retries
// and the interceptors of WithDialOptions, which see each call as before.
// A stream that breaks fails only its calls in flight, with Unavailable
// (retried as above; a write may or may not have taken effect, as with a
// broken unary call), and calls go by unary RPCs until a new stream opens
// (after 100 ms, doubling to 1 s). A router that does not serve Exchange (an
// older version) is called by the unary RPCs and asked again after a
// minute; the calls of a stream refused for its credentials go by the unary
// RPCs too, whose answer is the caller's error. A router shutting down
// hands back the calls it did not take, which are sent again by the unary
// RPC. Requests over 256 KiB, calls with call
// options other than the connection's message size limits, Scan and the
// AdminService calls always use their own RPCs. WithStreams(false) turns
// the streams off.
//
// # Consistency
//
// Reads (Get, BatchGet, Query) and writes (Put, Delete, BatchWrite) send
// CONSISTENCY_UNSPECIFIED by default, which the router reads as ONE for reads
// and QUORUM for writes. WithReadConsistency and WithWriteConsistency change
// the client's defaults; the WithConsistency call option (or
// QueryOptions.Consistency) overrides them for one call. A call that cannot
// reach its consistency level fails with Unavailable; it never succeeds
// silently. Its message says on how many replicas the write was applied and
// names each failed replica: such a write is not rolled back and may still
// take effect, so retry it (with the same version to be strictly
// idempotent) rather than assume it did nothing.
//
// # Write outcomes
//
// A write that reached its consistency level is either applied or
// superseded: a replica applies a write only if its version is newer than
// the stored one, so a write carrying an older version (WithVersion, or a
// Mutation's Version) changes nothing. Put, Delete and BatchWriteResults
// return a WriteResult per write saying which, and for a superseded write
// the newer version that is stored (CurrentVersion).
//
// # Errors
//
// Errors are gRPC status errors, possibly wrapped with the operation and the
// key; status.Code, IsNotFound and IsUnavailable see through the wrapping.
// NotFound means an unknown table: a missing item is not an error (Get
// reports found == false). Invalid arguments caught by the client are
// reported as InvalidArgument, like the server's.
package client
