package grpcx

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The server interceptors here replace go-grpc-middleware's logging and
// Prometheus interceptors on the hot path. Those format the call's fields
// and look up every metric child by its label values (hashing four strings)
// on each call, even when the log level discards the line: a measurable
// share of a storage Read. These export the same series
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_msg_received_total, grpc_server_msg_sent_total,
// grpc_server_handling_seconds, with grpc-ecosystem's labels), resolved
// once per method, and build a log line only when the logger is enabled
// for the call's level.

// codeCount is the number of gRPC codes (OK … Unauthenticated).
const codeCount = int(codes.Unauthenticated) + 1

// serverMetrics are the per-method gRPC server metrics.
type serverMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec

	mu      sync.RWMutex
	methods map[string]*methodMetrics // by full method name
}

// methodMetrics are one method's metric children, resolved once.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	seconds                 prometheus.Observer
	handled                 [codeCount]prometheus.Counter
}

func newServerMetrics(buckets []float64) *serverMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &serverMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets,
		}, labels),
		methods: map[string]*methodMetrics{},
	}
}

func (m *serverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.received, m.sent, m.seconds}
}

// streamType is grpc-ecosystem's grpc_type label of a method.
func streamType(client, server bool) string {
	switch {
	case client && server:
		return "bidi_stream"
	case client:
		return "client_stream"
	case server:
		return "server_stream"
	}
	return "unary"
}

// method returns the children of fullMethod ("/pkg.Service/Method"),
// creating them on its first call.
func (m *serverMetrics) method(fullMethod string, client, server bool) *methodMetrics {
	m.mu.RLock()
	mm := m.methods[fullMethod]
	m.mu.RUnlock()
	if mm != nil {
		return mm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm = m.methods[fullMethod]; mm != nil {
		return mm
	}
	svc, name, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	typ := streamType(client, server)
	mm = &methodMetrics{
		started:  m.started.WithLabelValues(typ, svc, name),
		received: m.received.WithLabelValues(typ, svc, name),
		sent:     m.sent.WithLabelValues(typ, svc, name),
		seconds:  m.seconds.WithLabelValues(typ, svc, name),
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, svc, name, codes.Code(c).String())
	}
	m.methods[fullMethod] = mm
	return mm
}

// init creates every registered method's series, so they exist from the
// start.
func (m *serverMetrics) init(s *grpc.Server) {
	for svc, info := range s.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.method("/"+svc+"/"+mi.Name, mi.IsClientStream, mi.IsServerStream)
		}
	}
}

func (mm *methodMetrics) done(err error, start time.Time) codes.Code {
	code := status.Code(err)
	if int(code) < codeCount {
		mm.handled[code].Inc()
	}
	mm.seconds.Observe(time.Since(start).Seconds())
	return code
}

// levelOf is the log level of a finished call with code c: debug for
// outcomes that are the caller's business, error for server faults, warn
// otherwise. Aborted is a lost race the caller retries (a contended
// LockKey, a concurrent migration change): at warn, contention filled the
// logs and cost CPU. Refused credentials and permissions have their own
// audit line (pkg/auth).
func levelOf(c codes.Code) slog.Level {
	switch c {
	case codes.OK, codes.NotFound, codes.Canceled, codes.AlreadyExists, codes.InvalidArgument, codes.FailedPrecondition,
		codes.Aborted, codes.Unauthenticated, codes.PermissionDenied:
		return slog.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return slog.LevelError
	}
	return slog.LevelWarn
}

// logCall logs one finished call, building the line only when the logger
// takes its level.
func logCall(ctx context.Context, l *slog.Logger, fullMethod, typ string, start time.Time, code codes.Code, err error) {
	lvl := levelOf(code)
	if !l.Enabled(ctx, lvl) {
		return
	}
	svc, name, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	attrs := []slog.Attr{
		slog.String("protocol", "grpc"),
		slog.String("grpc.component", "server"),
		slog.String("grpc.service", svc),
		slog.String("grpc.method", name),
		slog.String("grpc.method_type", typ),
		slog.String("grpc.code", code.String()),
		slog.Float64("grpc.time_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", err.Error()))
	}
	l.LogAttrs(ctx, lvl, "finished call", attrs...)
}

// unaryInterceptor counts, times and logs unary calls.
func (m *serverMetrics) unaryInterceptor(l *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mm := m.method(info.FullMethod, false, false)
		start := time.Now()
		mm.started.Inc()
		mm.received.Inc()
		resp, err := handler(ctx, req)
		if err == nil {
			mm.sent.Inc()
		}
		code := mm.done(err, start)
		logCall(ctx, l, info.FullMethod, "unary", start, code, err)
		return resp, err
	}
}

// streamInterceptor counts, times and logs streaming calls and their
// messages.
func (m *serverMetrics) streamInterceptor(l *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		mm := m.method(info.FullMethod, info.IsClientStream, info.IsServerStream)
		start := time.Now()
		mm.started.Inc()
		err := handler(srv, &countingStream{ServerStream: ss, mm: mm})
		code := mm.done(err, start)
		logCall(ss.Context(), l, info.FullMethod, streamType(info.IsClientStream, info.IsServerStream), start, code, err)
		return err
	}
}

// countingStream counts the messages a stream sends and receives.
type countingStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}

// InnerCalls records the calls of one unary method that a service receives
// inside a stream (StorageService.Exchange carries Read, BatchRead and
// Apply) as the unary interceptor records that method's calls: the same
// grpc_server_* series with grpc_type "unary", and the same log line, so
// metrics and logs do not depend on how a call arrived.
type InnerCalls struct {
	mm         *methodMetrics
	logger     *slog.Logger
	fullMethod string
}

// InnerCalls returns the recorder of fullMethod ("/pkg.Service/Method").
func (s *Server) InnerCalls(fullMethod string) *InnerCalls {
	return &InnerCalls{mm: s.metrics.method(fullMethod, false, false), logger: s.logger, fullMethod: fullMethod}
}

// Start counts a call received and returns its start time for Done. A
// nil *InnerCalls records nothing.
func (c *InnerCalls) Start() time.Time {
	if c == nil {
		return time.Time{}
	}
	c.mm.started.Inc()
	c.mm.received.Inc()
	return time.Now()
}

// Done counts, times and logs a call that ended with err (a status error
// or nil).
func (c *InnerCalls) Done(ctx context.Context, start time.Time, err error) {
	if c == nil {
		return
	}
	if err == nil {
		c.mm.sent.Inc()
	}
	code := c.mm.done(err, start)
	logCall(ctx, c.logger, c.fullMethod, "unary", start, code, err)
}
