package server

import (
	"errors"
	"fmt"
	"io"
	"slices"

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
	resp := &storagev1.IngestResponse{}
	recs := make([]engine.Record, 0, len(run))
	index := make([]int, 0, len(run)) // recs[i] is run[index[i]]
	for i, r := range run {
		rec, err := svc.writeRecord(snap, epoch, r, fmt.Sprintf("records[%d]", i))
		if errors.Is(err, engine.ErrInvalidArgument) {
			resp.Invalid = append(resp.Invalid, &storagev1.IngestInvalid{Index: uint64(i), Reason: err.Error()})
			continue
		}
		if err != nil {
			return toStatus(err)
		}
		recs = append(recs, rec)
		index = append(index, i)
	}
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
