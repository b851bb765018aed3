package server

import (
	"encoding/binary"
	"time"

	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// Scan page tokens: version byte, big-endian partition, then the storage
// node's resume position within that partition (empty: its start).
const scanTokenV1 = 1

func encodeScanToken(p uint32, resume []byte) []byte {
	tok := make([]byte, 5, 5+len(resume))
	tok[0] = scanTokenV1
	binary.BigEndian.PutUint32(tok[1:], p)
	return append(tok, resume...)
}

func decodeScanToken(tok []byte) (uint32, []byte, error) {
	if len(tok) < 5 || tok[0] != scanTokenV1 {
		return 0, nil, invalidf("page_token: not a scan token this router issued")
	}
	return binary.BigEndian.Uint32(tok[1:5]), tok[5:], nil
}

// Scan streams a segment of a table: its share of the partitions, each read
// from one live member of its read set (the next one if a replica fails mid-stream, resuming
// where the failed one stopped).
func (kv *kvService) Scan(req *kvv1.ScanRequest, stream kvv1.KVService_ScanServer) error {
	ctx := stream.Context()
	r, err := kv.resolver()
	if err != nil {
		return toStatus(err)
	}
	t, err := r.table(req.GetTable(), kvrecord.Named("table"))
	if err != nil {
		return toStatus(err)
	}
	total := max(req.GetTotalSegments(), 1)
	if req.GetSegment() >= total {
		return toStatus(invalidf("segment %d: must be less than total_segments %d", req.GetSegment(), total))
	}
	parts := uint64(r.view.Partitions)
	first := uint32(uint64(req.GetSegment()) * parts / uint64(total))
	end := uint32(uint64(req.GetSegment()+1) * parts / uint64(total))
	var resume []byte
	if tok := req.GetPageToken(); len(tok) > 0 {
		p, res, err := decodeScanToken(tok)
		if err != nil {
			return toStatus(err)
		}
		if p < first || p >= end {
			return toStatus(invalidf("page_token: partition %d is outside segment %d of %d", p, req.GetSegment(), total))
		}
		first, resume = p, res
	}
	sc := &scanSender{stream: stream, last: time.Now()}
	for p := first; p < end; p++ {
		if err := kv.scanPartition(sc, r, req.GetTable(), t.ID, p, resume); err != nil {
			return err
		}
		resume = nil
		// A resumed scan skips the partitions done; say so now and then
		// even when they held nothing.
		if p+1 < end {
			if err := sc.send(nil, encodeScanToken(p+1, nil)); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return toStatus(ctx.Err())
		}
	}
	return nil
}

// scanProgressEvery is how long a scan may go without sending anything
// before it sends a progress message (no items, only a token), so that a
// scan of a sparse table resumed after an interruption need not start over.
const scanProgressEvery = 2 * time.Second

// scanSender sends the batches of one Scan: every batch with items, and
// empty ones only as progress messages every scanProgressEvery.
type scanSender struct {
	stream kvv1.KVService_ScanServer
	last   time.Time
}

func (sc *scanSender) send(items []*kvv1.Item, token []byte) error {
	if len(items) == 0 && time.Since(sc.last) < scanProgressEvery {
		return nil
	}
	sc.last = time.Now()
	return sc.stream.Send(&kvv1.ScanResponse{Items: items, NextPageToken: token, PageToken: token})
}

func (kv *kvService) scanPartition(sc *scanSender, r resolver, table string, tableID uint64, p uint32, resume []byte) error {
	err := kv.s.coord.ScanPartition(sc.stream.Context(), r.view, p, tableID, resume, coord.One,
		func(recs []*storagev1.Record, resume []byte) (bool, error) {
			items := make([]*kvv1.Item, len(recs))
			for i, rec := range recs {
				items[i] = item(table, rec)
			}
			return true, sc.send(items, encodeScanToken(p, resume))
		})
	return toStatus(err)
}
