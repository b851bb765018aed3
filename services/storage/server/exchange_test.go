package server_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// exchange sends calls in one message on a new Exchange stream and returns
// their answers by id.
func exchange(t *testing.T, c storagev1.StorageServiceClient, calls ...*storagev1.ExchangeCall) map[uint64]*storagev1.ExchangeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&storagev1.ExchangeRequest{Calls: calls}); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]*storagev1.ExchangeResult{}
	for len(out) < len(calls) {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("Exchange: %v after %d of %d answers", err, len(out), len(calls))
		}
		for _, r := range resp.GetResults() {
			out[r.GetId()] = r
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("Exchange did not end after CloseSend: %v", err)
	}
	return out
}

// TestExchangeParity: every call carried by Exchange is answered exactly as
// its unary RPC answers it — the response, or the error's code, message and
// details (the router's retries and fencing read them) — and is counted in
// the unary method's gRPC metrics.
func TestExchangeParity(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "k")
	stored := key(7, pk, "stored")
	if _, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: stored, Version: 5, Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	var foreign string
	for i := 0; ; i++ {
		foreign = "f" + strings.Repeat("y", i)
		if placement.PartitionOf(7, []byte(foreign), partitions) == partitions-1 {
			break
		}
	}
	// A partition whose routing changed at the current epoch: calls routed
	// by the one before are stale.
	fenced := key(7, ownedPK(t, 7, "fenced"), "")
	doc, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { d.MarkChanged(fenced.Partition, d.Epoch); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: stored, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatal(err) // waits for the node to see the epoch
	}
	rec := func(k *storagev1.Key) *storagev1.Record {
		return &storagev1.Record{Key: k, Version: 9, Value: []byte("new")}
	}
	read := func(r *storagev1.ReadRequest) *storagev1.ExchangeCall {
		return &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Read{Read: r}}
	}
	batch := func(r *storagev1.BatchReadRequest) *storagev1.ExchangeCall {
		return &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_BatchRead{BatchRead: r}}
	}
	apply := func(r *storagev1.ApplyRequest) *storagev1.ExchangeCall {
		return &storagev1.ExchangeCall{Request: &storagev1.ExchangeCall_Apply{Apply: r}}
	}
	cases := []struct {
		name string
		code codes.Code
		// call is the Exchange call; unary makes the same call by the
		// unary RPC. Writes use distinct keys (the first write wins).
		call  *storagev1.ExchangeCall
		unary func() (proto.Message, error)
	}{
		{"read found", codes.OK, read(&storagev1.ReadRequest{Key: stored}),
			func() (proto.Message, error) { return env.c.Read(ctx, &storagev1.ReadRequest{Key: stored}) }},
		{"read not found", codes.OK, read(&storagev1.ReadRequest{Key: key(7, pk, "none")}),
			func() (proto.Message, error) { return env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, pk, "none")}) }},
		{"read missing key", codes.InvalidArgument, read(&storagev1.ReadRequest{}),
			func() (proto.Message, error) { return env.c.Read(ctx, &storagev1.ReadRequest{}) }},
		{"read oversize key", codes.InvalidArgument, read(&storagev1.ReadRequest{Key: key(7, strings.Repeat("p", 2049), "")}),
			func() (proto.Message, error) {
				return env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, strings.Repeat("p", 2049), "")})
			}},
		{"read not held", codes.FailedPrecondition, read(&storagev1.ReadRequest{Key: key(7, foreign, "")}),
			func() (proto.Message, error) {
				return env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, foreign, "")})
			}},
		{"read stale epoch", codes.FailedPrecondition, read(&storagev1.ReadRequest{Key: fenced, PlacementEpoch: doc.Epoch - 1}),
			func() (proto.Message, error) {
				return env.c.Read(ctx, &storagev1.ReadRequest{Key: fenced, PlacementEpoch: doc.Epoch - 1})
			}},
		{"batch read", codes.OK, batch(&storagev1.BatchReadRequest{Keys: []*storagev1.Key{stored, key(7, pk, "none")}}),
			func() (proto.Message, error) {
				return env.c.BatchRead(ctx, &storagev1.BatchReadRequest{Keys: []*storagev1.Key{stored, key(7, pk, "none")}})
			}},
		{"batch read bad key", codes.InvalidArgument, batch(&storagev1.BatchReadRequest{Keys: []*storagev1.Key{stored, nil}}),
			func() (proto.Message, error) {
				return env.c.BatchRead(ctx, &storagev1.BatchReadRequest{Keys: []*storagev1.Key{stored, nil}})
			}},
		{"batch read stale epoch", codes.FailedPrecondition, batch(&storagev1.BatchReadRequest{Keys: []*storagev1.Key{fenced}, PlacementEpoch: 1}),
			func() (proto.Message, error) {
				return env.c.BatchRead(ctx, &storagev1.BatchReadRequest{Keys: []*storagev1.Key{fenced}, PlacementEpoch: 1})
			}},
		{"apply", codes.OK, apply(&storagev1.ApplyRequest{Records: []*storagev1.Record{rec(key(7, pk, "x1"))}}),
			func() (proto.Message, error) {
				return env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec(key(7, pk, "u1"))}})
			}},
		{"apply superseded", codes.OK, apply(&storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: stored, Version: 1}}}),
			func() (proto.Message, error) {
				return env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: stored, Version: 1}}})
			}},
		{"apply empty", codes.InvalidArgument, apply(&storagev1.ApplyRequest{}),
			func() (proto.Message, error) { return env.c.Apply(ctx, &storagev1.ApplyRequest{}) }},
		{"apply zero version", codes.InvalidArgument, apply(&storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(7, pk, "z")}}}),
			func() (proto.Message, error) {
				return env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(7, pk, "z")}}})
			}},
		{"apply not held", codes.FailedPrecondition, apply(&storagev1.ApplyRequest{Records: []*storagev1.Record{rec(key(7, foreign, ""))}}),
			func() (proto.Message, error) {
				return env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec(key(7, foreign, ""))}})
			}},
		{"apply stale epoch", codes.FailedPrecondition, apply(&storagev1.ApplyRequest{Records: []*storagev1.Record{rec(fenced)}, PlacementEpoch: 1}),
			func() (proto.Message, error) {
				return env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec(fenced)}, PlacementEpoch: 1})
			}},
		{"no request", codes.InvalidArgument, &storagev1.ExchangeCall{}, nil},
	}
	// All in one message: the node runs them concurrently and answers
	// each by its id.
	calls := make([]*storagev1.ExchangeCall, len(cases))
	for i, tc := range cases {
		tc.call.Id = uint64(i + 1)
		calls[i] = tc.call
	}
	readsBefore := handled(t, env, "Read", codes.OK)
	got := exchange(t, env.c, calls...)
	if n := handled(t, env, "Read", codes.OK) - readsBefore; n != 2 {
		t.Errorf("grpc_server_handled_total{Read,OK} grew by %v for two Reads over Exchange", n)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := got[uint64(i+1)]
			if res == nil {
				t.Fatal("no answer")
			}
			if codes.Code(res.GetCode()) != tc.code {
				t.Fatalf("code %s (%s), want %s", codes.Code(res.GetCode()), res.GetMessage(), tc.code)
			}
			if tc.unary == nil {
				return
			}
			want, err := tc.unary()
			if tc.code != codes.OK {
				if !sameStatus(status.Convert(err), status.FromProto(&spb.Status{Code: res.GetCode(), Message: res.GetMessage(), Details: res.GetDetails()})) {
					t.Fatalf("Exchange answered %d %q %v, the unary RPC %v", res.GetCode(), res.GetMessage(), res.GetDetails(), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var resp proto.Message
			switch r := res.GetResponse().(type) {
			case *storagev1.ExchangeResult_Read:
				resp = r.Read
			case *storagev1.ExchangeResult_BatchRead:
				resp = r.BatchRead
			case *storagev1.ExchangeResult_Apply:
				resp = r.Apply
			}
			if !proto.Equal(resp, want) {
				t.Fatalf("Exchange answered %v, the unary RPC %v", resp, want)
			}
		})
	}
	// The stale-epoch refusal carries the ErrorInfo the router acts on.
	if d := got[6].GetDetails(); len(d) != 1 || !strings.Contains(string(d[0].GetValue()), "STALE_PLACEMENT_EPOCH") {
		t.Errorf("stale-epoch details = %v", d)
	}
}

// TestExchangeTimeout: a call's timeout_micros is its deadline on the node.
func TestExchangeTimeout(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	k := key(7, ownedPK(t, 7, "k"), "")
	// A placement epoch the node never sees: the call waits for it until
	// its deadline.
	got := exchange(t, env.c, &storagev1.ExchangeCall{Id: 1, TimeoutMicros: 50_000,
		Request: &storagev1.ExchangeCall_Read{Read: &storagev1.ReadRequest{Key: k, PlacementEpoch: 1 << 40}}})
	if c := codes.Code(got[1].GetCode()); c != codes.DeadlineExceeded {
		t.Fatalf("code %s (%s), want DeadlineExceeded", c, got[1].GetMessage())
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := env.c.Read(tctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: 1 << 40})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unary: %v", err)
	}
}

// TestExchangeCancel: a cancelled call ends on the node (CANCELED) without
// waiting for its deadline, and the stream goes on.
func TestExchangeCancel(t *testing.T) {
	env := setup(t)
	k := key(7, ownedPK(t, 7, "k"), "")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := env.c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waiting := &storagev1.ExchangeCall{Id: 1, Request: &storagev1.ExchangeCall_Read{Read: &storagev1.ReadRequest{Key: k, PlacementEpoch: 1 << 40}}}
	if err := st.Send(&storagev1.ExchangeRequest{Calls: []*storagev1.ExchangeCall{waiting}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := st.Send(&storagev1.ExchangeRequest{Calls: []*storagev1.ExchangeCall{{Id: 1, Cancel: true},
		{Id: 2, Request: &storagev1.ExchangeCall_Read{Read: &storagev1.ReadRequest{Key: k}}}}}); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*storagev1.ExchangeResult{}
	for len(got) < 2 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			got[r.GetId()] = r
		}
	}
	if c := codes.Code(got[1].GetCode()); c != codes.Canceled || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("cancelled call: %s after %s", c, time.Since(start))
	}
	if c := codes.Code(got[2].GetCode()); c != codes.OK {
		t.Fatalf("call after the cancel: %s %s", c, got[2].GetMessage())
	}
}

// TestExchangeDrain: a node shutting down tells its Exchange streams the
// last call it took, answers it, and ends the stream, so its shutdown does
// not wait out the shutdown timeout.
func TestExchangeDrain(t *testing.T) {
	env := setup(t)
	k := key(7, ownedPK(t, 7, "k"), "")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := env.c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&storagev1.ExchangeRequest{Calls: []*storagev1.ExchangeCall{{Id: 1, Request: &storagev1.ExchangeCall_Read{Read: &storagev1.ReadRequest{Key: k}}}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || len(resp.GetResults()) != 1 {
		t.Fatalf("first answer: %v %v", resp, err)
	}
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- env.srv.Close() }()
	resp, err := st.Recv()
	if err != nil || !resp.GetDraining() || resp.GetLastId() != 1 {
		t.Fatalf("want the draining message with last_id 1, got %v, %v", resp, err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
}

// handled is grpc_server_handled_total of a StorageService method and code.
func handled(t *testing.T, env *env, method string, code codes.Code) float64 {
	t.Helper()
	mfs, err := env.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "grpc_method":
					if l.GetValue() != method {
						continue next
					}
				case "grpc_code":
					if l.GetValue() != code.String() {
						continue next
					}
				case "grpc_type":
					if l.GetValue() != "unary" {
						continue next
					}
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// sameStatus compares code, message and details (unpacked: an Any's bytes
// depend on map order).
func sameStatus(a, b *status.Status) bool {
	if a.Code() != b.Code() || a.Message() != b.Message() || len(a.Details()) != len(b.Details()) {
		return false
	}
	for i, d := range a.Details() {
		x, ok1 := d.(proto.Message)
		y, ok2 := b.Details()[i].(proto.Message)
		if !ok1 || !ok2 || !proto.Equal(x, y) {
			return false
		}
	}
	return true
}
