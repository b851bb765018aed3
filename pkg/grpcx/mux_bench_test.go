package grpcx

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchMux is a minimal Mux client: one call per message, a receiving
// goroutine handing each result to its waiter.
type benchMux struct {
	cs      grpc.ClientStream
	sendMu  sync.Mutex
	mu      sync.Mutex
	waiters map[uint64]chan *muxv1.Result
	next    atomic.Uint64
}

func (c *benchMux) recvLoop() {
	for {
		var m kvv1.ExchangeResponse
		if err := c.cs.RecvMsg(&m); err != nil {
			return
		}
		for _, r := range m.GetResults() {
			c.mu.Lock()
			ch := c.waiters[r.GetId()]
			delete(c.waiters, r.GetId())
			c.mu.Unlock()
			ch <- r
		}
	}
}

func (c *benchMux) call(method string, req []byte) (*muxv1.Result, error) {
	id := c.next.Add(1)
	ch := make(chan *muxv1.Result, 1)
	c.mu.Lock()
	c.waiters[id] = ch
	c.mu.Unlock()
	c.sendMu.Lock()
	err := c.cs.SendMsg(&kvv1.ExchangeRequest{Calls: []*muxv1.Call{{Id: id, Method: method, Request: req}}})
	c.sendMu.Unlock()
	if err != nil {
		return nil, err
	}
	return <-ch, nil
}

// BenchmarkMuxEcho compares a unary call with the same call framed on a
// Mux stream, client and server in one process; cpu-µs/op is the
// process's CPU time per call (both sides, interceptors included).
func BenchmarkMuxEcho(b *testing.B) {
	for _, mode := range []string{"unary", "mux"} {
		b.Run(mode, func(b *testing.B) {
			mt := startMuxServer(b)
			ctx := authorized(context.Background())
			req := wrapperspb.String("hello")
			raw, _ := proto.Marshal(req)
			var mc *benchMux
			if mode == "mux" {
				cs, err := mt.cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, muxSvc+"Exchange")
				if err != nil {
					b.Fatal(err)
				}
				mc = &benchMux{cs: cs, waiters: map[uint64]chan *muxv1.Result{}}
				go mc.recvLoop()
			}
			b.SetParallelism(16)
			b.ResetTimer()
			start := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				var out wrapperspb.StringValue
				for pb.Next() {
					if mc == nil {
						if err := mt.cc.Invoke(ctx, muxSvc+"Echo", req, &out); err != nil {
							b.Error(err)
							return
						}
						continue
					}
					r, err := mc.call(muxSvc+"Echo", raw)
					if err != nil || r.GetCode() != 0 {
						b.Error(r, err)
						return
					}
					if err := proto.Unmarshal(r.GetResponse(), &out); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
			if mc != nil {
				_ = mc.cs.CloseSend()
			}
		})
	}
}
