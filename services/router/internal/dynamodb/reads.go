package dynamodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// Reads map onto storage as follows. GetItem is a coord.Read and
// BatchGetItem one coord.BatchRead per table (a key whose replicas are
// down is returned in UnprocessedKeys). Query is coord.Query pages over
// one partition key's sort-key range: stored sort keys (ddb.SortKeyBytes)
// order as DynamoDB orders the values, so every key condition is a byte
// range or prefix, and ExclusiveStartKey a bound just past that key. Scan
// streams partitions with coord.ScanPartition, a segment being a
// contiguous range of partitions; LastEvaluatedKey is the last item's
// key, from which coord.ScanPosition rebuilds the position to resume at.
// ConsistentRead reads at QUORUM (a Scan merges two replicas' streams),
// otherwise at ONE. Pages end after Limit items evaluated or once the
// items read reach 1 MB, as in DynamoDB.

// readOps are the operations of this file.
var readOps = map[string]opFunc{
	"GetItem":      getItem,
	"BatchGetItem": batchGetItem,
	"Query":        query,
	"Scan":         scan,
}

// DynamoDB's read limits.
const (
	// pageBytes ends a Query or Scan page once the items read reach it.
	pageBytes = 1 << 20
	// batchGetMaxKeys is the most keys one BatchGetItem may ask for.
	batchGetMaxKeys = 100
	// batchGetMaxBytes ends a BatchGetItem response; the keys left are
	// returned as UnprocessedKeys.
	batchGetMaxBytes = 16 << 20
	// readUnitBytes is the item size one read capacity unit covers.
	readUnitBytes = 4 << 10
	// maxTotalSegments is the most segments a parallel Scan may have.
	maxTotalSegments = 1000000
	// queryBatch is the most records one storage round of a Query asks
	// for, queryFirstBatch what the first round asks for: later rounds ask
	// for what the items seen so far say fills the page, so a page of
	// large items does not read megabytes past its 1 MB.
	queryBatch      = 1000
	queryFirstBatch = 100
)

// readValue is one AttributeValue in DynamoDB JSON (in the legacy
// AttributeValueList).
type readValue struct{ ddb.Value }

func (v *readValue) UnmarshalJSON(b []byte) error {
	val, err := ddb.UnmarshalValueDynamoDBJSON(b)
	if err != nil {
		return err
	}
	v.Value = val
	return nil
}

// readCondition is one entry of KeyConditions, QueryFilter or ScanFilter.
type readCondition struct {
	ComparisonOperator string
	AttributeValueList []readValue
}

func readConditions(in map[string]readCondition) map[string]expr.FilterCondition {
	out := make(map[string]expr.FilterCondition, len(in))
	for name, c := range in {
		fc := expr.FilterCondition{ComparisonOperator: c.ComparisonOperator}
		for _, v := range c.AttributeValueList {
			fc.AttributeValueList = append(fc.AttributeValueList, v.Value)
		}
		out[name] = fc
	}
	return out
}

// readCapacity is DynamoDB's ConsumedCapacity of a read.
type readCapacity struct {
	TableName         string
	CapacityUnits     float64
	ReadCapacityUnits float64
	Table             *readUnits `json:",omitempty"`
}

type readUnits struct {
	CapacityUnits     float64
	ReadCapacityUnits float64
}

// capacityMode is a parsed ReturnConsumedCapacity.
type capacityMode int

const (
	capacityNone capacityMode = iota
	capacityTotal
	capacityIndexes
)

func parseCapacityMode(s string) (capacityMode, error) {
	switch s {
	case "", "NONE":
		return capacityNone, nil
	case "TOTAL":
		return capacityTotal, nil
	case "INDEXES":
		return capacityIndexes, nil
	}
	return 0, validationf("1 validation error detected: Value '%s' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]", s)
}

// units is the read capacity of reading size bytes: one unit per 4 KB
// (rounded up, at least one) strongly consistent, half that eventually
// consistent.
func units(size int, consistent bool) float64 {
	u := math.Max(1, math.Ceil(float64(size)/readUnitBytes))
	if !consistent {
		u /= 2
	}
	return u
}

// of is the ConsumedCapacity of u units on table name, nil for NONE.
func (m capacityMode) of(name string, u float64) *readCapacity {
	switch m {
	case capacityTotal:
		return &readCapacity{TableName: name, CapacityUnits: u, ReadCapacityUnits: u}
	case capacityIndexes:
		return &readCapacity{TableName: name, CapacityUnits: u, ReadCapacityUnits: u, Table: &readUnits{CapacityUnits: u, ReadCapacityUnits: u}}
	}
	return nil
}

func readLevel(consistent bool) coord.Level {
	if consistent {
		return coord.Quorum
	}
	return coord.One
}

// readParamsMix refuses a read that uses both expression parameters and
// their legacy counterparts (mixedParams), and expression names or values
// without an expression, in DynamoDB's words.
func readParamsMix(legacy, exprs []string, names map[string]string, values ddb.Item) error {
	if err := mixedParams(legacy, exprs); err != nil {
		return err
	}
	if names != nil && len(names) == 0 {
		return validationf("ExpressionAttributeNames must not be empty")
	}
	if values != nil && len(values) == 0 {
		return validationf("ExpressionAttributeValues must not be empty")
	}
	if len(exprs) == 0 {
		if names != nil {
			return validationf("ExpressionAttributeNames can only be specified when using expressions")
		}
		if values != nil {
			return validationf("ExpressionAttributeValues can only be specified when using expressions")
		}
	}
	return nil
}

// present lists the names whose flag is set, in order.
func present(pairs ...any) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1].(bool) {
			out = append(out, pairs[i].(string))
		}
	}
	return out
}

// readProjection parses ProjectionExpression or AttributesToGet (nil:
// neither).
func readProjection(pe *string, attrs []string, p *expr.Params) (*expr.Projection, error) {
	switch {
	case pe != nil:
		return expr.ParseProjection(*pe, p)
	case attrs != nil:
		if len(attrs) == 0 {
			return nil, validationf("1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy constraint: Member must have length greater than or equal to 1")
		}
		seen := map[string]bool{}
		for _, a := range attrs {
			if seen[a] {
				return nil, validationf("One or more parameter values were invalid: Duplicate value in attribute name: %s", a)
			}
			seen[a] = true
		}
		return expr.FromAttributesToGet(attrs)
	}
	return nil, nil
}

// GetItem

type getItemInput struct {
	TableName                string
	Key                      ddb.Item
	ConsistentRead           bool
	ProjectionExpression     *string
	AttributesToGet          []string
	ExpressionAttributeNames map[string]string
	ReturnConsumedCapacity   string
}

type getItemOutput struct {
	Item             ddb.Item      `json:",omitzero"`
	ConsumedCapacity *readCapacity `json:",omitempty"`
}

func getItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in getItemInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.Key == nil {
		return nil, validationf("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null")
	}
	cm, err := parseCapacityMode(in.ReturnConsumedCapacity)
	if err != nil {
		return nil, err
	}
	if err := readParamsMix(present("AttributesToGet", in.AttributesToGet != nil),
		present("ProjectionExpression", in.ProjectionExpression != nil), in.ExpressionAttributeNames, nil); err != nil {
		return nil, err
	}
	p := expr.NewParams(in.ExpressionAttributeNames, nil)
	proj, err := readProjection(in.ProjectionExpression, in.AttributesToGet, p)
	if err != nil {
		return nil, err
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	key, err := t.storageKey(in.Key, true)
	if err != nil {
		return nil, err
	}
	rec, err := h.b.Coordinator().Read(ctx, key, readLevel(in.ConsistentRead))
	if err != nil {
		return nil, err
	}
	it, err := t.decodeRecord(rec, time.Now())
	if err != nil {
		return nil, err
	}
	out := getItemOutput{ConsumedCapacity: cm.of(t.Name, units(it.Size(), in.ConsistentRead))}
	if it != nil {
		out.Item = proj.Apply(it)
	}
	return out, nil
}

// BatchGetItem

type keysAndAttributes struct {
	Keys                     []ddb.Item
	ProjectionExpression     *string           `json:",omitempty"`
	AttributesToGet          []string          `json:",omitempty"`
	ConsistentRead           *bool             `json:",omitempty"`
	ExpressionAttributeNames map[string]string `json:",omitempty"`
}

type batchGetItemInput struct {
	RequestItems           map[string]*keysAndAttributes
	ReturnConsumedCapacity string
}

type batchGetItemOutput struct {
	Responses        map[string][]ddb.Item
	UnprocessedKeys  map[string]*keysAndAttributes
	ConsumedCapacity []*readCapacity `json:",omitempty"`
}

// batchGetTable is one table's share of a BatchGetItem.
type batchGetTable struct {
	name       string
	req        *keysAndAttributes
	t          *table
	proj       *expr.Projection
	keys       []*storagev1.Key
	recs       []*storagev1.Record
	failed     []bool // failed[i]: keys[i] could not be read (unavailable)
	unavail    error  // why, for one of them
	consistent bool
}

func batchGetItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in batchGetItemInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	cm, err := parseCapacityMode(in.ReturnConsumedCapacity)
	if err != nil {
		return nil, err
	}
	if len(in.RequestItems) == 0 {
		return nil, validationf("1 validation error detected: Value '{}' at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	total := 0
	for _, name := range sortedNames(in.RequestItems) {
		req := in.RequestItems[name]
		if req == nil || len(req.Keys) == 0 {
			return nil, validationf("1 validation error detected: Value '[]' at 'requestItems.%s.member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1", name)
		}
		total += len(req.Keys)
	}
	if total > batchGetMaxKeys {
		return nil, validationf("Too many items requested for the BatchGetItem call")
	}
	var tables []*batchGetTable
	for _, name := range sortedNames(in.RequestItems) {
		req := in.RequestItems[name]
		bt := &batchGetTable{name: name, req: req, consistent: req.ConsistentRead != nil && *req.ConsistentRead}
		if err := readParamsMix(present("AttributesToGet", req.AttributesToGet != nil),
			present("ProjectionExpression", req.ProjectionExpression != nil), req.ExpressionAttributeNames, nil); err != nil {
			return nil, err
		}
		p := expr.NewParams(req.ExpressionAttributeNames, nil)
		if bt.proj, err = readProjection(req.ProjectionExpression, req.AttributesToGet, p); err != nil {
			return nil, err
		}
		if err := p.Check(); err != nil {
			return nil, err
		}
		if bt.t, err = h.table(name); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, k := range req.Keys {
			key, err := bt.t.storageKey(k, true)
			if err != nil {
				return nil, err
			}
			id := string(coord.ScanPosition(key))
			if seen[id] {
				return nil, validationf("Provided list of item keys contains duplicates")
			}
			seen[id] = true
			bt.keys = append(bt.keys, key)
		}
		tables = append(tables, bt)
	}
	co := h.b.Coordinator()
	var wg sync.WaitGroup
	errs := make([]error, len(tables))
	for i, bt := range tables {
		wg.Go(func() { errs[i] = bt.read(ctx, co) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Unavailable keys are UnprocessedKeys, unless no key could be read:
	// then the call fails as unavailable (as DynamoDB fails a BatchGetItem
	// that is throttled on every key).
	failed := 0
	var unavail error
	for _, bt := range tables {
		for _, f := range bt.failed {
			if f {
				failed++
			}
		}
		if bt.unavail != nil {
			unavail = bt.unavail
		}
	}
	if failed == total {
		return nil, unavail
	}
	out := batchGetItemOutput{Responses: map[string][]ddb.Item{}, UnprocessedKeys: map[string]*keysAndAttributes{}}
	now := time.Now()
	size := 0
	for _, bt := range tables {
		items := []ddb.Item{}
		read := 0
		var left []ddb.Item
		for i, rec := range bt.recs {
			if bt.failed[i] {
				left = append(left, bt.req.Keys[i])
				continue
			}
			it, err := bt.t.decodeRecord(rec, now)
			if err != nil {
				return nil, err
			}
			n := it.Size()
			if size+n > batchGetMaxBytes {
				left = append(left, bt.req.Keys[i])
				continue
			}
			size += n
			read += int(math.Max(1, math.Ceil(float64(n)/readUnitBytes)))
			if it != nil {
				items = append(items, bt.proj.Apply(it))
			}
		}
		out.Responses[bt.name] = items
		if len(left) > 0 {
			un := *bt.req
			un.Keys = left
			out.UnprocessedKeys[bt.name] = &un
		}
		if read > 0 {
			u := float64(read)
			if !bt.consistent {
				u /= 2
			}
			if c := cm.of(bt.name, u); c != nil {
				out.ConsumedCapacity = append(out.ConsumedCapacity, c)
			}
		}
	}
	return out, nil
}

// read reads the table's keys with one BatchRead. When that fails for
// lack of replicas, each key is read on its own so that only the keys
// whose replicas are down are left unprocessed.
func (bt *batchGetTable) read(ctx context.Context, co *coord.Coordinator) error {
	lvl := readLevel(bt.consistent)
	bt.failed = make([]bool, len(bt.keys))
	recs, err := co.BatchRead(ctx, bt.keys, lvl)
	if err == nil {
		bt.recs = recs
		return nil
	}
	if !errors.Is(err, coord.ErrUnavailable) {
		return err
	}
	bt.recs = make([]*storagev1.Record, len(bt.keys))
	errs := make([]error, len(bt.keys))
	var wg sync.WaitGroup
	for i, k := range bt.keys {
		wg.Go(func() {
			rec, err := co.Read(ctx, k, lvl)
			switch {
			case errors.Is(err, coord.ErrUnavailable):
				bt.failed[i] = true
				errs[i] = err
			case err != nil:
				errs[i] = err
			default:
				bt.recs[i] = rec
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if bt.failed[i] {
			bt.unavail, errs[i] = err, nil
		}
	}
	return errors.Join(errs...)
}

// Query and Scan

// pageInput are the parameters Query and Scan share.
type pageInput struct {
	TableName                 string
	IndexName                 *string
	Select                    string
	Limit                     *int64
	ConsistentRead            bool
	ExclusiveStartKey         ddb.Item
	ProjectionExpression      *string
	AttributesToGet           []string
	FilterExpression          *string
	ConditionalOperator       string
	ExpressionAttributeNames  map[string]string
	ExpressionAttributeValues ddb.Item
	ReturnConsumedCapacity    string
}

type pageOutput struct {
	Items            []ddb.Item    `json:",omitzero"`
	Count            int           `json:"Count"`
	ScannedCount     int           `json:"ScannedCount"`
	LastEvaluatedKey ddb.Item      `json:",omitempty"`
	ConsumedCapacity *readCapacity `json:",omitempty"`
}

// page collects one Query or Scan page: it evaluates records in order
// until Limit records were evaluated or the items read reach pageBytes.
type page struct {
	t          *table
	filter     *expr.Condition
	proj       *expr.Projection
	countOnly  bool
	limit      int // 0: none
	consistent bool
	cm         capacityMode
	now        time.Time

	items   []ddb.Item
	count   int
	scanned int
	size    int
	last    *storagev1.Key // the last record evaluated
	full    bool
}

// add evaluates one record and reports whether the page is full.
func (pg *page) add(rec *storagev1.Record) (bool, error) {
	it, err := pg.t.decodeRecord(rec, pg.now)
	if err != nil || it == nil {
		return pg.full, err
	}
	pg.scanned++
	pg.size += it.Size()
	pg.last = rec.GetKey()
	if pg.filter.Match(it) {
		pg.count++
		if !pg.countOnly {
			pg.items = append(pg.items, pg.proj.Apply(it))
		}
	}
	pg.full = (pg.limit > 0 && pg.scanned >= pg.limit) || pg.size >= pageBytes
	return pg.full, nil
}

// output is the page's response; more says whether records may follow the
// last one evaluated (then LastEvaluatedKey is its key).
func (pg *page) output(more bool) (*pageOutput, error) {
	out := &pageOutput{Count: pg.count, ScannedCount: pg.scanned,
		ConsumedCapacity: pg.cm.of(pg.t.Name, units(pg.size, pg.consistent))}
	if !pg.countOnly {
		out.Items = pg.items
		if out.Items == nil {
			out.Items = []ddb.Item{}
		}
	}
	if more && pg.last != nil {
		k, err := pg.t.Keys.ItemKey(pg.last.GetPartitionKey(), pg.last.GetSortKey())
		if err != nil {
			return nil, internalf("table %s: stored key is not a key of the table's schema: %v", pg.t.Name, err)
		}
		out.LastEvaluatedKey = k
	}
	return out, nil
}

// newPage validates and parses what Query and Scan share: Select, Limit,
// the projection and the filter (FilterExpression, or the legacy filter
// named legacyFilterName). keyExpr is Query's KeyConditionExpression and
// legacy the caller's other legacy parameters in use (for mixedParams).
func (h *Handler) newPage(in *pageInput, op string, keyExpr *string, legacy []string, legacyFilter map[string]readCondition, legacyFilterName string, p *expr.Params) (*page, error) {
	cm, err := parseCapacityMode(in.ReturnConsumedCapacity)
	if err != nil {
		return nil, err
	}
	if in.IndexName != nil {
		return nil, validationf("The table does not have the specified index: %s (Veltrix has no secondary indexes yet)", *in.IndexName)
	}
	if in.Limit != nil && *in.Limit < 1 {
		return nil, validationf("1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1", *in.Limit)
	}
	exprs := present("KeyConditionExpression", keyExpr != nil, "FilterExpression", in.FilterExpression != nil,
		"ProjectionExpression", in.ProjectionExpression != nil)
	legacy = append(legacy, present("AttributesToGet", in.AttributesToGet != nil, legacyFilterName, legacyFilter != nil,
		"ConditionalOperator", in.ConditionalOperator != "")...)
	if err := readParamsMix(legacy, exprs, in.ExpressionAttributeNames, in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	pg := &page{consistent: in.ConsistentRead, cm: cm, now: time.Now()}
	if in.Limit != nil {
		pg.limit = int(min(*in.Limit, math.MaxInt32))
	}
	if pg.proj, err = readProjection(in.ProjectionExpression, in.AttributesToGet, p); err != nil {
		return nil, err
	}
	switch {
	case in.FilterExpression != nil:
		pg.filter, err = expr.ParseCondition(expr.KindFilter, *in.FilterExpression, p)
	case legacyFilter != nil:
		pg.filter, err = expr.FromFilter(legacyFilterName, readConditions(legacyFilter), in.ConditionalOperator)
	case in.ConditionalOperator != "":
		err = validationf("ConditionalOperator can only be used when %s is present", legacyFilterName)
	}
	if err != nil {
		return nil, err
	}
	projParam := "AttributesToGet"
	if in.ProjectionExpression != nil {
		projParam = "ProjectionExpression"
	}
	// DynamoDB's words, captured from it: Query wraps some of them in the
	// "1 validation error detected" envelope where Scan does not, and says
	// "Querying" for both.
	envelope := ""
	if op == "Query" {
		envelope = "1 validation error detected: "
	}
	switch in.Select {
	case "":
	case "ALL_ATTRIBUTES":
		if pg.proj != nil {
			return nil, validationf("Cannot specify the %s when choosing to get ALL_ATTRIBUTES", projParam)
		}
	case "COUNT":
		if pg.proj != nil {
			return nil, validationf("%sCannot specify the %s when choosing to get only the Count", envelope, projParam)
		}
		pg.countOnly = true
	case "SPECIFIC_ATTRIBUTES":
		if pg.proj == nil {
			return nil, validationf("%sMust specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES", envelope)
		}
	case "ALL_PROJECTED_ATTRIBUTES":
		if pg.proj != nil {
			return nil, validationf("Cannot specify the %s when choosing to get ALL_PROJECTED_ATTRIBUTES", projParam)
		}
		return nil, validationf("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
	default:
		return nil, validationf("1 validation error detected: Value '%s' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]", in.Select)
	}
	return pg, nil
}

// Query

type queryInput struct {
	pageInput
	KeyConditionExpression *string
	KeyConditions          map[string]readCondition
	QueryFilter            map[string]readCondition
	ScanIndexForward       *bool
}

func query(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in queryInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	p := expr.NewParams(in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	// KeyConditions goes with expression parameters (DynamoDB accepts
	// KeyConditions with a FilterExpression), not with
	// KeyConditionExpression.
	pg, err := h.newPage(&in.pageInput, "Query", in.KeyConditionExpression,
		present("KeyConditions", in.KeyConditions != nil && in.KeyConditionExpression != nil), in.QueryFilter, "QueryFilter", p)
	if err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	pg.t = t
	// Key attributes are for the key condition (Scan filters may use them).
	for _, a := range pg.filter.Attributes() {
		if a == t.Keys.PartitionKey.Name || (t.Keys.HasSortKey() && a == t.Keys.SortKey.Name) {
			what := "Filter Expression"
			if in.QueryFilter != nil {
				what = "QueryFilter"
			}
			return nil, validationf("%s can only contain non-primary key attributes: Primary key attribute: %s", what, a)
		}
	}
	kc, pk, err := in.keyCondition(t, p)
	if err != nil {
		return nil, err
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	r, err := sortRange(t, kc.Sort)
	if err != nil {
		return nil, err
	}
	reverse := in.ScanIndexForward != nil && !*in.ScanIndexForward
	q := coord.QueryOptions{TableID: t.ID, PartitionKey: pk, Start: r.start, End: r.end, Prefix: r.prefix, Reverse: reverse}
	if in.ExclusiveStartKey != nil {
		key, err := t.storageKey(in.ExclusiveStartKey, true)
		if err != nil {
			return nil, validationf("The provided starting key is invalid: %s", toError(err).Message)
		}
		if !bytes.Equal(key.GetPartitionKey(), pk) {
			return nil, validationf("The provided starting key is outside query boundaries based on provided conditions")
		}
		sk := key.GetSortKey()
		if !r.contains(sk) {
			return nil, validationf("The provided starting key does not match the range key predicate")
		}
		if !t.Keys.HasSortKey() {
			// The partition key's only item was returned already.
			return pg.output(false)
		}
		if reverse {
			q.End = sk
		} else {
			q.Start = append(bytes.Clone(sk), 0)
		}
	}
	q.Partition = placement.PartitionOf(t.ID, pk, t.view.Partitions)
	co := h.b.Coordinator()
	lvl := readLevel(in.ConsistentRead)
	for {
		if q.Start != nil && q.End != nil && bytes.Compare(q.Start, q.End) >= 0 {
			return pg.output(false)
		}
		q.Limit = queryFirstBatch
		if pg.scanned > 0 {
			avg := max(1, pg.size/pg.scanned)
			q.Limit = min(queryBatch, (pageBytes-pg.size)/avg+1)
		}
		if pg.limit > 0 {
			q.Limit = min(q.Limit, pg.limit-pg.scanned)
		}
		recs, next, err := co.Query(ctx, q, lvl)
		if err != nil {
			return nil, err
		}
		for i, rec := range recs {
			full, err := pg.add(rec)
			if err != nil {
				return nil, err
			}
			if full {
				return pg.output(i < len(recs)-1 || next != nil)
			}
		}
		if next == nil || !t.Keys.HasSortKey() {
			return pg.output(false)
		}
		if reverse {
			q.End = next
		} else {
			q.Start = append(bytes.Clone(next), 0)
		}
	}
}

// keyCondition parses the query's key condition and returns it with the
// stored bytes of its partition key.
func (in *queryInput) keyCondition(t *table, p *expr.Params) (*expr.KeyCondition, []byte, error) {
	var kc *expr.KeyCondition
	var err error
	switch {
	case in.KeyConditionExpression != nil:
		kc, err = expr.ParseKeyCondition(*in.KeyConditionExpression, p, t.Keys)
	case in.KeyConditions != nil:
		kc, err = expr.FromKeyConditions(readConditions(in.KeyConditions), t.Keys)
	default:
		err = validationf("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
	}
	if err != nil {
		return nil, nil, err
	}
	pk, err := ddb.KeyBytes(ddb.Item{t.Keys.PartitionKey.Name: kc.PartitionKey}, t.Keys.PartitionKey)
	if err != nil {
		return nil, nil, validationf("Invalid KeyConditionExpression: partition key %s: %v", t.Keys.PartitionKey.Name, err)
	}
	return kc, pk, nil
}

// sortBounds is a sort key condition as a range of stored sort keys:
// [start, end) (nil: unbounded) with prefix.
type sortBounds struct {
	start, end, prefix []byte
}

func (r sortBounds) contains(sk []byte) bool {
	return (r.start == nil || bytes.Compare(sk, r.start) >= 0) &&
		(r.end == nil || bytes.Compare(sk, r.end) < 0) &&
		bytes.HasPrefix(sk, r.prefix)
}

// sortRange translates a sort key condition to stored sort key bounds:
// stored sort keys (ddb.SortKeyBytes) order as DynamoDB orders the values,
// and k+"\x00" is the first key after k.
func sortRange(t *table, sc *expr.SortCondition) (sortBounds, error) {
	var r sortBounds
	if sc == nil {
		return r, nil
	}
	if !t.Keys.HasSortKey() {
		return r, validationf("Query condition missed key schema element: the table has no sort key")
	}
	want := 1
	if sc.Op == expr.SortBetween {
		want = 2
	}
	if len(sc.Values) != want {
		return r, internalf("key condition: %d values for a sort key operator that takes %d", len(sc.Values), want)
	}
	ks := make([][]byte, len(sc.Values))
	for i, v := range sc.Values {
		if sc.Op == expr.SortBeginsWith && v.Type() == ddb.TypeN {
			return r, validationf("Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N")
		}
		b, err := ddb.SortKeyBytes(ddb.Item{t.Keys.SortKey.Name: v}, t.Keys.SortKey)
		if err != nil {
			return r, validationf("One or more parameter values were invalid: Condition parameter type does not match schema type")
		}
		ks[i] = b
	}
	after := func(b []byte) []byte { return append(bytes.Clone(b), 0) }
	switch sc.Op {
	case expr.SortEQ:
		r.start, r.end = ks[0], after(ks[0])
	case expr.SortLT:
		r.end = ks[0]
	case expr.SortLE:
		r.end = after(ks[0])
	case expr.SortGT:
		r.start = after(ks[0])
	case expr.SortGE:
		r.start = ks[0]
	case expr.SortBetween:
		if bytes.Compare(ks[0], ks[1]) > 0 {
			return r, validationf("Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {%s}, upper bound operand: AttributeValue: {%s}",
				describeValue(sc.Values[0]), describeValue(sc.Values[1]))
		}
		r.start, r.end = ks[0], after(ks[1])
	case expr.SortBeginsWith:
		r.prefix = ks[0]
	default:
		return r, internalf("key condition: unknown sort key operator %d", sc.Op)
	}
	return r, nil
}

// describeValue is a value as DynamoDB's messages show it: "S:abc".
func describeValue(v ddb.Value) string {
	b, err := ddb.MarshalValueDynamoDBJSON(v)
	if err != nil {
		return v.Type().String()
	}
	s := strings.TrimSuffix(strings.TrimPrefix(string(b), "{"), "}")
	return strings.ReplaceAll(s, `"`, "")
}

// Scan

type scanInput struct {
	pageInput
	ScanFilter    map[string]readCondition
	Segment       *int64
	TotalSegments *int64
}

func scan(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in scanInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	seg, total, err := segment(in.Segment, in.TotalSegments)
	if err != nil {
		return nil, err
	}
	p := expr.NewParams(in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	pg, err := h.newPage(&in.pageInput, "Scan", nil, nil, in.ScanFilter, "ScanFilter", p)
	if err != nil {
		return nil, err
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	pg.t = t
	parts := uint64(t.view.Partitions)
	first := uint32(seg * parts / total)
	end := uint32((seg + 1) * parts / total)
	var after []byte
	if in.ExclusiveStartKey != nil {
		key, err := t.storageKey(in.ExclusiveStartKey, true)
		if err != nil {
			return nil, validationf("The provided starting key is invalid: %s", toError(err).Message)
		}
		if key.GetPartition() < first || key.GetPartition() >= end {
			return nil, validationf("The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: %d Segment: %d", total, seg)
		}
		first, after = key.GetPartition(), coord.ScanPosition(key)
	}
	sc := &segmentScan{co: h.b.Coordinator(), t: t, lvl: readLevel(in.ConsistentRead), pg: pg}
	return sc.run(ctx, first, end, after)
}

// Scan read-ahead: partitions of a sparse table hold little each, and one
// partition streamed after the other costs a round trip per partition, so
// a Scan streams the partitions after the one it reads in parallel, as
// many as prefetchMax, while the partitions it finishes stay small
// (below prefetchSmall); a partition with more data stops the read-ahead,
// so a dense table is not read past the page.
const (
	prefetchMax   = 32
	prefetchSmall = 64 << 10
	// prefetchBytes bounds what one partition read ahead buffers; the
	// rest of it is streamed when the scan gets there.
	prefetchBytes = 256 << 10
)

// segmentScan reads one Scan page from partitions [first, end).
type segmentScan struct {
	co  *coord.Coordinator
	t   *table
	lvl coord.Level
	pg  *page
}

// fetched is one partition read ahead: its records up to a budget.
type fetched struct {
	recs   []*storagev1.Record
	resume []byte // position after the last record streamed
	done   bool   // streamed to the partition's end
	size   int
	err    error
	ready  chan struct{}
}

// fetch streams partition part from after into f until the partition ends
// or f holds maxBytes or maxRecs (0: any number) records.
func (sc *segmentScan) fetch(ctx context.Context, part uint32, after []byte, maxBytes, maxRecs int, f *fetched) {
	defer close(f.ready)
	f.resume = after
	f.err = sc.co.ScanPartition(ctx, sc.t.view, part, sc.t.ID, after, sc.lvl, func(recs []*storagev1.Record, resume []byte) (bool, error) {
		f.recs = append(f.recs, recs...)
		f.resume = resume
		for _, r := range recs {
			f.size += len(r.GetValue())
		}
		return f.size < maxBytes && (maxRecs == 0 || len(f.recs) < maxRecs), nil
	})
	if f.err == nil && (f.size < maxBytes && (maxRecs == 0 || len(f.recs) < maxRecs)) {
		f.done = true
	}
}

func (sc *segmentScan) run(ctx context.Context, first, end uint32, after []byte) (any, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	ahead := map[uint32]*fetched{}
	window := 1
	for part := first; part < end; part++ {
		// Read ahead the next partitions of the window.
		for p := part + 1; p < end && p <= part+uint32(window-1); p++ {
			if ahead[p] != nil {
				continue
			}
			f := &fetched{ready: make(chan struct{})}
			ahead[p] = f
			maxRecs := 0
			if sc.pg.limit > 0 {
				maxRecs = sc.pg.limit
			}
			wg.Go(func() { sc.fetch(ctx, p, nil, prefetchBytes, maxRecs, f) })
		}
		f := ahead[part]
		delete(ahead, part)
		if f != nil {
			<-f.ready
			if f.err != nil {
				return nil, f.err
			}
			for _, rec := range f.recs {
				full, err := sc.pg.add(rec)
				if err != nil {
					return nil, err
				}
				if full {
					return sc.pg.output(true)
				}
			}
			if f.done {
				if f.size < prefetchSmall {
					window = min(window*2, prefetchMax)
				} else {
					window = 1
				}
				continue
			}
			after = f.resume
		}
		// Read the partition (or its rest) here, record by record.
		size := 0
		var addErr error
		err := sc.co.ScanPartition(ctx, sc.t.view, part, sc.t.ID, after, sc.lvl, func(recs []*storagev1.Record, _ []byte) (bool, error) {
			for _, rec := range recs {
				size += len(rec.GetValue())
				full, err := sc.pg.add(rec)
				if err != nil {
					addErr = err
					return false, nil
				}
				if full {
					return false, nil
				}
			}
			return true, nil
		})
		if err == nil {
			err = addErr
		}
		if err != nil {
			return nil, err
		}
		if sc.pg.full {
			return sc.pg.output(true)
		}
		after = nil
		if f == nil && size < prefetchSmall {
			window = min(window*2, prefetchMax)
		} else {
			window = 1
		}
	}
	return sc.pg.output(false)
}

// segment validates Segment and TotalSegments (both or neither).
func segment(seg, total *int64) (uint64, uint64, error) {
	switch {
	case seg == nil && total == nil:
		return 0, 1, nil
	case seg == nil:
		return 0, 0, validationf("The Segment parameter is required but was not present in the request when parameter TotalSegments is present")
	case total == nil:
		return 0, 0, validationf("The TotalSegments parameter is required but was not present in the request when Segment parameter is present")
	}
	var errs []string
	if *total < 1 {
		errs = append(errs, fmt.Sprintf("Value '%d' at 'totalSegments' failed to satisfy constraint: Member must have value greater than or equal to 1", *total))
	}
	if *total > maxTotalSegments {
		errs = append(errs, fmt.Sprintf("Value '%d' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to %d", *total, maxTotalSegments))
	}
	if *seg < 0 {
		errs = append(errs, fmt.Sprintf("Value '%d' at 'segment' failed to satisfy constraint: Member must have value greater than or equal to 0", *seg))
	}
	if *seg > maxTotalSegments-1 {
		errs = append(errs, fmt.Sprintf("Value '%d' at 'segment' failed to satisfy constraint: Member must have value less than or equal to %d", *seg, maxTotalSegments-1))
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return 0, 0, validationf("%d validation error%s detected: %s", len(errs), plural(len(errs)), strings.Join(errs, "; "))
	}
	if *seg >= *total {
		return 0, 0, validationf("The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: %d is not less than TotalSegments: %d", *seg, *total)
	}
	return uint64(*seg), uint64(*total), nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
