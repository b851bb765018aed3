package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/veltrixdb/veltrix/pkg/client/dialopts"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// resolverScheme names the per-client static resolver that lists the
// routers. It is registered on the connection only (grpc.WithResolvers), so
// it does not clash with other clients or packages.
const resolverScheme = "veltrix"

// serviceConfig spreads calls over every router.
const serviceConfig = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// Defaults of the client options. With these a call keeps retrying for
// 5.6 to 11 s of backoff (bounded by its deadline, DefaultTimeout unless
// ctx has one), enough to ride out a router or storage node restart.
const (
	DefaultMaxRetries  = 10                    // WithMaxRetries
	DefaultBackoffBase = 50 * time.Millisecond // WithBackoff
	DefaultBackoffMax  = 2 * time.Second       // WithBackoff
	DefaultTimeout     = 10 * time.Second      // WithDefaultTimeout
)

// Server limits the client works with.
const (
	maxBatch              = 1000 // BatchGet keys and BatchWrite mutations per call
	defaultQueryPageLimit = 1000 // Query page size when none is given
)

// Client talks to a Veltrix cluster through its routers. It is safe for
// concurrent use. Close it when done.
type Client struct {
	cc        *grpc.ClientConn
	kv        kvv1.KVServiceClient
	admin     kvv1.AdminServiceClient
	opts      options
	endpoints []string
	mux       *mux // nil: WithStreams(false)
}

// Option configures a Client.
type Option func(*options)

type options struct {
	maxRetries       int
	backoffBase      time.Duration
	backoffMax       time.Duration
	timeout          time.Duration
	readConsistency  kvv1.Consistency
	writeConsistency kvv1.Consistency
	dialOptions      []grpc.DialOption
	tlsConfig        *tls.Config
	// token is the bearer token; tokenSet tells an empty one apart from
	// none.
	token    string
	tokenSet bool
	// streams: unary KV calls go on Exchange streams (WithStreams).
	streams bool
}

// WithMaxRetries sets how many times a call failing with Unavailable is
// retried; 0 disables retries. Default: 10.
func WithMaxRetries(n int) Option { return func(o *options) { o.maxRetries = n } }

// WithBackoff sets the exponential backoff between retries: retry n waits a
// uniformly random time in [c/2, c] with c = min(max, base·2ⁿ⁻¹) ("equal
// jitter": spread out, yet the budget reliably covers a restart).
// Default: 50ms, 2s.
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) { o.backoffBase, o.backoffMax = base, max }
}

// WithDefaultTimeout sets the deadline given to a unary call, retries
// included, whose context has none; 0 leaves such calls unbounded. Scan
// streams never get one: a scan may legitimately run for hours. Default: 10s.
func WithDefaultTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithReadConsistency sets the consistency of Get, BatchGet and Query calls
// that do not choose one. Default: CONSISTENCY_UNSPECIFIED, which the router
// reads as ONE.
func WithReadConsistency(c kvv1.Consistency) Option {
	return func(o *options) { o.readConsistency = c }
}

// WithWriteConsistency sets the consistency of Put, Delete and BatchWrite
// calls that do not choose one. Default: CONSISTENCY_UNSPECIFIED, which the
// router reads as QUORUM.
func WithWriteConsistency(c kvv1.Consistency) Option {
	return func(o *options) { o.writeConsistency = c }
}

// WithDialOptions adds gRPC dial options after the client's own
// (dialopts.Options: plaintext, 65 MiB message limits, keepalives, reconnect
// backoff; then round robin and the retry interceptor; then WithTLS's and
// WithBearerToken's credentials; then, with WithStreams, 4 MiB stream and
// 8 MiB connection flow-control windows), so they can override them.
// Interceptors added here run once per attempt, inside the retries.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// WithTLS connects to the routers over TLS with cfg: its RootCAs verify
// the routers (nil: the system roots) and its Certificates or
// GetClientCertificate give the client certificate, if any. The server
// name of each router is its endpoint's host unless cfg.ServerName is set.
// Default: plaintext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg }
}

// WithStreams sets whether the unary KV calls (Get, Put, Delete, BatchGet,
// BatchWrite, Query) are carried as framed calls on one long-lived
// KVService.Exchange stream per router instead of one unary RPC each,
// which costs the client and the routers less CPU per call. Answers,
// errors, deadlines, retries and credentials are those of the unary RPCs;
// a router that does not serve Exchange is called by the unary RPCs. See
// the package documentation. Default: true.
func WithStreams(enabled bool) Option { return func(o *options) { o.streams = enabled } }

// WithBearerToken sends token (an API key, "<id>.<secret>") with every
// call as the metadata "authorization: Bearer <token>". It needs a
// connection with transport security (WithTLS): the client refuses to
// send a token in plaintext. Default: none.
func WithBearerToken(token string) Option {
	return func(o *options) { o.token, o.tokenSet = token, true }
}

// BearerToken returns the per-RPC credentials of WithBearerToken, for
// connections to other Veltrix services (the migrator) dialed with
// grpc.WithPerRPCCredentials.
func BearerToken(token string) credentials.PerRPCCredentials { return bearerToken(token) }

// bearerToken is the per-RPC credentials of WithBearerToken.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return true }

func (o *options) validate(endpoints []string) error {
	var errs []error
	if len(endpoints) == 0 {
		errs = append(errs, errors.New("no router endpoints"))
	}
	seen := make(map[string]bool, len(endpoints))
	for i, e := range endpoints {
		if _, _, err := net.SplitHostPort(e); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %d %q: want host:port: %w", i, e, err))
		}
		if seen[e] {
			errs = append(errs, fmt.Errorf("endpoint %d %q: listed twice", i, e))
		}
		seen[e] = true
	}
	if o.maxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries %d: must be >= 0", o.maxRetries))
	}
	if o.backoffBase <= 0 || o.backoffMax < o.backoffBase {
		errs = append(errs, fmt.Errorf("backoff (%v, %v): want 0 < base <= max", o.backoffBase, o.backoffMax))
	}
	if o.timeout < 0 {
		errs = append(errs, fmt.Errorf("default timeout %v: must be >= 0", o.timeout))
	}
	for _, c := range []kvv1.Consistency{o.readConsistency, o.writeConsistency} {
		if _, ok := kvv1.Consistency_name[int32(c)]; !ok {
			errs = append(errs, fmt.Errorf("unknown consistency %d", c))
		}
	}
	if o.tokenSet && (o.token == "" || strings.ContainsAny(o.token, " \t\r\n")) {
		errs = append(errs, errors.New("bearer token: want a non-empty token without spaces"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("client: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// New returns a client of the routers at endpoints (host:port each). It
// waits until at least one of them accepts a connection, for as long as ctx
// allows, or for the default timeout if ctx has no deadline (forever if
// both are unset). The routers are used round robin; see the package
// documentation for retries.
func New(ctx context.Context, endpoints []string, opts ...Option) (*Client, error) {
	o := options{
		maxRetries:  DefaultMaxRetries,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
		timeout:     DefaultTimeout,
		streams:     true,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(endpoints); err != nil {
		return nil, err
	}
	eps := make([]resolver.Endpoint, len(endpoints))
	for i, e := range endpoints {
		// ServerName makes TLS verify each router by its own name rather
		// than by the made-up target below.
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: e, ServerName: e}}}
	}
	r := manual.NewBuilderWithScheme(resolverScheme)
	r.InitialState(resolver.State{Endpoints: eps})

	c := &Client{opts: o, endpoints: append([]string(nil), endpoints...)}
	dialOpts := append(dialopts.Options(),
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(c.callInterceptor, retry.UnaryClientInterceptor(c.retryOptions()...), attemptInterceptor),
	)
	if o.tlsConfig != nil {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(o.tlsConfig)))
	}
	if o.tokenSet {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken(o.token)))
	}
	if o.streams {
		c.mux = newMux(len(endpoints))
		dialOpts = append(dialOpts, grpc.WithInitialWindowSize(muxStreamWindow), grpc.WithInitialConnWindowSize(muxConnWindow))
	}
	dialOpts = append(dialOpts, o.dialOptions...)
	if c.mux != nil {
		// Innermost, after the interceptors of WithDialOptions too: they
		// still run once per attempt.
		dialOpts = append(dialOpts, grpc.WithChainUnaryInterceptor(c.mux.intercept))
	}
	target := resolverScheme + ":///" + strings.Join(endpoints, ",")
	cc, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", target, err)
	}
	c.cc = cc
	c.kv = kvv1.NewKVServiceClient(cc)
	if c.mux != nil {
		c.mux.kv = c.kv
	}
	c.admin = kvv1.NewAdminServiceClient(cc)
	if err := c.waitReady(ctx); err != nil {
		_ = cc.Close()
		return nil, err
	}
	return c, nil
}

// waitReady blocks until some router is connected.
func (c *Client) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.timeout)
		defer cancel()
	}
	c.cc.Connect()
	for {
		s := c.cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if s == connectivity.Idle {
			c.cc.Connect()
		}
		if !c.cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("client: no router reachable at %s: %w", strings.Join(c.endpoints, ", "), ctx.Err())
		}
	}
}

// Close closes the connections to the routers. Calls in flight fail with
// Canceled.
func (c *Client) Close() error {
	if c.mux != nil {
		c.mux.close()
	}
	return c.cc.Close()
}

// KV returns the raw KVService client. Its unary calls get the client's
// retries and default timeout; Scan streams are not retried.
func (c *Client) KV() kvv1.KVServiceClient { return c.kv }

// Admin returns the raw AdminService client, with the client's retries and
// default timeout.
func (c *Client) Admin() kvv1.AdminServiceClient { return c.admin }

// Conn is the connection to the routers, with the client's interceptors
// (retries, default timeout), for the other services they serve, e.g.
// migrationv1.NewMigrationServiceClient(c.Conn()).
func (c *Client) Conn() grpc.ClientConnInterface { return c.cc }

// The unary retry policy is go-grpc-middleware's retry interceptor, between
// two small interceptors of ours:
//
//	callInterceptor → retry.UnaryClientInterceptor → attemptInterceptor → call
//
// callInterceptor gives the call its default deadline (which bounds every
// retry) and, when the call fails after retries, says how many attempts it
// made and keeps the last failure in the message; attemptInterceptor runs
// once per attempt and records them.

// attempts is what attemptInterceptor records for callInterceptor.
type attempts struct {
	n    int
	last error
}

type attemptsKey struct{}

func (c *Client) retryOptions() []retry.CallOption {
	return []retry.CallOption{
		// WithMax counts attempts, the first one included.
		retry.WithMax(uint(c.opts.maxRetries) + 1),
		retry.WithCodes(codes.Unavailable),
		retry.WithBackoff(func(_ context.Context, attempt uint) time.Duration { return c.backoff(int(attempt)) }),
	}
}

// callInterceptor gives a call the default deadline if it has none and
// reports the attempts of a call that failed after retrying.
func (c *Client) callInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.timeout)
		defer cancel()
	}
	a := &attempts{}
	err := invoker(context.WithValue(ctx, attemptsKey{}, a), method, req, reply, cc, opts...)
	if err == nil || a.n == 0 {
		return err
	}
	if a.last != nil && retryable(a.last) && !retryable(err) {
		// The context ended while waiting to retry.
		return status.Errorf(status.Code(err), "%v while waiting to retry after %d attempts: %v", status.Convert(err).Message(), a.n, a.last)
	}
	if a.n > 1 && retryable(err) {
		return fmt.Errorf("gave up after %d attempts: %w", a.n, err)
	}
	return err
}

// attemptInterceptor counts the attempts of one call and keeps the last
// failure.
func attemptInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if a, ok := ctx.Value(attemptsKey{}).(*attempts); ok {
		a.n++
		a.last = err
	}
	return err
}

func retryable(err error) bool { return err != nil && status.Code(err) == codes.Unavailable }

// retryCanceled reports a context that ended while waiting to retry: the
// code is the context's, the message keeps the failure being retried.
func retryCanceled(ctxErr, last error) error {
	return status.Errorf(status.FromContextError(ctxErr).Code(), "%v while waiting to retry after: %v", ctxErr, last)
}

// backoff returns the wait before the retry-th retry (1-based): uniform in
// [c/2, c] with c = min(max, base·2^(retry-1)).
func (c *Client) backoff(retry int) time.Duration {
	ceil := c.opts.backoffMax
	if shift := retry - 1; shift < 62 {
		if d := c.opts.backoffBase << shift; d > 0 && d < ceil && d>>shift == c.opts.backoffBase {
			ceil = d
		}
	}
	return ceil/2 + rand.N(ceil-ceil/2+1)
}

// sleep waits before a retry, returning ctx's error if it ends first.
func (c *Client) sleep(ctx context.Context, retry int) error {
	t := time.NewTimer(c.backoff(retry))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsNotFound reports whether err (possibly wrapped) is a gRPC NotFound: an
// unknown table. A missing item is not an error.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// IsUnavailable reports whether err (possibly wrapped) is a gRPC
// Unavailable: no router reachable, or the consistency level not reached,
// after every retry.
func IsUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }
