// Package grpcx builds the gRPC servers and client connections every Veltrix
// service uses, so they all share one interceptor chain (panic recovery,
// logging, Prometheus metrics), the same message size limits, the standard
// health service and server reflection (so grpcurl works against any of them).
package grpcx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/veltrixdb/veltrix/pkg/client/dialopts"
)

// MaxMessageSize is the largest gRPC message any Veltrix service sends or
// accepts: a 64 MiB value plus its key and framing. It is the clients' limit
// too, defined once in the client module.
const MaxMessageSize = dialopts.MaxMessageSize

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Logger receives one line per failed call (debug for successful ones).
	// Default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the gRPC server metrics. Default: none (metrics are
	// collected but not exported).
	Registerer prometheus.Registerer
	// MaxMessageSize bounds received and sent messages. Default:
	// MaxMessageSize.
	MaxMessageSize int
	// StreamWorkers is the number of goroutines kept to serve calls
	// (grpc.NumStreamWorkers): a call finding none free gets a goroutine of
	// its own, whose stack grows again on every call. Handlers wait on
	// other services (a router on its replicas), so it is sized for the
	// calls in flight, not the cores; an idle worker costs only its stack.
	// Default: 256.
	StreamWorkers int
	// Unary and Stream are the service's own interceptors (an auth guard),
	// run after grpcx's metrics and recovery interceptors (and the UTF-8
	// check). Pass them here, not as grpc.ChainUnaryInterceptor options:
	// calls multiplexed on a stream (Mux) run through the same unary chain.
	// Default: none.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// CheckUTF8 refuses requests whose string fields hold invalid UTF-8
	// with InvalidArgument naming the fields (utf8.go), for RPCs and Mux
	// calls alike. Default: false (grpc's codec fails them with Internal).
	CheckUTF8 bool
}

// Server is a gRPC server with health and reflection registered.
type Server struct {
	*grpc.Server
	// Health is the standard health service; services set their status on it.
	Health  *health.Server
	metrics *serverMetrics
	logger  *slog.Logger
	// unary is the whole unary interceptor chain, the one grpc runs, for
	// Mux calls; checkUTF8 is ServerOptions.CheckUTF8.
	unary     grpc.UnaryServerInterceptor
	checkUTF8 bool
	maxMsg    int
	// methods are the unary methods of the services registered through
	// RegisterService, by full name (written before Serve, read after).
	methods map[string]*unaryMethod
	// drain is closed by Drain: Mux streams take no more calls.
	drain     chan struct{}
	drainOnce sync.Once
}

// unaryMethod is a registered unary method: its generated handler and the
// service implementation it runs on.
type unaryMethod struct {
	fullMethod string
	handler    grpc.MethodHandler
	impl       any
	// ts is the transport stream Mux calls of the method see (grpc.Method).
	ts *muxTransportStream
}

// NewServer returns a gRPC server with the shared interceptor chain, health
// and reflection. Register services on it, then call InitMetrics once before
// serving so every method's series exists from the start.
func NewServer(o ServerOptions, extra ...grpc.ServerOption) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = MaxMessageSize
	}
	if o.StreamWorkers == 0 {
		o.StreamWorkers = 256
	}
	metrics := newServerMetrics([]float64{
		.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
	})
	if o.Registerer != nil {
		o.Registerer.MustRegister(metrics.collectors()...)
	}
	logger := o.Logger
	recover := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in gRPC handler", "panic", p, "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "internal error: %v", p)
	})
	unary := []grpc.UnaryServerInterceptor{metrics.unaryInterceptor(logger), recovery.UnaryServerInterceptor(recover)}
	stream := []grpc.StreamServerInterceptor{metrics.streamInterceptor(logger), recovery.StreamServerInterceptor(recover)}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxMessageSize),
		grpc.MaxSendMsgSize(o.MaxMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.NumStreamWorkers(uint32(o.StreamWorkers)),
	}
	if o.CheckUTF8 {
		opts = append(opts, grpc.ForceServerCodecV2(utf8Codec{base: encoding.GetCodecV2("proto")}))
		unary = append(unary, utf8Unary)
		stream = append(stream, utf8StreamInterceptor)
	}
	unary = append(unary, o.Unary...)
	stream = append(stream, o.Stream...)
	chain := chainUnary(unary)
	opts = append(opts, grpc.ChainUnaryInterceptor(chain), grpc.ChainStreamInterceptor(chainStream(stream)))
	s := &Server{
		Server:    grpc.NewServer(append(opts, extra...)...),
		Health:    health.NewServer(),
		metrics:   metrics,
		logger:    logger,
		unary:     chain,
		checkUTF8: o.CheckUTF8,
		maxMsg:    o.MaxMessageSize,
		methods:   map[string]*unaryMethod{},
		drain:     make(chan struct{}),
	}
	healthpb.RegisterHealthServer(s, s.Health)
	reflection.Register(s.Server)
	return s
}

// RegisterService registers a service (grpc.ServiceRegistrar: pass the
// Server, not its embedded grpc.Server, to the generated Register
// functions) and records its unary methods for Mux.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.Server.RegisterService(desc, impl)
	for _, md := range desc.Methods {
		name := "/" + desc.ServiceName + "/" + md.MethodName
		s.methods[name] = &unaryMethod{fullMethod: name, handler: md.Handler, impl: impl, ts: &muxTransportStream{method: name}}
	}
}

// UnaryMethods are the full names of desc's unary methods
// ("/pkg.Service/Method"), for a Mux's allowlist.
func UnaryMethods(desc *grpc.ServiceDesc) []string {
	out := make([]string, 0, len(desc.Methods))
	for _, md := range desc.Methods {
		out = append(out, "/"+desc.ServiceName+"/"+md.MethodName)
	}
	return out
}

// chainUnary runs interceptors in order around the handler, as
// grpc.ChainUnaryInterceptor does.
func chainUnary(icpts []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return icpts[0](ctx, req, info, unaryNext(icpts, 0, info, handler))
	}
}

func unaryNext(icpts []grpc.UnaryServerInterceptor, cur int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if cur == len(icpts)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return icpts[cur+1](ctx, req, info, unaryNext(icpts, cur+1, info, final))
	}
}

// chainStream runs interceptors in order around the handler, as
// grpc.ChainStreamInterceptor does.
func chainStream(icpts []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return icpts[0](srv, ss, info, streamNext(icpts, 0, info, handler))
	}
}

func streamNext(icpts []grpc.StreamServerInterceptor, cur int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler {
	if cur == len(icpts)-1 {
		return final
	}
	return func(srv any, ss grpc.ServerStream) error {
		return icpts[cur+1](srv, ss, info, streamNext(icpts, cur+1, info, final))
	}
}

// InitMetrics pre-creates the metric series of every registered method.
func (s *Server) InitMetrics() { s.metrics.init(s.Server) }

// Drain makes every Mux stream take no more calls: each answers the calls
// it took, then ends (GracefulStop waits for streams to end). Shutdown
// calls it.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.drain) }) }

// Shutdown marks every service NOT_SERVING, drains the Mux streams, then
// stops gracefully, forcing the stop once ctx is done.
func (s *Server) Shutdown(ctx context.Context) {
	s.Health.Shutdown()
	s.Drain()
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done
	}
}

// Dial opens a client connection to a Veltrix service with the settings
// every Veltrix client shares (dialopts.Options: message size limits,
// keepalives, reconnect backoff). Connections are lazy: the first call
// connects.
func Dial(addr string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, append(dialopts.Options(), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcx: dial %s: %w", addr, err)
	}
	return cc, nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for a service's /metrics endpoint.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// MetricsServer serves /metrics (and /healthz) over HTTP.
type MetricsServer struct {
	srv *http.Server
	ln  net.Listener
}

// ServeMetrics listens on addr and serves the registry at /metrics, over
// HTTPS when tlsConfig is set (over HTTP when nil).
func ServeMetrics(addr string, g prometheus.Gatherer, logger *slog.Logger, tlsConfig *tls.Config) (*MetricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpcx: metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m := &MetricsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: tlsConfig}, ln: ln}
	go func() {
		serve := m.srv.Serve
		if tlsConfig != nil {
			serve = func(ln net.Listener) error { return m.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return m, nil
}

// Addr is the address the metrics server listens on.
func (m *MetricsServer) Addr() string { return m.ln.Addr().String() }

// Close stops the metrics server.
func (m *MetricsServer) Close(ctx context.Context) error { return m.srv.Shutdown(ctx) }

// ContextCode maps context errors to their gRPC codes, so cancelled and timed
// out calls are reported as such and not as internal errors. It returns
// false for any other error.
func ContextCode(err error) (codes.Code, bool) {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled, true
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, true
	}
	return codes.OK, false
}
