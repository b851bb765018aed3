package grpcx_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// valueOf is the deterministic value of key pk: sizes from 0 to ~6 KiB so
// that answer messages cross gRPC's 1 KiB pooling threshold.
func valueOf(pk []byte) []byte {
	h := uint64(14695981039346656037)
	for _, b := range pk {
		h = (h ^ uint64(b)) * 1099511628211
	}
	n := int(h % 6000)
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(h >> (8 * (i % 8)))
		h = h*6364136223846793005 + 1442695040888963407
	}
	return v
}

type stressKV struct {
	kvv1.UnimplementedKVServiceServer
	mux     *grpcx.Mux
	streams atomic.Int64
	noBreak bool
	runs    sync.Map // pk → *atomic.Int64
}

func (k *stressKV) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	n, _ := k.runs.LoadOrStore(string(req.GetKey().GetPartitionKey()), new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if rand.IntN(4) == 0 {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	}
	if bytes.HasPrefix(req.GetKey().GetPartitionKey(), []byte("err")) {
		return nil, status.Errorf(codes.NotFound, "no %q", req.GetKey().GetPartitionKey())
	}
	return &kvv1.GetResponse{Found: true, Value: valueOf(req.GetKey().GetPartitionKey()), Version: 7}, nil
}

func (k *stressKV) BatchGet(ctx context.Context, req *kvv1.BatchGetRequest) (*kvv1.BatchGetResponse, error) {
	if rand.IntN(4) == 0 {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	}
	resp := &kvv1.BatchGetResponse{}
	for _, key := range req.GetKeys() {
		resp.Results = append(resp.Results, &kvv1.GetResponse{Found: true, Value: valueOf(key.GetPartitionKey()), Version: 7})
	}
	return resp, nil
}

// breakingStream ends its stream with UNAVAILABLE at a random moment (a
// broken stream mid-flight), for every other stream.
type breakingStream struct {
	kvv1.KVService_ExchangeServer
	in  chan recvd
	brk <-chan time.Time
}

type recvd struct {
	calls []*muxv1.Call
	err   error
}

func (s *breakingStream) RecvCalls() ([]*muxv1.Call, error) {
	select {
	case r := <-s.in:
		return r.calls, r.err
	case <-s.brk:
		return nil, status.Error(codes.Unavailable, "test: stream broken on purpose")
	case <-s.Context().Done():
		return nil, status.FromContextError(s.Context().Err()).Err()
	}
}

func (s *breakingStream) SendResults(results []*muxv1.Result, draining bool, lastID uint64) error {
	return s.Send(&kvv1.ExchangeResponse{Results: results, Draining: draining, LastId: lastID})
}

func (k *stressKV) Exchange(stream kvv1.KVService_ExchangeServer) error {
	k.streams.Add(1)
	bs := &breakingStream{KVService_ExchangeServer: stream, in: make(chan recvd)}
	if !k.noBreak {
		bs.brk = time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		for {
			req, err := stream.Recv()
			var r recvd
			if err != nil {
				r.err = err
			} else {
				r.calls = req.GetCalls()
			}
			select {
			case bs.in <- r:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return k.mux.Serve(bs)
}

// serveStress serves kv (Get and BatchGet on its Exchange stream too) on a
// loopback port and returns the server and a streaming client of it, both
// stopped when the test ends.
func serveStress(t *testing.T, kv *stressKV) (*grpcx.Server, *client.Client) {
	t.Helper()
	srv := grpcx.NewServer(grpcx.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	kvv1.RegisterKVServiceServer(srv, kv)
	var err error
	kv.mux, err = srv.NewMux([]string{kvv1.KVService_Get_FullMethodName, kvv1.KVService_BatchGet_FullMethodName})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	c, err := client.New(t.Context(), []string{ln.Addr().String()}, client.WithStreams(true), client.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return srv, c
}

// TestMuxStressAnswersBytes: many concurrent Get and BatchGet calls
// over the client's stream to a grpcx.Mux (pooled response buffers on the
// router side, the aliasing frame codec on the client side), with random
// cancels and deadlines and streams broken mid-flight: every answer that
// arrives OK holds exactly the bytes the server produced.
func TestMuxStressAnswersBytes(t *testing.T) {
	kv := &stressKV{}
	_, c := serveStress(t, kv)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithCancel(t.Context())
				switch rand.IntN(4) {
				case 0:
					go func() { time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond); cancel() }()
				case 1:
					ctx, cancel = context.WithTimeout(t.Context(), time.Duration(rand.IntN(500))*time.Microsecond)
				}
				if i%3 == 0 {
					pk := fmt.Appendf(nil, "g%d-%d", g, i)
					item, found, err := c.Get(ctx, "t", pk, nil)
					if err == nil {
						if !found || !bytes.Equal(item.Value, valueOf(pk)) {
							t.Errorf("Get %s: wrong value (%d bytes, want %d)", pk, len(item.Value), len(valueOf(pk)))
						}
						ok.Add(1)
					} else {
						checkErr(t, err)
						failed.Add(1)
					}
				} else {
					keys := make([]client.Key, 1+rand.IntN(16))
					for j := range keys {
						keys[j] = client.Key{Table: "t", PartitionKey: binary.BigEndian.AppendUint64(fmt.Appendf(nil, "g%d-", g), uint64(i*100+j))}
					}
					res, err := c.BatchGet(ctx, keys)
					if err == nil {
						for j, r := range res {
							if want := valueOf(keys[j].PartitionKey); !r.Found || !bytes.Equal(r.Item.Value, want) {
								t.Errorf("BatchGet key %d: wrong value (%d bytes, want %d)", j, len(r.Item.Value), len(want))
							}
						}
						ok.Add(1)
					} else {
						checkErr(t, err)
						failed.Add(1)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	t.Logf("%d ok, %d failed, %d streams", ok.Load(), failed.Load(), kv.streams.Load())
	if ok.Load() == 0 || kv.streams.Load() < 2 {
		t.Fatal("the stress did not exercise the streams")
	}
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) {
			return
		}
		t.Errorf("not a status: %v", err)
		return
	}
	switch se.GRPCStatus().Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
	default:
		t.Errorf("unexpected error: %v", err)
	}
}

// TestMuxDrainNoDoubleRun: calls in flight when the server drains are
// answered on the stream or go by the unary RPC, never both: each call
// (a unique key) runs once.
func TestMuxDrainNoDoubleRun(t *testing.T) {
	kv := &stressKV{noBreak: true}
	srv, c := serveStress(t, kv)
	var wg sync.WaitGroup
	var calls atomic.Int64
	stop := time.Now().Add(1500 * time.Millisecond)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				pk := fmt.Appendf(nil, "d%d-%d", g, i)
				calls.Add(1)
				item, found, err := c.Get(t.Context(), "t", pk, nil)
				if err != nil {
					t.Errorf("Get %s: %v", pk, err)
					continue
				}
				if !found || !bytes.Equal(item.Value, valueOf(pk)) {
					t.Errorf("Get %s: wrong value", pk)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	srv.Drain()
	wg.Wait()
	kv.runs.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("call %s ran %d times", k, n)
		}
		return true
	})
	t.Logf("%d calls, %d streams", calls.Load(), kv.streams.Load())
}
