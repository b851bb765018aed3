package server

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
)

// Ingest receives a run of records for bulk import, then fences and checks
// every record as Apply does and hands the valid ones to the engine in one
// Ingest, which writes the winners as one SST (docs/design.md, "Bulk
// import"). Records are buffered until the stream ends, so a broken stream
// applies nothing; the run is refused as soon as it outgrows
// --max-ingest-bytes.
func (svc *service) Ingest(stream storagev1.StorageService_IngestServer) error {
	ctx := stream.Context()
	var (
		run   []*storagev1.Record
		epoch uint64
		size  int64
		// What fencing each message gave, kept while every message was
		// fenced under one snapshot (fenced, same): checking the whole run
		// again under that snapshot would give the same.
		fenced *topology.Snapshot
		same   = true
		msgs   []fencedMessage
	)
	for n := 0; ; n++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if n == 0 {
			epoch = req.GetPlacementEpoch()
		} else if req.GetPlacementEpoch() != epoch {
			return invalid("message %d: placement_epoch %d, but the run began with %d; a run is routed by one epoch", n, req.GetPlacementEpoch(), epoch)
		}
		for _, r := range req.GetRecords() {
			size += int64(len(r.GetValue()) + len(r.GetKey().GetPartitionKey()) + len(r.GetKey().GetSortKey()))
		}
		// Fence as the run comes in, so a node that does not take it
		// says so before the client has sent it all; the run is fenced
		// again once complete, under the placement it is applied by, if
		// that is not the one every message was fenced under.
		snap, err := svc.snapshotFor(ctx, epoch)
		if err != nil {
			return toStatus(err)
		}
		var m fencedMessage
		if m.recs, m.index, m.bad, err = svc.ingestRecords(snap, epoch, req.GetRecords(), len(run)); err != nil {
			return toStatus(err)
		}
		if n == 0 {
			fenced = snap
		}
		if same = same && snap == fenced; same {
			msgs = append(msgs, m)
		} else {
			msgs = nil
		}
		if size > svc.s.cfg.MaxIngestBytes {
			return toStatus(fmt.Errorf("%w: ingest run of more than %d records and %d bytes, limit %d bytes (--max-ingest-bytes)",
				engine.ErrTooLarge, len(run), size, svc.s.cfg.MaxIngestBytes))
		}
		run = append(run, req.GetRecords()...)
	}
	if len(run) == 0 {
		return invalid("records: empty run")
	}
	// As for Apply: until the run is applied the node reports no epoch
	// newer than the one it was checked against.
	defer svc.s.writes.begin(svc.s.watcher.Snapshot().Epoch())()
	snap, err := svc.snapshotFor(ctx, epoch)
	if err != nil {
		return toStatus(err)
	}
	var (
		recs  []engine.Record
		index []int
		bad   []*storagev1.IngestInvalid
	)
	if same && snap == fenced {
		recs, index, bad = joinFenced(msgs)
	} else if recs, index, bad, err = svc.ingestRecords(snap, epoch, run, 0); err != nil {
		return toStatus(err)
	}
	resp := &storagev1.IngestResponse{Invalid: bad}
	if err := ctx.Err(); err != nil {
		return toStatus(err)
	}
	res, err := svc.s.eng.Ingest(recs)
	if err != nil {
		return toStatus(err)
	}
	for _, inv := range res.Invalid {
		resp.Invalid = append(resp.Invalid, &storagev1.IngestInvalid{Index: uint64(index[inv.Index]), Reason: fmt.Sprintf("records[%d]: %s", index[inv.Index], inv.Reason)})
	}
	slices.SortFunc(resp.Invalid, func(a, b *storagev1.IngestInvalid) int { return int(a.Index) - int(b.Index) })
	resp.Applied, resp.Superseded = uint64(res.Applied), uint64(res.Superseded)
	return stream.SendAndClose(resp)
}

// fencedMessage is what ingestRecords gave for one message of a run.
type fencedMessage struct {
	recs  []engine.Record
	index []int
	bad   []*storagev1.IngestInvalid
}

// joinFenced concatenates the messages' results, as ingestRecords of the
// whole run gives them.
func joinFenced(msgs []fencedMessage) (recs []engine.Record, index []int, bad []*storagev1.IngestInvalid) {
	n := 0
	for _, m := range msgs {
		n += len(m.recs)
	}
	recs, index = make([]engine.Record, 0, n), make([]int, 0, n)
	for _, m := range msgs {
		recs, index, bad = append(recs, m.recs...), append(index, m.index...), append(bad, m.bad...)
	}
	return recs, index, bad
}

// ingestRecords fences and checks records (run[base:] of an Ingest) as
// Apply does. It returns the valid ones for the engine with their indexes
// in the run, and the invalid ones; an error refuses the whole run.
func (svc *service) ingestRecords(snap *topology.Snapshot, epoch uint64, records []*storagev1.Record, base int) (recs []engine.Record, index []int, invalid []*storagev1.IngestInvalid, err error) {
	recs = make([]engine.Record, 0, len(records))
	index = make([]int, 0, len(records))
	for i, r := range records {
		rec, err := svc.writeRecord(snap, epoch, r, "records", base+i)
		if errors.Is(err, engine.ErrInvalidArgument) {
			invalid = append(invalid, &storagev1.IngestInvalid{Index: uint64(base + i), Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		recs = append(recs, rec)
		index = append(index, base+i)
	}
	return recs, index, invalid, nil
}
