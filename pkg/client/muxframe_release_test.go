package client

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
)

// countingPool counts the buffers given back.
type countingPool struct {
	mem.BufferPool
	puts int
}

func (p *countingPool) Put(b *[]byte) { p.puts++; p.BufferPool.Put(b) }

// TestFrameRelease: a received message's buffer goes back to its
// pool once, when its last result is released (after gRPC let go of it),
// whether it came in one buffer or several; released results no longer
// alias it, and a second release does nothing.
func TestFrameRelease(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 4000)
	b, err := proto.Marshal(&kvv1.ExchangeResponse{Results: []*muxv1.Result{
		{Id: 1, Response: big}, {Id: 2, Code: 5, Message: "nf"}, {Id: 3, Response: big[:10]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, parts := range []int{1, 3} {
		pool := &countingPool{BufferPool: mem.NewTieredBufferPool(1 << 16)}
		var data mem.BufferSlice
		for i := range parts {
			lo, hi := i*len(b)/parts, (i+1)*len(b)/parts
			buf := pool.Get(hi - lo)
			copy(*buf, b[lo:hi])
			data = append(data, mem.NewBuffer(buf, pool))
		}
		var f resultFrame
		if err := (frameCodec{}).Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		data.Free() // as grpc does after Unmarshal
		rs := f.GetResults()
		if parts == 1 && pool.puts != 0 {
			t.Fatalf("buffer given back while 3 results alias it")
		}
		if !bytes.Equal(rs[0].GetResponse(), big) {
			t.Fatal("response 0 differs")
		}
		rs[0].release()
		rs[0].release()
		rs[2].release()
		if parts == 1 && pool.puts != 0 {
			t.Fatalf("%d buffers given back while result 2 is unreleased", pool.puts)
		}
		rs[1].release()
		if want := map[int]int{1: 1, 3: 3}[parts]; pool.puts != want {
			t.Fatalf("%d parts: %d buffers given back, want %d", parts, pool.puts, want)
		}
		if rs[0].GetResponse() != nil {
			t.Fatal("a released result still aliases the buffer")
		}
	}
}
