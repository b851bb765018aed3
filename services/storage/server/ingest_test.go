package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ingest streams msgs as one Ingest run.
func ingest(ctx context.Context, c storagev1.StorageServiceClient, msgs ...*storagev1.IngestRequest) (*storagev1.IngestResponse, error) {
	st, err := c.Ingest(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server answered early; CloseAndRecv has its status
		}
	}
	return st.CloseAndRecv()
}

// TestIngest: a run streamed in several messages is applied under LWW;
// invalid records are named by their index across messages and the
// others applied.
func TestIngest(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "bulk")
	if _, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(7, pk, "newer"), Version: 50, Value: []byte("live")}}}); err != nil {
		t.Fatal(err)
	}
	wrong := key(7, pk, "x")
	wrong.Partition = (wrong.Partition + 1) % (partitions - 1)
	resp, err := ingest(ctx, env.c,
		&storagev1.IngestRequest{Records: []*storagev1.Record{
			{Key: key(7, pk, "a"), Version: 10, Value: []byte("A")},
			{Key: key(7, pk, "b"), Value: []byte("no version")},
			{Key: key(7, pk, "newer"), Version: 20, Value: []byte("old import")},
		}},
		&storagev1.IngestRequest{Records: []*storagev1.Record{
			{Key: key(7, pk, "c"), Version: 10, Tombstone: true},
			{Key: wrong, Version: 10, Value: []byte("wrong partition")},
			{Key: key(7, pk, "a"), Version: 9, Value: []byte("older in the run")},
			{Key: key(7, pk, "big"), Version: 1, Value: make([]byte, 64<<20+1)},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Applied != 2 || resp.Superseded != 2 {
		t.Fatalf("applied %d, superseded %d; want 2 and 2", resp.Applied, resp.Superseded)
	}
	want := map[uint64]string{1: "version is 0", 4: "given for a key of partition", 6: "value is 67108865 bytes"}
	if len(resp.Invalid) != len(want) {
		t.Fatalf("invalid = %v; want indexes 1, 4, 6", resp.Invalid)
	}
	for _, inv := range resp.Invalid {
		if !strings.Contains(inv.Reason, want[inv.Index]) || !strings.Contains(inv.Reason, fmt.Sprintf("records[%d]", inv.Index)) {
			t.Fatalf("invalid record %d: %q; want it to say %q", inv.Index, inv.Reason, want[inv.Index])
		}
	}
	for sk, v := range map[string]string{"a": "A", "newer": "live", "c": ""} {
		r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, pk, sk)})
		if err != nil || !r.Found || string(r.Record.Value) != v || r.Record.Tombstone != (sk == "c") {
			t.Fatalf("read %s = %v, %v; want %q", sk, r, err, v)
		}
	}
	if got := metric(t, env.srv, "veltrix_storage_ingested_records_total"); got != 2 {
		t.Fatalf("ingested_records_total = %v, want 2", got)
	}
}

// TestIngestFencing: a run with a record of a partition the node does not
// hold, or routed by a stale placement epoch, is refused with Apply's
// status and applies nothing; so is a run whose messages carry different
// epochs.
func TestIngestFencing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "fence")
	k := key(7, pk, "")
	p := k.Partition
	doc, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { d.MarkChanged(p, d.Epoch); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// A request at the new epoch waits until the node has it.
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatal(err)
	}
	fine := &storagev1.Record{Key: key(7, ownedPKNotIn(t, p), "fine"), Version: 1, Value: []byte("v")}
	var notHeld string
	for i := 0; notHeld == ""; i++ {
		if pk := fmt.Sprintf("elsewhere%d", i); placement.PartitionOf(7, []byte(pk), partitions) == partitions-1 {
			notHeld = pk
		}
	}
	cases := []struct {
		name  string
		rec   *storagev1.Record
		epoch uint64
		code  codes.Code
		msg   string
	}{
		{"stale epoch", &storagev1.Record{Key: k, Version: 1, Value: []byte("v")}, doc.Epoch - 1, codes.FailedPrecondition, "stale placement epoch"},
		{"not held", &storagev1.Record{Key: key(7, notHeld, ""), Version: 1, Value: []byte("v")}, doc.Epoch, codes.FailedPrecondition, "does not hold partition"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, aerr := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{fine, c.rec}, PlacementEpoch: c.epoch})
			_, ierr := ingest(ctx, env.c,
				&storagev1.IngestRequest{Records: []*storagev1.Record{fine}, PlacementEpoch: c.epoch},
				&storagev1.IngestRequest{Records: []*storagev1.Record{c.rec}, PlacementEpoch: c.epoch})
			wantCode(t, ierr, c.code, c.msg)
			if status.Code(aerr) != status.Code(ierr) {
				t.Fatalf("Apply: %v; Ingest: %v; want the same code", aerr, ierr)
			}
			if c.name == "stale epoch" && reason(ierr) != "STALE_PLACEMENT_EPOCH" {
				t.Fatalf("Ingest: %v; want reason STALE_PLACEMENT_EPOCH", ierr)
			}
			if r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: fine.Key}); err != nil || r.Found {
				t.Fatalf("a refused run applied a record: %v, %v", r, err)
			}
		})
	}
	_, err = ingest(ctx, env.c,
		&storagev1.IngestRequest{Records: []*storagev1.Record{fine}, PlacementEpoch: doc.Epoch},
		&storagev1.IngestRequest{Records: []*storagev1.Record{fine}, PlacementEpoch: doc.Epoch - 1})
	wantCode(t, err, codes.InvalidArgument, "placement_epoch")
	if _, err := ingest(ctx, env.c); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty run: %v, want InvalidArgument", err)
	}
	if r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: fine.Key}); err != nil || r.Found {
		t.Fatalf("a refused run applied a record: %v, %v", r, err)
	}
	// The same run at the current epoch goes through.
	resp, err := ingest(ctx, env.c, &storagev1.IngestRequest{Records: []*storagev1.Record{fine, {Key: k, Version: 1, Value: []byte("v")}}, PlacementEpoch: doc.Epoch})
	if err != nil || resp.Applied != 2 {
		t.Fatalf("run at the current epoch: %v, %v", resp, err)
	}
}

// TestIngestBrokenStream: a run whose stream breaks before it ends applies
// nothing.
func TestIngestBrokenStream(t *testing.T) {
	env := setup(t)
	rec := &storagev1.Record{Key: key(7, ownedPK(t, 7, "broken"), ""), Version: 1, Value: []byte("v")}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := env.c.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&storagev1.IngestRequest{Records: []*storagev1.Record{rec}}); err != nil {
		t.Fatal(err)
	}
	// Cancel without closing the send side (CloseSend would end the
	// stream cleanly, racing the cancellation): a client that goes away.
	cancel()
	if err := st.RecvMsg(new(storagev1.IngestResponse)); status.Code(err) != codes.Canceled {
		t.Fatalf("broken stream: %v, want Canceled", err)
	}
	// A run after it is applied, so the broken one was seen and dropped.
	other := &storagev1.Record{Key: key(7, ownedPK(t, 7, "after"), ""), Version: 1, Value: []byte("v")}
	if _, err := ingest(context.Background(), env.c, &storagev1.IngestRequest{Records: []*storagev1.Record{other}}); err != nil {
		t.Fatal(err)
	}
	if r, err := env.c.Read(context.Background(), &storagev1.ReadRequest{Key: rec.Key}); err != nil || r.Found {
		t.Fatalf("a broken run applied a record: %v, %v", r, err)
	}
}

// TestIngestRefusesEarly: a node that does not hold a record's partition
// refuses the run at that message, without waiting for the stream's end.
func TestIngestRefusesEarly(t *testing.T) {
	env := setup(t)
	var notHeld string
	for i := 0; notHeld == ""; i++ {
		if pk := fmt.Sprintf("early%d", i); placement.PartitionOf(7, []byte(pk), partitions) == partitions-1 {
			notHeld = pk
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := env.c.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&storagev1.IngestRequest{Records: []*storagev1.Record{{Key: key(7, notHeld, ""), Version: 1, Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	// The stream stays open: only an early refusal answers.
	err = st.RecvMsg(new(storagev1.IngestResponse))
	wantCode(t, err, codes.FailedPrecondition, "does not hold partition")
}

func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return i.Reason
		}
	}
	return ""
}

// TestIngestPlacementChangesMidRun: a run whose partition's routing
// changes after its first messages were fenced is fenced again under the
// new placement once complete, and refused as stale: nothing is applied.
func TestIngestPlacementChangesMidRun(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	moved := key(7, ownedPK(t, 7, "moved"), "")
	other := &storagev1.Record{Key: key(7, ownedPKNotIn(t, moved.Partition), "other"), Version: 1, Value: []byte("v")}
	epoch := env.srv.WatcherEpoch()
	st, err := env.c.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&storagev1.IngestRequest{Records: []*storagev1.Record{{Key: moved, Version: 1, Value: []byte("v")}}, PlacementEpoch: epoch}); err != nil {
		_, err = st.CloseAndRecv()
		t.Fatalf("first message: %v", err)
	}
	doc, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { d.MarkChanged(moved.Partition, d.Epoch); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// The node has the new placement once a read at its epoch answers.
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: other.Key, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&storagev1.IngestRequest{Records: []*storagev1.Record{other}, PlacementEpoch: epoch}) // CloseAndRecv has the status
	_, err = st.CloseAndRecv()
	wantCode(t, err, codes.FailedPrecondition, "stale placement epoch")
	for _, k := range []*storagev1.Key{moved, other.Key} {
		if r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: k}); err != nil || r.Found {
			t.Fatalf("a refused run applied a record: %v, %v", r, err)
		}
	}
}
