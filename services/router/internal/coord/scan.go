package coord

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// ScanPosition is the StreamPartition resume position of key: the storage
// engine's item key (services/storage/internal/engine.EncodeKey: 'd',
// big-endian partition, table id, 16-bit partition key length, partition
// key, sort key). A stream given it as After continues with the first
// record after key, so a table scan can resume from an item's key alone
// (DynamoDB's ExclusiveStartKey) and not only from a token a node issued.
func ScanPosition(key *storagev1.Key) []byte {
	pk, sk := key.GetPartitionKey(), key.GetSortKey()
	b := make([]byte, 0, 15+len(pk)+len(sk))
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint32(b, key.GetPartition())
	b = binary.BigEndian.AppendUint64(b, key.GetTableId())
	b = binary.BigEndian.AppendUint16(b, uint16(len(pk)))
	b = append(b, pk...)
	return append(b, sk...)
}

// tableStart is a StreamPartition position just before table tableID's
// first record in partition p: the largest key table tableID-1 can have
// (partition key of 2048 0xFF bytes, sort key of 1024), so that a table's
// scan skips the tables with smaller ids in the partition instead of
// having the node read past them. nil for table 0.
func tableStart(p uint32, tableID uint64) []byte {
	if tableID == 0 {
		return nil
	}
	return ScanPosition(&storagev1.Key{Partition: p, TableId: tableID - 1,
		PartitionKey: bytes.Repeat([]byte{0xFF}, maxPartitionKey), SortKey: bytes.Repeat([]byte{0xFF}, maxSortKey)})
}

// The storage engine's key limits (a position must be a valid key).
const (
	maxPartitionKey = 2048
	maxSortKey      = 1024
)

// ScanFunc receives one chunk of a partition scan: live records in key
// order and the position after the last of them (pass it as after to
// resume there). It returns false to stop the scan.
type ScanFunc func(recs []*storagev1.Record, resume []byte) (more bool, err error)

// ScanPartition streams the records of table tableID in partition p in
// key order, from after (a position from ScanPosition or a ScanFunc; nil:
// the table's first record). At One it reads one live member of the
// partition's read set and moves to the next one, resuming where the
// failed one stopped, when a replica fails mid-stream. At Quorum and All it
// streams Need(level) members at once and merges them by key, the newest
// version winning, as a quorum read does; stale replicas are repaired.
// Tombstones and expired records are never passed to fn. A scan that
// replicas refused as routed by a stale placement epoch continues once by
// the newer view, from the last position fn got.
func (co *Coordinator) ScanPartition(ctx context.Context, v *cluster.View, p uint32, tableID uint64, after []byte, level Level, fn ScanFunc) error {
	if len(after) == 0 {
		after = tableStart(p, tableID)
	}
	track := func(recs []*storagev1.Record, resume []byte) (bool, error) {
		after = resume
		return fn(recs, resume)
	}
	err := co.scanPartition(ctx, v, p, tableID, after, level, track)
	if v2, ok := co.retryView(ctx, err); ok {
		return co.scanPartition(ctx, v2, p, tableID, after, level, track)
	}
	return err
}

func (co *Coordinator) scanPartition(ctx context.Context, v *cluster.View, p uint32, tableID uint64, after []byte, level Level, fn ScanFunc) error {
	rt := v.Route(p)
	if rt == nil {
		return fmt.Errorf("%w: partition %d out of range (%d partitions)", ErrInvalidArgument, p, v.Partitions)
	}
	what := fmt.Sprintf("scan of partition %d at %s", p, level)
	need := Need(level, rt.ReadSize)
	cands := candidates(rt)
	if len(cands) < need {
		return unavailable(what, len(cands), need, downReplicas(rt.ReadIDs, rt.ReadNodes))
	}
	if need > 1 {
		return co.mergePartition(ctx, v, p, tableID, after, what, cands, need, fn)
	}
	// Streams end when the scan does, also when fn stops it early.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errs []string
	var stale uint64
	for _, node := range cands {
		ss, err := node.Client.StreamPartition(sctx, &storagev1.StreamPartitionRequest{Partition: p, After: after, TableId: tableID, PlacementEpoch: v.Epoch})
		if err != nil {
			if err := co.streamFailed(ctx, err); err != nil {
				return err
			}
			if e, ok := staleEpoch(err, v.Epoch); ok {
				stale = max(stale, e)
			}
			errs = append(errs, co.replicaErr(node, err))
			continue
		}
		for {
			msg, err := ss.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				if err := co.streamFailed(ctx, err); err != nil {
					return err
				}
				if e, ok := staleEpoch(err, v.Epoch); ok {
					stale = max(stale, e)
				}
				errs = append(errs, co.replicaErr(node, err))
				break
			}
			now := time.Now().UnixNano()
			live := make([]*storagev1.Record, 0, len(msg.GetRecords()))
			for _, rec := range msg.GetRecords() {
				if !dead(rec, now) {
					live = append(live, rec)
				}
			}
			more, err := fn(live, msg.GetResume())
			if err != nil || !more {
				return err
			}
			after = msg.GetResume()
		}
	}
	return markStale(unavailable(what, 0, 1, errs), stale)
}

// streamFailed returns the error that ends a scan when a replica's stream
// failed: the caller's cancellation, or a request every replica would
// refuse. nil means: try the next replica.
func (co *Coordinator) streamFailed(ctx context.Context, err error) error {
	if err := inputErr(err); err != nil {
		return err
	}
	return ctxErr(ctx)
}

// dead reports whether a record is a tombstone or expired at now.
func dead(rec *storagev1.Record, now int64) bool {
	e := rec.GetExpireUnixNanos()
	return rec.GetTombstone() || (e != 0 && e <= now)
}

// partStream is one replica's stream in a merged partition scan.
type partStream struct {
	node   *cluster.Node
	cancel context.CancelFunc
	ss     storagev1.StorageService_StreamPartitionClient
	buf    []*storagev1.Record
	pos    [][]byte // ScanPosition of buf[i]
	done   bool
}

// head returns the stream's next record and its position, receiving the
// next chunk when the buffer is empty; nil at the end.
func (s *partStream) head() (*storagev1.Record, []byte, error) {
	for len(s.buf) == 0 && !s.done {
		msg, err := s.ss.Recv()
		if err == io.EOF {
			s.done = true
			break
		}
		if err != nil {
			return nil, nil, err
		}
		s.buf = msg.GetRecords()
		s.pos = make([][]byte, len(s.buf))
		for i, r := range s.buf {
			s.pos[i] = ScanPosition(r.GetKey())
		}
	}
	if len(s.buf) == 0 {
		return nil, nil, nil
	}
	return s.buf[0], s.pos[0], nil
}

func (s *partStream) pop() { s.buf, s.pos = s.buf[1:], s.pos[1:] }

// mergeChunk is how many merged records a quorum scan hands fn at once.
const mergeChunk = 256

func (co *Coordinator) mergePartition(ctx context.Context, v *cluster.View, p uint32, tableID uint64, after []byte, what string,
	cands []*cluster.Node, need int, fn ScanFunc) error {
	next := 0
	var errs []string
	var stale uint64
	var streams []*partStream
	defer func() {
		for _, s := range streams {
			s.cancel()
		}
	}()
	// open starts a stream on the next candidate from after.
	open := func() error {
		for next < len(cands) {
			node := cands[next]
			next++
			sctx, cancel := context.WithCancel(ctx)
			// Expired records too: a replica must not hide its newer,
			// expired version behind another's older live one.
			ss, err := node.Client.StreamPartition(sctx, &storagev1.StreamPartitionRequest{
				Partition: p, After: after, TableId: tableID, IncludeExpired: true, PlacementEpoch: v.Epoch})
			if err != nil {
				cancel()
				if err := co.streamFailed(ctx, err); err != nil {
					return err
				}
				if e, ok := staleEpoch(err, v.Epoch); ok {
					stale = max(stale, e)
				}
				errs = append(errs, co.replicaErr(node, err))
				continue
			}
			streams = append(streams, &partStream{node: node, cancel: cancel, ss: ss})
			return nil
		}
		return markStale(unavailable(what, len(streams), need, errs), stale)
	}
	for range need {
		if err := open(); err != nil {
			return err
		}
	}
	var chunk []*storagev1.Record
	repairs := map[*cluster.Node][]*storagev1.Record{}
	defer func() { co.repair(v.Epoch, repairs) }()
	for {
		// The smallest position among the heads, replacing failed streams.
		var min []byte
		for i := 0; i < len(streams); i++ {
			s := streams[i]
			_, pos, err := s.head()
			if err != nil {
				if err := co.streamFailed(ctx, err); err != nil {
					return err
				}
				if e, ok := staleEpoch(err, v.Epoch); ok {
					stale = max(stale, e)
				}
				errs = append(errs, co.replicaErr(s.node, err))
				s.cancel()
				streams = append(streams[:i], streams[i+1:]...)
				i--
				if err := open(); err != nil {
					return err
				}
				continue
			}
			if pos != nil && (min == nil || bytes.Compare(pos, min) < 0) {
				min = pos
			}
		}
		if min == nil {
			break
		}
		var win *storagev1.Record
		seen := map[*partStream]uint64{}
		for _, s := range streams {
			rec, pos, _ := s.head()
			if rec != nil && bytes.Equal(pos, min) {
				seen[s] = rec.GetVersion()
				if newer(rec, win) {
					win = rec
				}
				s.pop()
			}
		}
		for _, s := range streams {
			if ver, ok := seen[s]; !ok || ver < win.GetVersion() {
				repairs[s.node] = append(repairs[s.node], win)
			}
		}
		after = min
		if !dead(win, time.Now().UnixNano()) {
			chunk = append(chunk, win)
		}
		if len(chunk) >= mergeChunk {
			co.repair(v.Epoch, repairs)
			repairs = map[*cluster.Node][]*storagev1.Record{}
			more, err := fn(chunk, after)
			if err != nil || !more {
				return err
			}
			chunk = nil
		}
	}
	if len(chunk) > 0 {
		_, err := fn(chunk, after)
		return err
	}
	return nil
}
