package grpcx

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// testService has a unary method OK, a unary method Fail (Unavailable)
// and a server-streaming method Two that sends two messages.
var testService = grpc.ServiceDesc{
	ServiceName: "grpcx.test.Svc",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "OK", Handler: unary("OK", nil)},
		{MethodName: "Fail", Handler: unary("Fail", status.Error(codes.Unavailable, "down for the test"))},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Two",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			var in emptypb.Empty
			if err := ss.RecvMsg(&in); err != nil {
				return err
			}
			for range 2 {
				if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

func unary(name string, result error) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, result }
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/grpcx.test.Svc/" + name}, h)
	}
}

// recorder is a slog.Handler keeping every record, for the server's
// goroutines to log into.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

func (r *recorder) records() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

func attrs(rec slog.Record) map[string]string {
	out := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		out[a.Key] = a.Value.String()
		return true
	})
	return out
}

func startTestServer(t *testing.T, logs *recorder) (*grpc.ClientConn, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := NewServer(ServerOptions{
		Logger:     slog.New(logs),
		Registerer: reg,
	})
	s.RegisterService(&testService, nil)
	s.InitMetrics()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc, reg
}

// value returns the value of metric name with the given label values
// (counter value or histogram sample count), and whether the series
// exists.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

func TestServerMetricsAndLogs(t *testing.T) {
	var logs recorder
	cc, reg := startTestServer(t, &logs)
	ok := map[string]string{"grpc_type": "unary", "grpc_service": "grpcx.test.Svc", "grpc_method": "OK"}
	withCode := func(l map[string]string, c string) map[string]string {
		out := map[string]string{"grpc_code": c}
		for k, v := range l {
			out[k] = v
		}
		return out
	}

	// InitMetrics created every method's series before any call.
	if v, found := value(t, reg, "grpc_server_handled_total", withCode(ok, "OK")); !found || v != 0 {
		t.Fatalf("before any call: handled{OK, OK} = %v (exists %v), want an existing 0 series", v, found)
	}
	two := map[string]string{"grpc_type": "server_stream", "grpc_service": "grpcx.test.Svc", "grpc_method": "Two"}
	if _, found := value(t, reg, "grpc_server_started_total", two); !found {
		t.Fatal("before any call: no started series for the server_stream method Two")
	}

	ctx := t.Context()
	for range 3 {
		if err := cc.Invoke(ctx, "/grpcx.test.Svc/OK", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if recs := logs.records(); len(recs) != 0 {
		t.Fatalf("successful calls logged at info level: %v", recs)
	}
	if err := cc.Invoke(ctx, "/grpcx.test.Svc/Fail", &emptypb.Empty{}, &emptypb.Empty{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Fail: %v, want Unavailable", err)
	}
	st, err := cc.NewStream(ctx, &testService.Streams[0], "/grpcx.test.Svc/Two")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; n < 3; n++ {
		if err := st.RecvMsg(&emptypb.Empty{}); err != nil {
			break
		}
	}
	if n != 2 {
		t.Fatalf("stream Two: received %d messages, want 2", n)
	}

	fail := map[string]string{"grpc_type": "unary", "grpc_service": "grpcx.test.Svc", "grpc_method": "Fail"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_started_total", ok, 3},
		{"grpc_server_msg_received_total", ok, 3},
		{"grpc_server_msg_sent_total", ok, 3},
		{"grpc_server_handled_total", withCode(ok, "OK"), 3},
		{"grpc_server_handling_seconds", ok, 3},
		{"grpc_server_started_total", fail, 1},
		{"grpc_server_msg_sent_total", fail, 0},
		{"grpc_server_handled_total", withCode(fail, "Unavailable"), 1},
		{"grpc_server_handled_total", withCode(fail, "OK"), 0},
		{"grpc_server_started_total", two, 1},
		{"grpc_server_msg_received_total", two, 1},
		{"grpc_server_msg_sent_total", two, 2},
		{"grpc_server_handled_total", withCode(two, "OK"), 1},
	} {
		// The interceptors record a call before grpc sends its status, so
		// every call the client saw end is counted.
		if v, found := value(t, reg, c.name, c.labels); !found || v != c.want {
			t.Errorf("%s%v = %v (exists %v), want %v", c.name, c.labels, v, found, c.want)
		}
	}
	recs := logs.records()
	if len(recs) != 1 {
		t.Fatalf("logged %d records, want one for the failed call: %v", len(recs), recs)
	}
	a := attrs(recs[0])
	if recs[0].Level != slog.LevelWarn || recs[0].Message != "finished call" || a["grpc.code"] != "Unavailable" || a["grpc.method"] != "Fail" || a["grpc.service"] != "grpcx.test.Svc" || a["grpc.error"] == "" {
		t.Fatalf("logged %v %q %v, want a WARN finished call of Fail with code Unavailable and its error", recs[0].Level, recs[0].Message, a)
	}
}

// TestLevelOf: expected outcomes (a lost lock race, a refused credential,
// already audited) log at debug, server faults at error, the rest at warn.
func TestLevelOf(t *testing.T) {
	for c, want := range map[codes.Code]slog.Level{
		codes.OK: slog.LevelDebug, codes.Aborted: slog.LevelDebug, codes.Unauthenticated: slog.LevelDebug,
		codes.PermissionDenied: slog.LevelDebug, codes.NotFound: slog.LevelDebug,
		codes.Unavailable: slog.LevelWarn, codes.DeadlineExceeded: slog.LevelWarn, codes.ResourceExhausted: slog.LevelWarn,
		codes.Internal: slog.LevelError, codes.DataLoss: slog.LevelError,
	} {
		if got := levelOf(c); got != want {
			t.Errorf("levelOf(%s) = %s, want %s", c, got, want)
		}
	}
}
