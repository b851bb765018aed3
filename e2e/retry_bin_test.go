package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
)

// TestBinClientRetries counts, end to end, the attempts the Go client's
// default retry policy makes against a real router whose only storage node
// was SIGKILLed: a call that keeps failing makes 1 + DefaultMaxRetries
// attempts and says so, and a call made while the node restarts succeeds
// (issue 13: the client used to give up after ~0.3 s).
func TestBinClientRetries(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 1, RF: 1, NoSync: true})
	var attempts atomic.Int64
	count := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Put") {
			attempts.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	// A longer default timeout than the 5.6-11 s budget, so the count is exact.
	cl := c.Client(t, client.WithDialOptions(count), client.WithDefaultTimeout(30*time.Second))
	ctx := t.Context()
	if _, err := cl.Admin().CreateTable(ctx, &kvv1.CreateTableRequest{Name: "retries"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "retries", []byte("k"), nil, []byte("v")); err != nil {
		t.Fatal(err)
	}

	c.Nodes[0].Kill(t)
	attempts.Store(0)
	start := time.Now()
	_, err := cl.Put(ctx, "retries", []byte("k"), nil, []byte("down"))
	want := int64(client.DefaultMaxRetries + 1)
	t.Logf("failing put: %v after %v", err, time.Since(start))
	if !client.IsUnavailable(err) || !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", want)) {
		t.Fatalf("put with the only node down: %v; want Unavailable after %d attempts", err, want)
	}
	if got := attempts.Load(); got != want {
		t.Errorf("%d attempts reached the router, want %d", got, want)
	}
	if el := time.Since(start); el < 5*time.Second {
		t.Errorf("gave up after %v; the default budget should cover a restart (5.6 s or more)", el)
	}

	// A put started while the node is down succeeds once it is back.
	attempts.Store(0)
	done := make(chan error, 1)
	go func() {
		_, err := cl.Put(ctx, "retries", []byte("k"), nil, []byte("during restart"))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	c.Nodes[0].Restart(t)
	if err := <-done; err != nil {
		t.Fatalf("put during the restart: %v (%d attempts)", err, attempts.Load())
	}
	t.Logf("put during the restart succeeded after %d attempts", attempts.Load())
	if attempts.Load() < 2 {
		t.Errorf("%d attempts; the node was down, so at least 2 were needed", attempts.Load())
	}
	it, found, err := cl.Get(ctx, "retries", []byte("k"), nil)
	if err != nil || !found || string(it.Value) != "during restart" {
		t.Fatalf("get after restart = %q %v %v", it.Value, found, err)
	}
}
