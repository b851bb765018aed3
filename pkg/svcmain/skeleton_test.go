package svcmain

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// syncBuffer is a bytes.Buffer safe for the etcd client's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestZapLoggerLevelsAndFields(t *testing.T) {
	var buf syncBuffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	z := ZapLogger(h, slog.LevelWarn).Named("etcd").With(zap.String("endpoint", "e1"))
	z.Info("chatter")
	z.Warn("lost leader", zap.Duration("after", time.Second), zap.Error(errors.New("boom")))
	out := buf.String()
	if strings.Contains(out, "chatter") {
		t.Errorf("info line passed the warn threshold:\n%s", out)
	}
	for _, want := range []string{"level=WARN", `msg="lost leader"`, "logger=etcd", "endpoint=e1", "after=1s", "error=boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %s:\n%s", want, out)
		}
	}
}

// TestEtcdClientLogsReachSlog checks that the etcd client's own log lines
// (here: its retry interceptor giving up on an unreachable endpoint) reach
// the service's slog handler.
func TestEtcdClientLogsReachSlog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	c, err := NewEtcdClient([]string{"http://" + addr}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = c.Get(ctx, "k")
	cancel()
	if err == nil {
		t.Fatal("Get against no etcd succeeded")
	}
	out := buf.String()
	if !strings.Contains(out, `"component":"etcd-client"`) || !strings.Contains(out, `"level":"WARN"`) {
		t.Fatalf("no etcd client warning in the slog output:\n%s", out)
	}
}

func TestToStatus(t *testing.T) {
	errMine := errors.New("mine")
	code := func(err error) codes.Code {
		if errors.Is(err, errMine) {
			return codes.NotFound
		}
		return codes.Unknown
	}
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("x: %w", errMine), codes.NotFound},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("x: %w", status.Error(codes.Unavailable, "down")), codes.Unavailable},
		{status.Error(codes.Unknown, "?"), codes.Internal},
		{errors.New("a bug"), codes.Internal},
	} {
		if got := status.Code(ToStatus(tc.err, code)); got != tc.want {
			t.Errorf("ToStatus(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	if ToStatus(nil, code) != nil {
		t.Error("nil became a status")
	}
}

func health(t *testing.T, addr, svc string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpcx.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		t.Fatalf("health %q: %v", svc, err)
	}
	return resp.GetStatus()
}

func TestSkeletonReadinessAndShutdownOrder(t *testing.T) {
	const svc = "veltrix.test.v1.TestService"
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprintf("LiveBeforeReady=%v", live), func(t *testing.T) {
			sk := New(Options{Name: "test", Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: time.Second,
				Services: []string{svc}, LiveBeforeReady: live})
			if err := sk.Listen("127.0.0.1:0", grpcx.ServerOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := sk.Serve(""); err != nil {
				t.Fatal(err)
			}
			overall := healthpb.HealthCheckResponse_NOT_SERVING
			if live {
				overall = healthpb.HealthCheckResponse_SERVING
			}
			if got := health(t, sk.Addr(), ""); got != overall {
				t.Errorf("overall before ready: %s, want %s", got, overall)
			}
			if got := health(t, sk.Addr(), svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("service before ready: %s", got)
			}
			select {
			case <-sk.Ready():
				t.Fatal("Ready closed before SetReady")
			default:
			}
			sk.SetReady()
			<-sk.Ready()
			for _, name := range []string{"", svc} {
				if got := health(t, sk.Addr(), name); got != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("%q after ready: %s", name, got)
				}
			}
			var steps []string
			err := sk.Close(Stages{
				BeforeDrain: func(context.Context) {
					// Still accepting calls, but already NOT_SERVING.
					steps = append(steps, "before-drain:"+health(t, sk.Addr(), svc).String())
				},
				Subsystems: func() error {
					if _, err := net.DialTimeout("tcp", sk.Addr(), time.Second); err == nil {
						t.Error("still accepting connections when the subsystems close")
					}
					steps = append(steps, "subsystems")
					return errors.New("engine: close failed")
				},
			})
			if err == nil || !strings.Contains(err.Error(), "engine: close failed") {
				t.Errorf("Close: %v", err)
			}
			if got := strings.Join(steps, ","); got != "before-drain:NOT_SERVING,subsystems" {
				t.Errorf("shutdown steps: %s", got)
			}
			if err2 := sk.Close(Stages{}); err2 != err {
				t.Errorf("second Close: %v", err2)
			}
		})
	}
}

func TestSkeletonCloseBeforeListen(t *testing.T) {
	sk := New(Options{Name: "test"})
	closed := false
	if err := sk.Close(Stages{Subsystems: func() error { closed = true; return nil }}); err != nil || !closed {
		t.Fatalf("Close of an unstarted skeleton: %v, subsystems closed %v", err, closed)
	}
}

func TestCommonDefaultsWrittenOnce(t *testing.T) {
	type cfg struct {
		Cluster, Listen, Advertise, Metrics string
		Etcd                                []string
		Shutdown                            time.Duration
	}
	common := func(c *cfg) Common {
		return Common{Cluster: &c.Cluster, EtcdEndpoints: &c.Etcd, ListenAddr: &c.Listen, AdvertiseAddr: &c.Advertise,
			MetricsAddr: &c.Metrics, ShutdownTimeout: &c.Shutdown}
	}
	a := Addrs{Listen: "127.0.0.1:0", FlagListen: "127.0.0.1:7500", FlagMetrics: "127.0.0.1:9500"}
	var embedded cfg
	common(&embedded).EnsureDefaults(a)
	var flagged cfg
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	common(&flagged).AddFlags(fs, a)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	// The binary's defaults are the embedded ones but for the addresses.
	if embedded.Cluster != flagged.Cluster || embedded.Shutdown != flagged.Shutdown || fmt.Sprint(embedded.Etcd) != fmt.Sprint(flagged.Etcd) {
		t.Errorf("embedded %+v, flags %+v", embedded, flagged)
	}
	if embedded.Listen != "127.0.0.1:0" || flagged.Listen != "127.0.0.1:7500" || embedded.Metrics != "" || flagged.Metrics != "127.0.0.1:9500" {
		t.Errorf("addresses: embedded %+v, flags %+v", embedded, flagged)
	}
	if errs := common(&embedded).Validate(); len(errs) != 0 {
		t.Errorf("defaults invalid: %v", errs)
	}
	bad := cfg{Cluster: "Bad Name", Listen: "nope", Shutdown: -1}
	if errs := common(&bad).Validate(); len(errs) != 3 {
		t.Errorf("want 3 problems, got %v", errs)
	}
}
