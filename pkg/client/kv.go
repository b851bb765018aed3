package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// Key addresses one item.
type Key struct {
	Table        string
	PartitionKey []byte
	SortKey      []byte // may be empty
}

// Item is a stored item.
type Item struct {
	Table        string
	PartitionKey []byte
	SortKey      []byte
	Value        []byte
	// Version is the version of the write that produced Value.
	Version uint64
	// ExpireTime is when the item expires; zero means never.
	ExpireTime time.Time
}

// Key returns the item's key.
func (it Item) Key() Key {
	return Key{Table: it.Table, PartitionKey: it.PartitionKey, SortKey: it.SortKey}
}

// Result is one answer of BatchGet.
type Result struct {
	// Found is false when the item does not exist, was deleted or expired.
	Found bool
	// Item is the item when Found; its key is set either way.
	Item Item
}

// Mutation is one write of BatchWrite: a put, or a delete when Delete is
// set.
type Mutation struct {
	Key    Key
	Delete bool
	// Value is the new value (puts only).
	Value []byte
	// ExpireTime makes the item expire (puts only); zero means never, unless
	// the table has a default TTL.
	ExpireTime time.Time
	// Version, when non-zero, is used instead of a router-assigned version,
	// which makes retries strictly idempotent.
	Version uint64
}

// Proto is m as BatchWrite sends it (a delete carries no value or expiry).
func (m Mutation) Proto() *kvv1.Mutation {
	pm := &kvv1.Mutation{
		Type:    kvv1.Mutation_MUTATION_TYPE_PUT,
		Key:     protoKey(m.Key.Table, m.Key.PartitionKey, m.Key.SortKey),
		Value:   m.Value,
		Version: m.Version,
	}
	if m.Delete {
		pm.Type = kvv1.Mutation_MUTATION_TYPE_DELETE
		pm.Value = nil
	} else {
		pm.ExpireTime = toTimestamp(m.ExpireTime)
	}
	return pm
}

// CallOption adjusts one call of Get, Put, Delete, BatchGet or BatchWrite.
// An option that does not apply to the call is reported as InvalidArgument.
type CallOption func(*callOptions)

type callOptions struct {
	set         callOptionSet
	consistency kvv1.Consistency
	version     uint64
	ttl         time.Duration
	expireTime  time.Time
}

type callOptionSet uint8

const (
	optConsistency callOptionSet = 1 << iota
	optVersion
	optTTL
	optExpireTime
)

var callOptionNames = []struct {
	bit  callOptionSet
	name string
}{
	{optConsistency, "WithConsistency"},
	{optVersion, "WithVersion"},
	{optTTL, "WithTTL"},
	{optExpireTime, "WithExpireTime"},
}

// WithConsistency sets how many replicas must answer a read or acknowledge a
// write, instead of the client's default.
func WithConsistency(c kvv1.Consistency) CallOption {
	return func(o *callOptions) { o.set |= optConsistency; o.consistency = c }
}

// WithVersion writes with this version instead of a router-assigned one.
// Retries of a write with a fixed version are strictly idempotent. It must
// be non-zero.
func WithVersion(v uint64) CallOption {
	return func(o *callOptions) { o.set |= optVersion; o.version = v }
}

// WithTTL makes a Put expire d from now. It cannot be combined with
// WithExpireTime.
func WithTTL(d time.Duration) CallOption {
	return func(o *callOptions) { o.set |= optTTL; o.ttl = d }
}

// WithExpireTime makes a Put expire at t. It cannot be combined with
// WithTTL.
func WithExpireTime(t time.Time) CallOption {
	return func(o *callOptions) { o.set |= optExpireTime; o.expireTime = t }
}

// callOpts applies opts for operation op, which accepts the options in
// allowed, and validates them.
func callOpts(op string, allowed callOptionSet, def kvv1.Consistency, opts []CallOption) (callOptions, error) {
	o := callOptions{consistency: def}
	for _, opt := range opts {
		opt(&o)
	}
	var problems []string
	for _, n := range callOptionNames {
		if o.set&n.bit != 0 && allowed&n.bit == 0 {
			problems = append(problems, n.name+" does not apply to "+op)
		}
	}
	if _, ok := kvv1.Consistency_name[int32(o.consistency)]; !ok {
		problems = append(problems, fmt.Sprintf("unknown consistency %d", o.consistency))
	}
	if o.set&optVersion != 0 && o.version == 0 {
		problems = append(problems, "WithVersion(0): version must be non-zero")
	}
	if o.set&optTTL != 0 && o.ttl <= 0 {
		problems = append(problems, fmt.Sprintf("WithTTL(%v): must be positive", o.ttl))
	}
	if o.set&optExpireTime != 0 && o.expireTime.IsZero() {
		problems = append(problems, "WithExpireTime: zero time")
	}
	if o.set&optTTL != 0 && o.set&optExpireTime != 0 {
		problems = append(problems, "WithTTL and WithExpireTime together")
	}
	if len(problems) > 0 {
		return o, status.Errorf(codes.InvalidArgument, "client: %s: %s", op, strings.Join(problems, "; "))
	}
	if o.set&optTTL != 0 {
		o.expireTime = time.Now().Add(o.ttl)
	}
	return o, nil
}

// Get reads one item. found is false when the item does not exist, was
// deleted or has expired. Call options: WithConsistency.
func (c *Client) Get(ctx context.Context, table string, pk, sk []byte, opts ...CallOption) (item Item, found bool, err error) {
	o, err := callOpts("Get", optConsistency, c.opts.readConsistency, opts)
	if err != nil {
		return Item{}, false, err
	}
	resp, err := c.kv.Get(ctx, &kvv1.GetRequest{Key: protoKey(table, pk, sk), Consistency: o.consistency})
	if err != nil {
		return Item{}, false, opError("get", table, pk, sk, err)
	}
	item = Item{Table: table, PartitionKey: pk, SortKey: sk}
	if !resp.GetFound() {
		return item, false, nil
	}
	item.Value = resp.GetValue()
	item.Version = resp.GetVersion()
	item.ExpireTime = fromTimestamp(resp.GetExpireTime())
	return item, true, nil
}

// WriteResult is what a write that reached its consistency level did. A
// write that was superseded changed nothing: the item already had a newer
// version (CurrentVersion), so the write is not an error but is not in
// effect either.
type WriteResult struct {
	// Version is the version the write carried.
	Version uint64
	// Applied is true when the write is now the stored version on at least
	// one replica that acknowledged it (or was already: a retried write).
	Applied bool
	// CurrentVersion is the version stored for the key: Version when
	// Applied, else the newer version that superseded the write (0 if the
	// routers are too old to say).
	CurrentVersion uint64
}

// Superseded reports whether the write changed nothing because a newer
// version was stored.
func (r WriteResult) Superseded() bool { return !r.Applied }

// writeResult converts a router's answer. Routers that predate outcomes
// send none; their writes count as applied, as they were reported before.
func writeResult(version uint64, o *kvv1.WriteOutcome) WriteResult {
	if o == nil {
		return WriteResult{Version: version, Applied: true, CurrentVersion: version}
	}
	return WriteResult{Version: version, Applied: o.GetApplied(), CurrentVersion: o.GetCurrentVersion()}
}

// Put writes one item, replacing any older version, and says whether it was
// applied or superseded by a newer stored version. Call options: WithTTL
// or WithExpireTime, WithVersion, WithConsistency. Without WithVersion a
// retried Put may apply twice; see the package documentation.
func (c *Client) Put(ctx context.Context, table string, pk, sk, value []byte, opts ...CallOption) (WriteResult, error) {
	o, err := callOpts("Put", optConsistency|optVersion|optTTL|optExpireTime, c.opts.writeConsistency, opts)
	if err != nil {
		return WriteResult{}, err
	}
	resp, err := c.kv.Put(ctx, &kvv1.PutRequest{
		Key:         protoKey(table, pk, sk),
		Value:       value,
		ExpireTime:  toTimestamp(o.expireTime),
		Version:     o.version,
		Consistency: o.consistency,
	})
	if err != nil {
		return WriteResult{}, opError("put", table, pk, sk, err)
	}
	return writeResult(resp.GetVersion(), resp.GetOutcome()), nil
}

// Delete removes one item by writing a versioned tombstone, and says whether
// it was applied or superseded by a newer stored version. Deleting a
// missing item succeeds (applied). Call options: WithVersion,
// WithConsistency.
func (c *Client) Delete(ctx context.Context, table string, pk, sk []byte, opts ...CallOption) (WriteResult, error) {
	o, err := callOpts("Delete", optConsistency|optVersion, c.opts.writeConsistency, opts)
	if err != nil {
		return WriteResult{}, err
	}
	resp, err := c.kv.Delete(ctx, &kvv1.DeleteRequest{Key: protoKey(table, pk, sk), Version: o.version, Consistency: o.consistency})
	if err != nil {
		return WriteResult{}, opError("delete", table, pk, sk, err)
	}
	return writeResult(resp.GetVersion(), resp.GetOutcome()), nil
}

// BatchGet reads many items, from any tables; results[i] answers keys[i].
// Any number of keys is accepted: they are sent 1000 (the server's limit)
// per call, one call after another. Call options: WithConsistency.
func (c *Client) BatchGet(ctx context.Context, keys []Key, opts ...CallOption) ([]Result, error) {
	o, err := callOpts("BatchGet", optConsistency, c.opts.readConsistency, opts)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(keys))
	for lo := 0; lo < len(keys); lo += maxBatch {
		hi := min(lo+maxBatch, len(keys))
		req := &kvv1.BatchGetRequest{Keys: make([]*kvv1.Key, hi-lo), Consistency: o.consistency}
		pks := make([]kvv1.Key, hi-lo) // one allocation, not one per key
		for i, k := range keys[lo:hi] {
			pks[i].Table, pks[i].PartitionKey, pks[i].SortKey = k.Table, k.PartitionKey, k.SortKey
			req.Keys[i] = &pks[i]
		}
		resp, err := c.kv.BatchGet(ctx, req)
		if err != nil {
			return nil, batchError("batch get keys", lo, hi, len(keys), "", err)
		}
		if got := len(resp.GetResults()); got != hi-lo {
			return nil, status.Errorf(codes.Internal, "client: batch get keys [%d, %d): router returned %d results for %d keys", lo, hi, got, hi-lo)
		}
		for i, r := range resp.GetResults() {
			k := keys[lo+i]
			res := Result{Found: r.GetFound(), Item: Item{Table: k.Table, PartitionKey: k.PartitionKey, SortKey: k.SortKey}}
			if res.Found {
				res.Item.Value = r.GetValue()
				res.Item.Version = r.GetVersion()
				res.Item.ExpireTime = fromTimestamp(r.GetExpireTime())
			}
			results = append(results, res)
		}
	}
	return results, nil
}

// BatchWrite is BatchWriteResults returning only the version each mutation
// carried.
//
// Deprecated: use BatchWriteResults, which also says which mutations were
// superseded by newer stored versions and changed nothing.
func (c *Client) BatchWrite(ctx context.Context, muts []Mutation, opts ...CallOption) ([]uint64, error) {
	res, err := c.BatchWriteResults(ctx, muts, opts...)
	if err != nil {
		return nil, err
	}
	versions := make([]uint64, len(res))
	for i, r := range res {
		versions[i] = r.Version
	}
	return versions, nil
}

// BatchWriteResults applies many puts and deletes and returns what each
// did, results[i] for muts[i]: its version and whether it was applied or
// superseded by a newer stored version. It is not a transaction: each
// mutation is applied independently. Any number of mutations is accepted:
// they are sent 1000 (the server's limit) per call, in order, one call
// after another, so of two router-versioned writes of one key in different
// chunks the later one wins. On error, the chunks before the failing one
// were applied and the error names the failing chunk's index range; the
// failing chunk and those after it may be partly applied or not at all.
// Mutations with explicit versions can be retried as a whole safely. Call
// options: WithConsistency.
func (c *Client) BatchWriteResults(ctx context.Context, muts []Mutation, opts ...CallOption) ([]WriteResult, error) {
	o, err := callOpts("BatchWrite", optConsistency, c.opts.writeConsistency, opts)
	if err != nil {
		return nil, err
	}
	results := make([]WriteResult, 0, len(muts))
	for lo := 0; lo < len(muts); lo += maxBatch {
		hi := min(lo+maxBatch, len(muts))
		req := &kvv1.BatchWriteRequest{Mutations: make([]*kvv1.Mutation, 0, hi-lo), Consistency: o.consistency}
		for _, m := range muts[lo:hi] {
			req.Mutations = append(req.Mutations, m.Proto())
		}
		resp, err := c.kv.BatchWrite(ctx, req)
		if err != nil {
			return nil, batchError("batch write mutations", lo, hi, len(muts), " (earlier chunks applied)", err)
		}
		if got := len(resp.GetVersions()); got != hi-lo {
			return nil, status.Errorf(codes.Internal, "client: batch write mutations [%d, %d): router returned %d versions for %d mutations", lo, hi, got, hi-lo)
		}
		outs := resp.GetOutcomes()
		if len(outs) != 0 && len(outs) != hi-lo {
			return nil, status.Errorf(codes.Internal, "client: batch write mutations [%d, %d): router returned %d outcomes for %d mutations", lo, hi, len(outs), hi-lo)
		}
		for i, v := range resp.GetVersions() {
			var o *kvv1.WriteOutcome
			if len(outs) > 0 {
				o = outs[i]
			}
			results = append(results, writeResult(v, o))
		}
	}
	return results, nil
}

func protoKey(table string, pk, sk []byte) *kvv1.Key {
	return &kvv1.Key{Table: table, PartitionKey: pk, SortKey: sk}
}

func fromProtoItem(it *kvv1.Item) Item {
	k := it.GetKey()
	return Item{
		Table:        k.GetTable(),
		PartitionKey: k.GetPartitionKey(),
		SortKey:      k.GetSortKey(),
		Value:        it.GetValue(),
		Version:      it.GetVersion(),
		ExpireTime:   fromTimestamp(it.GetExpireTime()),
	}
}

func toTimestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTimestamp(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// opError adds the operation and key to a call's error. The status code
// stays visible to status.Code and errors.As.
func opError(op, table string, pk, sk []byte, err error) error {
	return fmt.Errorf("client: %s %s: %w", op, keyString(table, pk, sk), err)
}

// batchError names the failing chunk of a batch split into several calls.
func batchError(op string, lo, hi, total int, note string, err error) error {
	if lo == 0 && hi == total {
		return fmt.Errorf("client: %s: %w", op, err)
	}
	return fmt.Errorf("client: %s [%d, %d) of %d%s: %w", op, lo, hi, total, note, err)
}

// keyString formats a key for error messages, shortening long keys.
func keyString(table string, pk, sk []byte) string {
	return fmt.Sprintf("table %q partition key %s sort key %s", table, shortBytes(pk), shortBytes(sk))
}
