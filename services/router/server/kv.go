package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of Query and Scan (keys' and values' are kvrecord's).
const (
	defaultLimit = 1000
	maxLimit     = 10000
	scanChunk    = 1000
)

// errInvalid marks bad input found by the router itself.
var errInvalid = kvrecord.ErrInvalid

func invalidf(format string, args ...any) error { return kvrecord.Invalidf(format, args...) }

// toStatus is the one place router errors become gRPC status codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if c, ok := grpcx.ContextCode(err); ok {
		return status.Error(c, err.Error())
	}
	switch {
	case errors.Is(err, errInvalid), errors.Is(err, coord.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, topology.ErrTableNotFound), errors.Is(err, errNodeNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, errPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, topology.ErrTableExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, coord.ErrUnavailable), errors.Is(err, coord.ErrNotReady), errors.Is(err, errEtcdUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func level(c kvv1.Consistency, def coord.Level) (coord.Level, error) {
	switch c {
	case kvv1.Consistency_CONSISTENCY_UNSPECIFIED:
		return def, nil
	case kvv1.Consistency_CONSISTENCY_ONE:
		return coord.One, nil
	case kvv1.Consistency_CONSISTENCY_QUORUM:
		return coord.Quorum, nil
	case kvv1.Consistency_CONSISTENCY_ALL:
		return coord.All, nil
	}
	return 0, invalidf("consistency: unknown value %d", c)
}

type kvService struct {
	kvv1.UnimplementedKVServiceServer
	s *Server
}

// withTimeout applies the default deadline to requests that carry none.
func (kv *kvService) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		// grpc cancels ctx when the call ends: no context of our own (a
		// child context costs an allocation and a map entry in its
		// parent).
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, kv.s.cfg.RequestTimeout)
}

// request is what every KV handler starts with: the deadline, the
// consistency level and a resolver over the current view.
type request struct {
	ctx    context.Context
	cancel context.CancelFunc
	lvl    coord.Level
	r      resolver
}

func (kv *kvService) begin(ctx context.Context, c kvv1.Consistency, def coord.Level) (*request, error) {
	lvl, err := level(c, def)
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := kv.resolver()
	if err != nil {
		return nil, toStatus(err)
	}
	ctx, cancel := kv.withTimeout(ctx)
	return &request{ctx: ctx, cancel: cancel, lvl: lvl, r: r}, nil
}

// writeOne applies a single put or delete and returns its version and
// outcome.
func (kv *kvService) writeOne(ctx context.Context, c kvv1.Consistency, k *kvv1.Key, del bool, value []byte, exp *timestamppb.Timestamp, version uint64, where kvrecord.Field) (uint64, *kvv1.WriteOutcome, error) {
	req, err := kv.begin(ctx, c, coord.Quorum)
	if err != nil {
		return 0, nil, err
	}
	defer req.cancel()
	m := &kvv1.Mutation{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: k, Value: value, ExpireTime: exp, Version: version}
	if del {
		m.Type = kvv1.Mutation_MUTATION_TYPE_DELETE
	}
	rec, err := kv.record(req.r, m, where)
	if err != nil {
		return 0, nil, toStatus(err)
	}
	out, err := kv.s.coord.Write(req.ctx, []*storagev1.Record{rec}, req.lvl)
	if err != nil {
		return 0, nil, toStatus(err)
	}
	return rec.Version, writeOutcome(out[0]), nil
}

func writeOutcome(o coord.Outcome) *kvv1.WriteOutcome {
	return &kvv1.WriteOutcome{Applied: o.Applied, CurrentVersion: o.Current}
}

// resolver resolves table names and partitions against one view.
type resolver struct {
	view *cluster.View
}

func (kv *kvService) resolver() (resolver, error) {
	v, err := kv.s.coord.View()
	if err != nil {
		return resolver{}, err
	}
	return resolver{view: v}, nil
}

func (r resolver) table(name string, where kvrecord.Field) (topology.Table, error) {
	if name == "" {
		return topology.Table{}, invalidf("%s: table is empty", where)
	}
	if !utf8.ValidString(name) {
		// gRPC's decoder refuses these first (see grpcx.ServerOptions.CheckUTF8); this
		// covers in-process callers, and a response echoing the name could
		// not be encoded.
		return topology.Table{}, invalidf("%s: table is not valid UTF-8", where)
	}
	t, ok := r.view.Snapshot.Tables[name]
	if !ok {
		return topology.Table{}, fmt.Errorf("%w: %q (%s)", topology.ErrTableNotFound, name, where)
	}
	return t, nil
}

// key validates a public key and returns its storage key and table.
func (r resolver) key(k *kvv1.Key, where kvrecord.Field) (*storagev1.Key, topology.Table, error) {
	if k == nil {
		return nil, topology.Table{}, invalidf("%s: missing", where)
	}
	t, err := r.table(k.GetTable(), where)
	if err != nil {
		return nil, t, err
	}
	sk, err := kvrecord.Key(t, r.view.Partitions, k, where)
	return sk, t, err
}

func expireTime(n int64) *timestamppb.Timestamp {
	if n == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, n))
}

// record builds the storage record of one put or delete (kvrecord, the
// conversion the migrator's bulk import shares); the table is resolved
// first.
func (kv *kvService) record(r resolver, m *kvv1.Mutation, where kvrecord.Field) (*storagev1.Record, error) {
	if m.GetKey() == nil {
		return nil, invalidf("%s.key: missing", where)
	}
	t, err := r.table(m.GetKey().GetTable(), where.Dot("key"))
	if err != nil {
		return nil, err
	}
	return kv.s.records().Record(t, r.view.Partitions, m, where)
}

func (kv *kvService) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	rq, err := kv.begin(ctx, req.GetConsistency(), coord.One)
	if err != nil {
		return nil, err
	}
	defer rq.cancel()
	sk, _, err := rq.r.key(req.GetKey(), kvrecord.Named("key"))
	if err != nil {
		return nil, toStatus(err)
	}
	rec, err := kv.s.coord.Read(rq.ctx, sk, rq.lvl)
	if err != nil {
		return nil, toStatus(err)
	}
	return getResponse(rec), nil
}

func getResponse(rec *storagev1.Record) *kvv1.GetResponse {
	resp := new(kvv1.GetResponse)
	setGetResponse(resp, rec)
	return resp
}

// setGetResponse sets resp, a zero GetResponse, to the answer for rec (nil:
// not found).
func setGetResponse(resp *kvv1.GetResponse, rec *storagev1.Record) {
	if rec == nil || rec.GetTombstone() {
		return
	}
	resp.Found, resp.Value, resp.Version, resp.ExpireTime = true, rec.GetValue(), rec.GetVersion(), expireTime(rec.GetExpireUnixNanos())
}

func (kv *kvService) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	v, out, err := kv.writeOne(ctx, req.GetConsistency(), req.GetKey(), false, req.GetValue(), req.GetExpireTime(), req.GetVersion(), kvrecord.Named("put"))
	if err != nil {
		return nil, err
	}
	return &kvv1.PutResponse{Version: v, Outcome: out}, nil
}

func (kv *kvService) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	v, out, err := kv.writeOne(ctx, req.GetConsistency(), req.GetKey(), true, nil, nil, req.GetVersion(), kvrecord.Named("delete"))
	if err != nil {
		return nil, err
	}
	return &kvv1.DeleteResponse{Version: v, Outcome: out}, nil
}

func (kv *kvService) BatchGet(ctx context.Context, req *kvv1.BatchGetRequest) (*kvv1.BatchGetResponse, error) {
	if n := len(req.GetKeys()); n > kv.s.cfg.MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "keys: %d keys, at most %d per BatchGet", n, kv.s.cfg.MaxBatch)
	}
	rq, err := kv.begin(ctx, req.GetConsistency(), coord.One)
	if err != nil {
		return nil, err
	}
	defer rq.cancel()
	keys := make([]*storagev1.Key, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		if keys[i], _, err = rq.r.key(k, kvrecord.Index("keys", i)); err != nil {
			return nil, toStatus(err)
		}
	}
	recs, err := kv.s.coord.BatchRead(rq.ctx, keys, rq.lvl)
	if err != nil {
		return nil, toStatus(err)
	}
	// The answers in one allocation, not one per key.
	resp := &kvv1.BatchGetResponse{Results: make([]*kvv1.GetResponse, len(recs))}
	answers := make([]kvv1.GetResponse, len(recs))
	for i, rec := range recs {
		setGetResponse(&answers[i], rec)
		resp.Results[i] = &answers[i]
	}
	return resp, nil
}

func (kv *kvService) BatchWrite(ctx context.Context, req *kvv1.BatchWriteRequest) (*kvv1.BatchWriteResponse, error) {
	if n := len(req.GetMutations()); n > kv.s.cfg.MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "mutations: %d mutations, at most %d per BatchWrite", n, kv.s.cfg.MaxBatch)
	}
	rq, err := kv.begin(ctx, req.GetConsistency(), coord.Quorum)
	if err != nil {
		return nil, err
	}
	defer rq.cancel()
	r := rq.r
	recs := make([]*storagev1.Record, len(req.GetMutations()))
	resp := &kvv1.BatchWriteResponse{Versions: make([]uint64, len(recs))}
	for i, m := range req.GetMutations() {
		if recs[i], err = kv.record(r, m, kvrecord.Index("mutations", i)); err != nil {
			return nil, toStatus(err)
		}
		resp.Versions[i] = recs[i].Version
	}
	outs, err := kv.s.coord.Write(rq.ctx, recs, rq.lvl)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Outcomes = make([]*kvv1.WriteOutcome, len(outs))
	for i, o := range outs {
		resp.Outcomes[i] = writeOutcome(o)
	}
	return resp, nil
}

// Query page tokens are a version byte and the sort key the previous page
// ended at; the next page starts after it in the query's direction.
const pageTokenV1 = 1

func (kv *kvService) Query(ctx context.Context, req *kvv1.QueryRequest) (*kvv1.QueryResponse, error) {
	rq, err := kv.begin(ctx, req.GetConsistency(), coord.One)
	if err != nil {
		return nil, err
	}
	defer rq.cancel()
	r := rq.r
	t, err := r.table(req.GetTable(), kvrecord.Named("table"))
	if err != nil {
		return nil, toStatus(err)
	}
	if err := kvrecord.CheckKeyParts(req.GetPartitionKey(), nil, kvrecord.Named("query")); err != nil {
		return nil, toStatus(err)
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultLimit
	case limit > maxLimit:
		return nil, toStatus(invalidf("limit: %d, at most %d", limit, maxLimit))
	}
	q := coord.QueryOptions{
		Partition: placement.PartitionOf(t.ID, req.GetPartitionKey(), r.view.Partitions),
		TableID:   t.ID, PartitionKey: req.GetPartitionKey(), Limit: limit, Reverse: req.GetReverse(),
	}
	switch c := req.GetCondition().(type) {
	case *kvv1.QueryRequest_Range:
		q.Start = c.Range.GetStart()
		if len(c.Range.GetEnd()) > 0 {
			q.End = c.Range.GetEnd()
			if bytes.Compare(q.Start, q.End) >= 0 {
				return nil, toStatus(invalidf("range: start %q is not before end %q", q.Start, q.End))
			}
		}
	case *kvv1.QueryRequest_Prefix:
		q.Prefix = c.Prefix
	}
	if tok := req.GetPageToken(); len(tok) > 0 {
		if tok[0] != pageTokenV1 {
			return nil, toStatus(invalidf("page_token: not a token this router issued"))
		}
		last := tok[1:]
		if q.Reverse {
			if q.End == nil || bytes.Compare(last, q.End) < 0 {
				q.End = last
			}
		} else {
			after := append(append([]byte{}, last...), 0)
			if bytes.Compare(after, q.Start) > 0 {
				q.Start = after
			}
		}
		if q.End != nil && bytes.Compare(q.Start, q.End) >= 0 {
			return &kvv1.QueryResponse{}, nil
		}
	}
	recs, next, err := kv.s.coord.Query(rq.ctx, q, rq.lvl)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvv1.QueryResponse{Items: make([]*kvv1.Item, 0, len(recs))}
	for _, rec := range recs {
		resp.Items = append(resp.Items, item(req.GetTable(), rec))
	}
	if next != nil {
		resp.NextPageToken = append([]byte{pageTokenV1}, next...)
	}
	return resp, nil
}

func item(table string, rec *storagev1.Record) *kvv1.Item {
	return &kvv1.Item{
		Key:        &kvv1.Key{Table: table, PartitionKey: rec.GetKey().GetPartitionKey(), SortKey: rec.GetKey().GetSortKey()},
		Value:      rec.GetValue(),
		Version:    rec.GetVersion(),
		ExpireTime: expireTime(rec.GetExpireUnixNanos()),
	}
}
