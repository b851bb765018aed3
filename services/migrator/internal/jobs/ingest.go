package jobs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The INGEST write path (docs/design.md, "Bulk import: the migrator").
const (
	// AutoIngestBytes is the export size from which an import's automatic
	// write path is INGEST.
	AutoIngestBytes = 64 << 20
	// ingestRunBytes is how many value bytes an INGEST batch gathers
	// before it is sent (a file's last batch is sent at its end, so a
	// checkpoint still covers whole batches of one file).
	ingestRunBytes = 16 << 20
	// ingestRunLines bounds an INGEST batch's lines, written or not.
	ingestRunLines = 1 << 20
	// ingestMessageBytes bounds one IngestRequest (one record may exceed
	// it alone).
	ingestMessageBytes = 1 << 20
	// ingestAttempts is how often one node's Ingest is tried before the
	// batch goes through BatchWrite instead.
	ingestAttempts = 3
	// ingestRefreshes is how often a run refused for a stale placement is
	// sent again by a newer one before it goes through BatchWrite.
	ingestRefreshes = 5
	// ingestRefreshWait bounds the wait for a newer placement.
	ingestRefreshWait = 2 * time.Second
)

// errIngestFallback says a batch could not be ingested (a write target
// unavailable, the placement still moving, no placement at all) and must
// go through BatchWrite; use errors.Is.
var errIngestFallback = errors.New("jobs: cannot ingest this batch")

// errStalePlacement marks a node's refusal of the run's placement epoch.
var errStalePlacement = errors.New("jobs: stale placement")

// writePath is the path an import uses: the spec's, or for
// WRITE_PATH_UNSPECIFIED, INGEST for an export of at least AutoIngestBytes
// (the manifest's billedSizeBytes, else the estimated uncompressed size)
// and BATCH_WRITE below that.
func writePath(spec *migratorv1.ImportSpec, exp *export.Export, estimated uint64) migratorv1.WritePath {
	if p := spec.GetWritePath(); p != migratorv1.WritePath_WRITE_PATH_UNSPECIFIED {
		return p
	}
	size := uint64(max(exp.Summary.BilledSizeBytes, 0))
	if size == 0 {
		size = estimated
	}
	if size >= AutoIngestBytes {
		return migratorv1.WritePath_WRITE_PATH_INGEST
	}
	return migratorv1.WritePath_WRITE_PATH_BATCH_WRITE
}

// ingester sends an import's batches to the storage nodes' Ingest: every
// write target of each record's partition gets it, and a batch is done
// once every one acknowledged it.
type ingester struct {
	e       *Env
	job     string
	table   string
	watcher *topology.Watcher
	records kvrecord.Builder

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by address
}

func (e *Env) newIngester(ctx context.Context, job, table string) (*ingester, error) {
	if e.Topology == nil {
		return nil, fail("write path INGEST: this migrator has no access to the cluster's topology")
	}
	w, err := e.Topology.Watch(ctx, topology.WatcherOptions{Logger: e.Logger})
	if err != nil {
		return nil, fmt.Errorf("jobs: watch the topology for ingestion: %w", err)
	}
	return &ingester{e: e, job: job, table: table, watcher: w,
		records: kvrecord.Builder{Clock: hlc.New(), Now: e.Now}, conns: map[string]*grpc.ClientConn{}}, nil
}

// Close stops watching and closes the node connections.
func (g *ingester) Close() {
	g.watcher.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, cc := range g.conns {
		_ = cc.Close()
	}
	g.conns = nil
}

func (g *ingester) conn(addr string) (storagev1.StorageServiceClient, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cc, ok := g.conns[addr]
	if !ok {
		var err error
		if cc, err = grpcx.Dial(addr, g.e.DialOptions...); err != nil {
			return nil, err
		}
		g.conns[addr] = cc
	}
	return storagev1.NewStorageServiceClient(cc), nil
}

// ingestResult is what ingesting a batch did.
type ingestResult struct {
	// superseded is how many records the nodes did not apply (they held
	// them or newer): each node's count, weighted by its records' share of
	// their partitions' write targets, so a record every replica held
	// counts once (exact when the replicas agree), and at least 1 if any
	// node reported one.
	superseded int64
	// refused are the records that cannot be stored, by batch index, with
	// the reason (worded as the router words it).
	refused map[int]error
}

// ingest writes muts by the storage nodes' Ingest. It converts each
// mutation as the router does (kvrecord), so what is stored is what
// BatchWrite would have stored. errIngestFallback: send the batch through
// BatchWrite instead (nothing of it was reported).
func (g *ingester) ingest(ctx context.Context, muts []client.Mutation) (ingestResult, error) {
	res := ingestResult{refused: map[int]error{}}
	snap := g.watcher.Snapshot()
	if snap.Config == nil || snap.Placement == nil || snap.Placement.Partitions != snap.Config.Partitions {
		return res, fmt.Errorf("%w: the cluster has no placement yet", errIngestFallback)
	}
	t, ok := snap.Tables[g.table]
	if !ok {
		return res, fail("target table %q not found while writing (deleted during the job?)", g.table)
	}
	partitions := snap.Config.Partitions
	recs := make([]*storagev1.Record, len(muts))
	order := make([]int, 0, len(muts))
	for i, m := range muts {
		// "mutations[0]": the router's words for a mutation it refuses,
		// which the BatchWrite path sends alone once refused.
		rec, err := g.records.Record(t, partitions, m.Proto(), kvrecord.Index("mutations", 0))
		if err != nil {
			res.refused[i] = err
			continue
		}
		recs[i] = rec
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int { return compareKeys(recs[a].GetKey(), recs[b].GetKey()) })
	// Each record's encoded size, computed once for every node's messages.
	sizes := make([]int, len(recs))
	for _, i := range order {
		sizes[i] = proto.Size(recs[i])
	}
	for refresh := 0; ; refresh++ {
		err := g.send(ctx, recs, sizes, order, &res)
		if err == nil && res.superseded > 0 {
			res.superseded = g.supersededByNewer(ctx, muts, res.refused, res.superseded)
		}
		if !errors.Is(err, errStalePlacement) {
			return res, err
		}
		if refresh+1 >= ingestRefreshes {
			return res, fmt.Errorf("%w: the placement kept changing (%d refreshes): %v", errIngestFallback, refresh+1, err)
		}
		g.waitNewer(ctx, snap.Placement.Epoch)
		snap = g.watcher.Snapshot()
		res.superseded = 0
		for i := range res.refused {
			if recs[i] != nil {
				delete(res.refused, i) // a node's refusal: asked again
			}
		}
	}
}

// supersededByNewer counts the puts of a batch that Veltrix holds at a
// newer version (or as a newer delete), as BatchWrite counts superseded
// writes. A node's count also has the records it already stored at the
// same version — a run re-sent after a crash — which BatchWrite counts as
// written; so when a node reported any, the batch's puts are read back at
// QUORUM. If that read fails, the node's count (fallback) stands.
func (g *ingester) supersededByNewer(ctx context.Context, muts []client.Mutation, refused map[int]error, fallback int64) int64 {
	var keys []client.Key
	var idx []int
	for i, m := range muts {
		if _, bad := refused[i]; !bad && !m.Delete {
			keys = append(keys, m.Key)
			idx = append(idx, i)
		}
	}
	got, err := g.e.Target.BatchGet(ctx, keys, client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
	if err != nil {
		g.e.Logger.Warn("cannot read back superseded items; counting the nodes' figure, which includes items re-sent at their stored version",
			"job", g.job, "err", err)
		return fallback
	}
	var n int64
	for j, r := range got {
		if !r.Found || r.Item.Version > muts[idx[j]].Version {
			n++
		}
	}
	return n
}

func compareKeys(a, b *storagev1.Key) int {
	return cmp.Or(cmp.Compare(a.GetPartition(), b.GetPartition()), cmp.Compare(a.GetTableId(), b.GetTableId()),
		bytes.Compare(a.GetPartitionKey(), b.GetPartitionKey()), bytes.Compare(a.GetSortKey(), b.GetSortKey()))
}

// waitNewer waits (at most ingestRefreshWait) for a placement newer than
// epoch.
func (g *ingester) waitNewer(ctx context.Context, epoch uint64) {
	timeout := time.NewTimer(ingestRefreshWait)
	defer timeout.Stop()
	changes := g.watcher.Changes()
	for {
		if p := g.watcher.Snapshot().Placement; p != nil && p.Epoch > epoch {
			return
		}
		select {
		case <-changes:
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// nodeRun is what one node gets of a batch: the records of the
// partitions it is a write target of, in the batch's sorted order, as one
// run (one SST, one ingestion: runs that overlap each other in key order
// cost compactions, so fewer and larger ones are cheaper for the node).
// share is the sum over its records of 1/(write targets of the record's
// partition).
type nodeRun struct {
	id, addr string
	idxs     []int
	share    float64
}

// send ingests the batch's records (order: batch indexes, sorted; sizes:
// their encoded sizes) by the watcher's current placement, on every write
// target in parallel.
func (g *ingester) send(ctx context.Context, recs []*storagev1.Record, sizes, order []int, res *ingestResult) error {
	snap := g.watcher.Snapshot()
	doc := snap.Placement
	runs := map[string]*nodeRun{}
	for _, i := range order {
		rt := doc.Routing(recs[i].GetKey().GetPartition())
		for _, id := range rt.Write {
			nr := runs[id]
			if nr == nil {
				n, ok := snap.Nodes[id]
				if !ok || n.Address == "" {
					return fmt.Errorf("%w: write target %s of partition %d is not registered", errIngestFallback, id, recs[i].GetKey().GetPartition())
				}
				nr = &nodeRun{id: id, addr: n.Address}
				runs[id] = nr
			}
			nr.idxs = append(nr.idxs, i)
			nr.share += 1 / float64(len(rt.Write))
		}
	}
	var mu sync.Mutex
	var errs []error
	var superseded float64
	var anySuperseded bool
	var wg sync.WaitGroup
	for _, nr := range runs {
		wg.Go(func() {
			resp, err := g.sendNode(ctx, nr, recs, sizes, nr.idxs, doc.Epoch)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if n := resp.GetSuperseded(); n > 0 {
				anySuperseded = true
				superseded += float64(n) * nr.share / float64(len(nr.idxs))
			}
			for _, inv := range resp.GetInvalid() {
				if inv.GetIndex() < uint64(len(nr.idxs)) {
					i := nr.idxs[inv.GetIndex()]
					if _, seen := res.refused[i]; !seen {
						res.refused[i] = fmt.Errorf("%w: %s", kvrecord.ErrInvalid, inv.GetReason())
					}
				}
			}
		})
	}
	wg.Wait()
	if anySuperseded {
		res.superseded += max(1, int64(math.Round(superseded)))
	}
	// A stale placement wins: the run is sent again by a newer one.
	for _, err := range errs {
		if errors.Is(err, errStalePlacement) {
			return err
		}
	}
	return errors.Join(errs...)
}

// sendNode is one Ingest of records idxs on node nr, tried ingestAttempts
// times while the node is unavailable.
func (g *ingester) sendNode(ctx context.Context, nr *nodeRun, recs []*storagev1.Record, sizes, idxs []int, epoch uint64) (*storagev1.IngestResponse, error) {
	cli, err := g.conn(nr.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: node %s: %v", errIngestFallback, nr.id, err)
	}
	for attempt := 1; ; attempt++ {
		resp, err := ingestOnce(ctx, cli, recs, sizes, idxs, epoch)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		st := status.Convert(err)
		switch {
		case st.Code() == codes.FailedPrecondition && isStale(st):
			return nil, fmt.Errorf("%w: node %s: %s", errStalePlacement, nr.id, st.Message())
		case st.Code() == codes.NotFound, st.Code() == codes.InvalidArgument, st.Code() == codes.ResourceExhausted,
			st.Code() == codes.Unimplemented, st.Code() == codes.FailedPrecondition, attempt >= ingestAttempts:
			return nil, fmt.Errorf("%w: Ingest on node %s (%s), attempt %d: %s: %s", errIngestFallback, nr.id, nr.addr, attempt, st.Code(), st.Message())
		}
		g.e.Logger.Warn("ingest failed; retrying", "job", g.job, "node", nr.id, "attempt", attempt, "err", err)
		select {
		case <-time.After(writeBackoff(attempt)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// isStale reports whether a FailedPrecondition is a refusal of the run's
// placement: a stale epoch, or a partition the node does not (yet) hold.
func isStale(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok && info.GetReason() == "STALE_PLACEMENT_EPOCH" {
			return true
		}
	}
	msg := st.Message()
	return strings.Contains(msg, "stale placement epoch") || strings.Contains(msg, "routing changed") || strings.Contains(msg, "does not hold partition")
}

// ingestOnce streams records idxs to one node in messages of at most
// ingestMessageBytes (sizes: the records' encoded sizes).
func ingestOnce(ctx context.Context, cli storagev1.StorageServiceClient, recs []*storagev1.Record, sizes, idxs []int, epoch uint64) (*storagev1.IngestResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a failed Send leaves the stream to be cancelled
	stream, err := cli.Ingest(ctx)
	if err != nil {
		return nil, err
	}
	msg := &storagev1.IngestRequest{PlacementEpoch: epoch}
	size := 0
	flush := func() error {
		if len(msg.Records) == 0 {
			return nil
		}
		err := stream.Send(msg)
		msg = &storagev1.IngestRequest{PlacementEpoch: epoch}
		size = 0
		return err
	}
	for _, i := range idxs {
		n := sizes[i] + 8
		if size+n > ingestMessageBytes {
			if err := flush(); err != nil {
				_, rerr := stream.CloseAndRecv() // the real error, if the node ended the stream
				return nil, cmp.Or(rerr, err)
			}
		}
		msg.Records = append(msg.Records, recs[i])
		size += n
	}
	if err := flush(); err != nil {
		_, rerr := stream.CloseAndRecv()
		return nil, cmp.Or(rerr, err)
	}
	return stream.CloseAndRecv()
}
