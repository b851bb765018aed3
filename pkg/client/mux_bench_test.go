package client_test

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// BenchmarkGet: Gets of one small item by parallel callers, from a fake
// router serving Exchange, over the stream and by unary RPCs. The CPU per
// call (client and fake router in one process) is what differs:
//
//	go test -run '^$' -bench Get -benchtime 20000x -count 3 ./pkg/client
func BenchmarkGet(b *testing.B) {
	for _, streams := range []bool{true, false} {
		name := "unary"
		if streams {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) {
			st := newStore()
			st.tables[table] = &kvv1.Table{Name: table, Id: 1}
			f := startFakes(b, st, 1)[0]
			serveExchange(f)
			c, err := client.New(b.Context(), []string{f.addr}, client.WithStreams(streams))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			if _, err := c.Put(b.Context(), table, []byte("k"), nil, make([]byte, 100)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := c.Get(b.Context(), table, []byte("k"), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
