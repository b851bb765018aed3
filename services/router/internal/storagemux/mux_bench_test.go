package storagemux_test

import (
	"testing"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/storagemux"
)

// BenchmarkRead: Reads by parallel callers over the stream, from a fake
// node (a goroutine per call) over bufconn. Allocations and CPU per call
// are the client's plus the fake node's:
//
//	go test -run '^$' -bench . -benchtime 20000x -count 3 ./internal/storagemux
func BenchmarkRead(b *testing.B) {
	c, _ := serve(b, &node{read: echo}, storagemux.Options{})
	req := &storagev1.ReadRequest{Key: key("k")}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Read(b.Context(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkApplyAsync: ApplyAsync calls, three at a time per caller (a
// write to three replicas), waiting for the three answers.
func BenchmarkApplyAsync(b *testing.B) {
	c, _ := serve(b, &node{read: echo}, storagemux.Options{})
	req := &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key("k"), Version: 1, Value: make([]byte, 100)}}}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan error, 3)
		for pb.Next() {
			for range 3 {
				c.ApplyAsync(b.Context(), req, func(_ *storagev1.ApplyResponse, err error) { done <- err })
			}
			for range 3 {
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}
