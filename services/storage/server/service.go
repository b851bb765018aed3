package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	defaultScanLimit = 1000
	maxScanLimit     = 10000
	// streamChunkRecords and streamChunkBytes bound one StreamPartition
	// message.
	streamChunkRecords = 1000
	streamChunkBytes   = 4 << 20
)

var (
	// errNotOwner marks a request for a partition this node does not hold.
	errNotOwner = errors.New("storage: partition not held by this node")
	// errStaleEpoch marks a request routed under a placement epoch older
	// than its partition's last routing change.
	errStaleEpoch = errors.New("storage: stale placement epoch")
)

// The ErrorInfo of a stale-epoch refusal.
const (
	staleEpochReason = "STALE_PLACEMENT_EPOCH"
	errorDomain      = "veltrix.storage"
)

type service struct {
	storagev1.UnimplementedStorageServiceServer
	s *Server
	// exchange records the calls Exchange carries under the unary
	// methods' gRPC metrics.
	exchange *exchangeCalls
}

// toStatus is the one place engine and service errors become gRPC codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if c, ok := grpcx.ContextCode(err); ok {
		return status.Error(c, err.Error())
	}
	if st, ok := lockStatus(err); ok {
		return st
	}
	var stale *staleEpochError
	if errors.As(err, &stale) {
		return stale.status(err.Error())
	}
	switch {
	case errors.Is(err, engine.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, engine.ErrTooLarge), errors.Is(err, engine.ErrHintsFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, errNotOwner):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, engine.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, engine.ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// access is what a request does with a partition, which decides who may
// serve it while a replica moves.
type access uint8

const (
	// accessRead serves the partition's data to a client (Read, BatchRead,
	// Scan): a replica, or the destination of a move once it reads
	// (read_new); not a node backfilling in place before read_new.
	accessRead access = iota
	// accessWrite takes a write (Apply): every node that Holds the
	// partition, the destination of a move included.
	accessWrite
	// accessReplica serves the partition to a peer (StreamPartition, the
	// digests and sync points of anti-entropy): a replica.
	accessReplica
)

// epochWait bounds how long a request made under a placement epoch newer
// than the node's waits for the node's topology to catch up.
const epochWait = 2 * time.Second

// snapshotFor returns the topology a request made under placement epoch
// epoch (0: not routed) is checked against. When the epoch is newer than
// the node's, it waits up to epochWait (and ctx) for the node to see it,
// then goes on with what the node has.
func (svc *service) snapshotFor(ctx context.Context, epoch uint64) (*topology.Snapshot, error) {
	w := svc.s.watcher
	if epoch > w.Snapshot().Epoch() {
		wctx, cancel := context.WithTimeout(ctx, epochWait)
		err := w.WaitEpoch(wctx, epoch)
		cancel()
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return w.Snapshot(), nil
}

// checkOwner verifies that this node may serve partition p for what the
// request does (a) in snap's placement, that a routed request (epoch != 0)
// was not made under an epoch older than the partition's last routing
// change, and, when pk is given, that p is the partition of (table, pk): a
// router with a wrong partition count must not scatter data.
func (svc *service) checkOwner(snap *topology.Snapshot, a access, epoch uint64, p uint32, table uint64, pk []byte) error {
	if snap.Config != nil {
		if p >= snap.Config.Partitions {
			return fmt.Errorf("%w: partition %d out of range (cluster has %d)", engine.ErrInvalidArgument, p, snap.Config.Partitions)
		}
		if pk != nil {
			if want := placement.PartitionOf(table, pk, snap.Config.Partitions); want != p {
				return fmt.Errorf("%w: partition %d given for a key of partition %d", engine.ErrInvalidArgument, p, want)
			}
		}
	}
	doc := snap.Placement
	if doc == nil {
		return fmt.Errorf("%w: node %s: no placement published yet", errNotOwner, svc.s.id)
	}
	if int(p) >= len(doc.Replicas) {
		return fmt.Errorf("%w: partition %d out of range (placement has %d)", engine.ErrInvalidArgument, p, len(doc.Replicas))
	}
	if changed := doc.ChangedAt(p); epoch != 0 && epoch < changed {
		svc.s.moveMetrics.staleEpoch.Inc()
		return &staleEpochError{partition: p, epoch: epoch, changed: changed, node: svc.s.id, nodeEpoch: doc.Epoch}
	}
	self := svc.s.id
	replica := slices.Contains(doc.Replicas[p], self)
	switch a {
	case accessWrite:
		if doc.Holds(p, self) {
			return nil
		}
	case accessRead:
		m, moving := doc.MoveOf(p)
		backfilling := moving && m.Replace() && m.Add == self && m.Stage != placement.StageReadNew
		if backfilling {
			return fmt.Errorf("%w: node %s is backfilling partition %d in place (%s) and serves no reads of it yet (placement epoch %d)",
				errNotOwner, self, p, m.Stage, doc.Epoch)
		}
		if svc.s.notBackfilled(p) && !(moving && m.Replace() && m.Add == self) {
			return fmt.Errorf("%w: node %s came back on an empty data directory and has not backfilled partition %d yet (placement epoch %d)",
				errNotOwner, self, p, doc.Epoch)
		}
		if replica || doc.Serves(p, self) {
			return nil
		}
	case accessReplica:
		if replica {
			return nil
		}
	}
	return fmt.Errorf("%w: node %s does not hold partition %d (placement epoch %d)", errNotOwner, self, p, doc.Epoch)
}

// staleEpochError refuses a request routed under a placement epoch older
// than its partition's last routing change.
type staleEpochError struct {
	partition      uint32
	epoch, changed uint64
	node           string
	nodeEpoch      uint64
}

func (e *staleEpochError) Error() string {
	return fmt.Sprintf("%v: partition %d was routed by placement epoch %d but its routing changed at epoch %d (node %s is at epoch %d): refresh the placement and retry",
		errStaleEpoch, e.partition, e.epoch, e.changed, e.node, e.nodeEpoch)
}

func (e *staleEpochError) Unwrap() error { return errStaleEpoch }

// status is the gRPC status of the refusal, with an ErrorInfo a router
// can act on without parsing the message.
func (e *staleEpochError) status(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: staleEpochReason, Domain: errorDomain,
		Metadata: map[string]string{
			"epoch":     strconv.FormatUint(e.nodeEpoch, 10),
			"partition": strconv.FormatUint(uint64(e.partition), 10),
		},
	}); err == nil {
		st = d
	}
	return st.Err()
}

func keyFromProto(k *storagev1.Key) engine.Key {
	if k == nil {
		return engine.Key{}
	}
	return engine.Key{Partition: k.Partition, TableID: k.TableId, PartitionKey: k.PartitionKey, SortKey: k.SortKey}
}

func keyToProto(k engine.Key) *storagev1.Key {
	return &storagev1.Key{Partition: k.Partition, TableId: k.TableID, PartitionKey: k.PartitionKey, SortKey: k.SortKey}
}

func recordToProto(r engine.Record) *storagev1.Record {
	rec := readRecord(r)
	rec.Key = keyToProto(r.Key)
	return rec
}

// readRecord is r without its key, for the answers of Read and BatchRead:
// the caller sent the key, and echoing it cost a key message per record.
func readRecord(r engine.Record) *storagev1.Record {
	rec := new(storagev1.Record)
	setReadRecord(rec, r)
	return rec
}

// setReadRecord sets the fields readRecord sets in rec, a zero Record.
func setReadRecord(rec *storagev1.Record, r engine.Record) {
	rec.Version, rec.Tombstone, rec.ExpireUnixNanos, rec.Value, rec.DeletedUnixNanos = r.Version, r.Tombstone, r.ExpireAt, r.Value, r.DeletedAt
}

// readKey validates one key of a request and returns it for the engine.
// field names the key in an error, with [index] when index >= 0; it is
// formatted only for an error.
func (svc *service) readKey(snap *topology.Snapshot, a access, epoch uint64, k *storagev1.Key, field string, index int) (engine.Key, error) {
	if k == nil {
		return engine.Key{}, fmt.Errorf("%w: %s: key is missing", engine.ErrInvalidArgument, fieldName(field, index))
	}
	ek := keyFromProto(k)
	if err := engine.ValidateKey(ek); err != nil {
		return engine.Key{}, fmt.Errorf("%s: %w", fieldName(field, index), err)
	}
	if err := svc.checkOwner(snap, a, epoch, ek.Partition, ek.TableID, ek.PartitionKey); err != nil {
		return engine.Key{}, fmt.Errorf("%s: %w", fieldName(field, index), err)
	}
	return ek, nil
}

// fieldName is field, or field[index] when index >= 0.
func fieldName(field string, index int) string {
	if index < 0 {
		return field
	}
	return field + "[" + strconv.Itoa(index) + "]"
}

func (svc *service) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	snap, err := svc.snapshotFor(ctx, req.GetPlacementEpoch())
	if err != nil {
		return nil, toStatus(err)
	}
	k, err := svc.readKey(snap, accessRead, req.GetPlacementEpoch(), req.GetKey(), "key", -1)
	if err != nil {
		return nil, toStatus(err)
	}
	rec, found, err := svc.s.eng.Get(k)
	if err != nil {
		return nil, toStatus(err)
	}
	if !found {
		return &storagev1.ReadResponse{}, nil
	}
	return &storagev1.ReadResponse{Found: true, Record: readRecord(rec)}, nil
}

func (svc *service) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	snap, err := svc.snapshotFor(ctx, req.GetPlacementEpoch())
	if err != nil {
		return nil, toStatus(err)
	}
	keys := make([]engine.Key, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		if keys[i], err = svc.readKey(snap, accessRead, req.GetPlacementEpoch(), k, "keys", i); err != nil {
			return nil, toStatus(err)
		}
	}
	// The values are only encoded into the answer: they may be the
	// cache's, uncopied.
	recs, found, err := svc.s.eng.GetBatchShared(keys)
	if err != nil {
		return nil, toStatus(err)
	}
	// The answers and records in two allocations, not two per key.
	resp := &storagev1.BatchReadResponse{Results: make([]*storagev1.ReadResponse, len(keys))}
	answers := make([]storagev1.ReadResponse, len(keys))
	records := make([]storagev1.Record, len(keys))
	for i := range keys {
		resp.Results[i] = &answers[i]
		if found[i] {
			r := &records[i]
			setReadRecord(r, recs[i])
			answers[i].Found, answers[i].Record = true, r
		}
	}
	return resp, nil
}

func (svc *service) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	if len(req.GetRecords()) == 0 {
		return nil, invalid("records: empty batch")
	}
	// Until the write returns, the node reports no epoch newer than the
	// one it is checked against. It counts from before the snapshot is
	// read, with an epoch no newer than the snapshot's, so the reporter
	// cannot miss it.
	defer svc.s.writes.begin(svc.s.watcher.Snapshot().Epoch())()
	snap, err := svc.snapshotFor(ctx, req.GetPlacementEpoch())
	if err != nil {
		return nil, toStatus(err)
	}
	recs := make([]engine.Record, len(req.GetRecords()))
	for i, r := range req.GetRecords() {
		if recs[i], err = svc.writeRecord(snap, req.GetPlacementEpoch(), r, "records", i); err != nil {
			return nil, toStatus(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	outcomes, current, err := svc.s.eng.ApplyCurrent(recs)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &storagev1.ApplyResponse{Outcomes: make([]storagev1.Outcome, len(outcomes)), CurrentVersions: current}
	for i, o := range outcomes {
		if o == engine.OutcomeApplied {
			resp.Outcomes[i] = storagev1.Outcome_OUTCOME_APPLIED
		} else {
			resp.Outcomes[i] = storagev1.Outcome_OUTCOME_SUPERSEDED
		}
	}
	return resp, nil
}

// writeRecord checks a mutation for a write (Apply, Ingest): that this node
// takes writes of its partition under epoch, which fences it, and that it
// is well formed. It returns the record for the engine. Errors wrap
// engine.ErrInvalidArgument for a malformed record, named field[index].
func (svc *service) writeRecord(snap *topology.Snapshot, epoch uint64, r *storagev1.Record, field string, index int) (engine.Record, error) {
	k, err := svc.readKey(snap, accessWrite, epoch, r.GetKey(), field, index)
	if err != nil {
		return engine.Record{}, err
	}
	if err := checkRecord(r, field, index); err != nil {
		return engine.Record{}, err
	}
	rec := recordFromProto(r)
	rec.Key = k
	return rec, nil
}

// checkRecord validates a mutation's fields other than its key's
// ownership. The record is named field[index] in an error (see fieldName).
// Errors wrap engine.ErrInvalidArgument.
func checkRecord(r *storagev1.Record, field string, index int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", engine.ErrInvalidArgument, fieldName(field, index), fmt.Sprintf(format, args...))
	}
	if r.GetKey() == nil {
		return bad("key is missing")
	}
	if err := engine.ValidateKey(keyFromProto(r.GetKey())); err != nil {
		return bad("%v", err)
	}
	if r.GetVersion() == 0 {
		return bad("version is 0; every mutation needs a version")
	}
	if r.GetTombstone() && (len(r.GetValue()) > 0 || r.GetExpireUnixNanos() != 0) {
		return bad("a tombstone carries no value or expiry")
	}
	if r.GetExpireUnixNanos() < 0 {
		return bad("negative expiry %d", r.GetExpireUnixNanos())
	}
	return nil
}

func (svc *service) Scan(ctx context.Context, req *storagev1.ScanRequest) (*storagev1.ScanResponse, error) {
	if len(req.GetPartitionKey()) == 0 {
		return nil, invalid("partition_key: empty")
	}
	snap, err := svc.snapshotFor(ctx, req.GetPlacementEpoch())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := svc.checkOwner(snap, accessRead, req.GetPlacementEpoch(), req.GetPartition(), req.GetTableId(), req.GetPartitionKey()); err != nil {
		return nil, toStatus(err)
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultScanLimit
	case limit > maxScanLimit:
		return nil, invalid("limit %d: at most %d", limit, maxScanLimit)
	}
	var end []byte
	if len(req.GetEnd()) > 0 {
		end = req.GetEnd()
	}
	recs, resume, err := svc.s.eng.Scan(engine.ScanOptions{
		Partition: req.GetPartition(), TableID: req.GetTableId(), PartitionKey: req.GetPartitionKey(),
		Start: req.GetStart(), End: end, Prefix: req.GetPrefix(),
		Limit: limit, MaxBytes: streamChunkBytes, Reverse: req.GetReverse(), Resume: req.GetResume(),
		IncludeTombstones: req.GetIncludeTombstones(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &storagev1.ScanResponse{Records: make([]*storagev1.Record, len(recs)), Resume: resume}
	for i, r := range recs {
		resp.Records[i] = recordToProto(r)
	}
	return resp, nil
}

// StreamPartition sends the partition in chunks; each chunk's resume token
// lets a client that lost the stream continue where it stopped.
func (svc *service) StreamPartition(req *storagev1.StreamPartitionRequest, stream storagev1.StorageService_StreamPartitionServer) error {
	p := req.GetPartition()
	snap, err := svc.snapshotFor(stream.Context(), req.GetPlacementEpoch())
	if err != nil {
		return toStatus(err)
	}
	if err := svc.checkOwner(snap, accessReplica, req.GetPlacementEpoch(), p, 0, nil); err != nil {
		return toStatus(err)
	}
	var after []byte
	if len(req.GetAfter()) > 0 {
		after = req.GetAfter()
	}
	now := svc.s.now().UnixNano()
	chunk := &storagev1.StreamPartitionResponse{}
	size := 0
	flush := func(last engine.Key) error {
		if len(chunk.Records) == 0 {
			return nil
		}
		chunk.Resume = engine.EncodeKey(last)
		if err := stream.Send(chunk); err != nil {
			return err
		}
		chunk, size = &storagev1.StreamPartitionResponse{}, 0
		return nil
	}
	var last engine.Key
	stream1 := svc.s.eng.StreamPartition
	if n := req.GetBuckets(); n > 0 {
		if n > engine.MaxBuckets {
			return invalid("buckets %d: at most %d", n, engine.MaxBuckets)
		}
		want := make(map[int]bool, len(req.GetBucketIds()))
		for _, b := range req.GetBucketIds() {
			if b >= n {
				return invalid("bucket_ids: %d is not below buckets %d", b, n)
			}
			want[int(b)] = true
		}
		stream1 = func(p uint32, after []byte, fn func(engine.Record) error) error {
			return svc.s.eng.StreamBuckets(p, int(n), want, after, fn)
		}
	}
	err = stream1(p, after, func(r engine.Record) error {
		if err := stream.Context().Err(); err != nil {
			return err
		}
		last = r.Key
		if req.GetTableId() != 0 && r.Key.TableID != req.GetTableId() {
			return nil
		}
		if !req.GetIncludeExpired() && !r.Tombstone && r.ExpireAt != 0 && r.ExpireAt <= now {
			return nil
		}
		chunk.Records = append(chunk.Records, recordToProto(r))
		size += len(r.Value) + len(r.Key.PartitionKey) + len(r.Key.SortKey)
		if len(chunk.Records) >= streamChunkRecords || size >= streamChunkBytes {
			return flush(r.Key)
		}
		return nil
	})
	if err != nil {
		return toStatus(err)
	}
	return toStatus(flush(last))
}

func (svc *service) PartitionDigests(ctx context.Context, req *storagev1.PartitionDigestsRequest) (*storagev1.PartitionDigestsResponse, error) {
	resp := &storagev1.PartitionDigestsResponse{}
	if len(req.GetPartitions()) == 0 {
		all, err := svc.s.eng.Digests()
		if err != nil {
			return nil, toStatus(err)
		}
		for p, d := range all {
			resp.Digests = append(resp.Digests, &storagev1.PartitionDigest{Partition: p, Count: d.Count, Sum: d.Sum})
		}
		sortDigests(resp.Digests)
		return resp, nil
	}
	for _, p := range req.GetPartitions() {
		d, err := svc.s.eng.Digest(p)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Digests = append(resp.Digests, &storagev1.PartitionDigest{Partition: p, Count: d.Count, Sum: d.Sum})
	}
	sortDigests(resp.Digests)
	return resp, nil
}

func sortDigests(ds []*storagev1.PartitionDigest) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].Partition < ds[j].Partition })
}

func (svc *service) BucketDigests(ctx context.Context, req *storagev1.BucketDigestsRequest) (*storagev1.BucketDigestsResponse, error) {
	if err := svc.checkOwner(svc.s.watcher.Snapshot(), accessReplica, 0, req.GetPartition(), 0, nil); err != nil {
		return nil, toStatus(err)
	}
	ds, err := svc.s.eng.BucketDigests(req.GetPartition(), int(req.GetBuckets()))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &storagev1.BucketDigestsResponse{Digests: make([]*storagev1.BucketDigest, len(ds))}
	for i, d := range ds {
		resp.Digests[i] = &storagev1.BucketDigest{Count: d.Count, Sum: d.Sum}
	}
	return resp, nil
}

func (svc *service) SetSyncPoints(ctx context.Context, req *storagev1.SetSyncPointsRequest) (*storagev1.SetSyncPointsResponse, error) {
	snap := svc.s.watcher.Snapshot()
	for i, sp := range req.GetPoints() {
		if err := svc.checkOwner(snap, accessReplica, 0, sp.GetPartition(), 0, nil); err != nil {
			return nil, toStatus(fmt.Errorf("points[%d]: %w", i, err))
		}
		if sp.GetUnixNanos() <= 0 {
			return nil, invalid("points[%d]: unix_nanos %d: want a time after 1970", i, sp.GetUnixNanos())
		}
	}
	for _, sp := range req.GetPoints() {
		if err := svc.s.eng.SetSyncPoint(sp.GetPartition(), sp.GetUnixNanos()); err != nil {
			return nil, toStatus(err)
		}
	}
	return &storagev1.SetSyncPointsResponse{}, nil
}
