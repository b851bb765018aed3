package dynamodb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// writeOps are the operations of this file.
var writeOps = map[string]opFunc{
	"PutItem":        putItem,
	"DeleteItem":     deleteItem,
	"UpdateItem":     updateItem,
	"BatchWriteItem": batchWriteItem,
}

// maxWriteAttempts bounds the read-evaluate-write rounds of one write
// whose result keeps being superseded by newer writes from outside the
// item's lock.
const maxWriteAttempts = 5

// maxBatchWrites is DynamoDB's BatchWriteItem limit.
const maxBatchWrites = 25

// expectedWire is one entry of the legacy Expected parameter on the wire.
type expectedWire struct {
	Value              json.RawMessage   `json:"Value"`
	Exists             *bool             `json:"Exists"`
	ComparisonOperator string            `json:"ComparisonOperator"`
	AttributeValueList []json.RawMessage `json:"AttributeValueList"`
}

// attributeUpdateWire is one entry of the legacy AttributeUpdates.
type attributeUpdateWire struct {
	Action string          `json:"Action"`
	Value  json.RawMessage `json:"Value"`
}

// writeParams are the parameters PutItem, DeleteItem and UpdateItem share.
type writeParams struct {
	TableName                           string                  `json:"TableName"`
	ConditionExpression                 *string                 `json:"ConditionExpression"`
	Expected                            map[string]expectedWire `json:"Expected"`
	ConditionalOperator                 string                  `json:"ConditionalOperator"`
	ExpressionAttributeNames            map[string]string       `json:"ExpressionAttributeNames"`
	ExpressionAttributeValues           ddb.Item                `json:"ExpressionAttributeValues"`
	ReturnValues                        string                  `json:"ReturnValues"`
	ReturnValuesOnConditionCheckFailure string                  `json:"ReturnValuesOnConditionCheckFailure"`
	ReturnConsumedCapacity              string                  `json:"ReturnConsumedCapacity"`
	ReturnItemCollectionMetrics         string                  `json:"ReturnItemCollectionMetrics"`
}

// consumedCapacity is DynamoDB's ConsumedCapacity.
type consumedCapacity struct {
	TableName     string            `json:"TableName"`
	CapacityUnits float64           `json:"CapacityUnits"`
	Table         *capacityUnitsOut `json:"Table,omitempty"`
}

type capacityUnitsOut struct {
	CapacityUnits float64 `json:"CapacityUnits"`
}

// writeOutput is the response of PutItem, DeleteItem and UpdateItem.
type writeOutput struct {
	Attributes       ddb.Item          `json:"Attributes,omitempty"`
	ConsumedCapacity *consumedCapacity `json:"ConsumedCapacity,omitempty"`
}

// writeUnits is what a write of items of these sizes costs in DynamoDB:
// one write capacity unit per started KB of the larger item, at least 1.
func writeUnits(sizes ...int) float64 {
	n := 0
	for _, s := range sizes {
		n = max(n, s)
	}
	return float64(max(1, (n+1023)/1024))
}

// capacity is the ConsumedCapacity to report for mode (NONE, TOTAL,
// INDEXES), or nil.
func capacity(mode, table string, units float64) *consumedCapacity {
	switch mode {
	case "TOTAL":
		return &consumedCapacity{TableName: table, CapacityUnits: units}
	case "INDEXES":
		return &consumedCapacity{TableName: table, CapacityUnits: units, Table: &capacityUnitsOut{CapacityUnits: units}}
	}
	return nil
}

func checkEnum(field, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return validationf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", v, field, strings.Join(allowed, ", "))
}

// checkReporting validates ReturnConsumedCapacity and
// ReturnItemCollectionMetrics (accepted; no item collections are reported:
// Veltrix has no local secondary indexes).
func checkReporting(consumed, metrics string) error {
	if err := checkEnum("returnConsumedCapacity", consumed, "INDEXES", "TOTAL", "NONE"); err != nil {
		return err
	}
	return checkEnum("returnItemCollectionMetrics", metrics, "SIZE", "NONE")
}

// mixedParams refuses requests that combine legacy and expression
// parameters, in DynamoDB's words.
func mixedParams(legacy, expression []string) error {
	if len(legacy) > 0 && len(expression) > 0 {
		return validationf("Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {%s} Expression parameters: {%s}",
			strings.Join(legacy, ", "), strings.Join(expression, ", "))
	}
	return nil
}

// decodeValue decodes one legacy-parameter value; where names it.
func decodeValue(raw json.RawMessage, where string) (ddb.Value, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	v, err := ddb.UnmarshalValueDynamoDBJSON(raw)
	if err != nil {
		return nil, validationf("One or more parameter values were invalid: %s: %v", where, err)
	}
	return v, nil
}

// legacyExpected converts the wire form of Expected.
func legacyExpected(in map[string]expectedWire) (map[string]expr.ExpectedValue, error) {
	out := make(map[string]expr.ExpectedValue, len(in))
	for _, name := range sortedNames(in) {
		w := in[name]
		ev := expr.ExpectedValue{Exists: w.Exists, ComparisonOperator: w.ComparisonOperator}
		var err error
		if ev.Value, err = decodeValue(w.Value, "Expected."+name+".Value"); err != nil {
			return nil, err
		}
		for i, raw := range w.AttributeValueList {
			v, err := decodeValue(raw, fmt.Sprintf("Expected.%s.AttributeValueList[%d]", name, i))
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, validationf("One or more parameter values were invalid: Expected.%s.AttributeValueList[%d] is null", name, i)
			}
			ev.AttributeValueList = append(ev.AttributeValueList, v)
		}
		out[name] = ev
	}
	return out, nil
}

// oldOnlyReturnValues checks the ReturnValues of PutItem and DeleteItem,
// which return at most the old item.
func oldOnlyReturnValues(s string) error {
	rv, err := expr.ParseReturnValues(s)
	if err != nil {
		return err
	}
	if rv != expr.ReturnNone && rv != expr.ReturnAllOld {
		return validationf("ReturnValues can only be ALL_OLD or NONE")
	}
	return nil
}

// prepared is a validated write request's shared parts.
type prepared struct {
	t        *table
	cond     *expr.Condition
	rv       expr.ReturnValues
	failOld  bool // ReturnValuesOnConditionCheckFailure ALL_OLD
	consumed string
}

// prepare resolves the table and parses the condition (expression or
// Expected) of a single-item write; update, when set, parses the
// request's update the same way before the parameters are checked.
func (h *Handler) prepare(in *writeParams, legacy, expression []string, update func(p *expr.Params) error) (*prepared, error) {
	if in.Expected != nil {
		legacy = append(legacy, "Expected")
	}
	if in.ConditionExpression != nil {
		expression = append(expression, "ConditionExpression")
	}
	if err := mixedParams(legacy, expression); err != nil {
		return nil, err
	}
	if in.ExpressionAttributeNames != nil && len(in.ExpressionAttributeNames) == 0 {
		return nil, validationf("ExpressionAttributeNames must not be empty")
	}
	if in.ExpressionAttributeValues != nil && len(in.ExpressionAttributeValues) == 0 {
		return nil, validationf("ExpressionAttributeValues must not be empty")
	}
	if len(expression) == 0 {
		if in.ExpressionAttributeNames != nil {
			return nil, validationf("ExpressionAttributeNames can only be specified when using expressions")
		}
		if in.ExpressionAttributeValues != nil {
			return nil, validationf("ExpressionAttributeValues can only be specified when using expressions")
		}
	}
	if in.ConditionalOperator != "" && in.Expected == nil {
		return nil, validationf("ConditionalOperator can only be used when Expected or QueryFilter or ScanFilter are present")
	}
	if err := checkEnum("returnValuesOnConditionCheckFailure", in.ReturnValuesOnConditionCheckFailure, "ALL_OLD", "NONE"); err != nil {
		return nil, err
	}
	if err := checkReporting(in.ReturnConsumedCapacity, in.ReturnItemCollectionMetrics); err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	pr := &prepared{t: t, failOld: in.ReturnValuesOnConditionCheckFailure == "ALL_OLD", consumed: in.ReturnConsumedCapacity}
	pr.rv, _ = expr.ParseReturnValues(in.ReturnValues) // checked by the caller
	p := expr.NewParams(in.ExpressionAttributeNames, map[string]ddb.Value(in.ExpressionAttributeValues))
	switch {
	case in.ConditionExpression != nil:
		if strings.TrimSpace(*in.ConditionExpression) == "" {
			return nil, validationf("Invalid ConditionExpression: The expression can not be empty;")
		}
		if pr.cond, err = expr.ParseCondition(expr.KindCondition, *in.ConditionExpression, p); err != nil {
			return nil, err
		}
	case in.Expected != nil:
		exp, err := legacyExpected(in.Expected)
		if err != nil {
			return nil, err
		}
		if pr.cond, err = expr.FromExpected(exp, in.ConditionalOperator); err != nil {
			return nil, err
		}
	}
	if update != nil {
		if err := update(p); err != nil {
			return nil, err
		}
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	return pr, nil
}

// rmw is one single-item write: the item at key becomes next(old) (nil:
// deleted) if cond holds on the current item.
type rmw struct {
	t    *table
	key  *storagev1.Key
	cond *expr.Condition
	// readOld: the result depends on the current item (a condition, an
	// update, or ReturnValues returning it), so the write is a
	// read-modify-write.
	readOld bool
	failOld bool
	next    func(old ddb.Item) (ddb.Item, error)
}

// ownerPrefix and ownerSeq make the item-lock owners of this process
// unique.
var (
	ownerPrefix = func() string {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		return "dynamodb-" + hex.EncodeToString(b)
	}()
	ownerSeq atomic.Uint64
)

// isolationError refuses a read-modify-write on a forbid_rmw table.
func isolationError(t *table) error {
	return validationf("table %s has write isolation %s, which refuses read-modify-write operations (conditions, UpdateItem, ReturnValues needing the old item); change the table's write_isolation with AdminService.UpdateTable",
		t.Name, topology.IsolationForbidRMW)
}

// execute runs w under the table's write isolation (docs/design.md,
// "Write isolation") and returns the item before and after it.
//
// A read-modify-write reads the item at QUORUM, evaluates the condition,
// computes the new item and writes it at QUORUM with a version newer than
// the one read. Under always_use_lwt and only_rmw_uses_lwt it holds the
// item's lock throughout, so no other locked write of the item interleaves;
// a write from outside the lock that lands in between makes the result
// come back superseded, and the whole round is redone (at most
// maxWriteAttempts times). Under always_use_lwt plain puts and deletes take
// the lock too, and are redone with a newer version if superseded, so they
// order after every locked write that finished before them.
func (h *Handler) execute(ctx context.Context, w *rmw) (old, next ddb.Item, err error) {
	iso := w.t.Isolation()
	if w.readOld && iso == topology.IsolationForbidRMW {
		return nil, nil, isolationError(w.t)
	}
	co := h.b.Coordinator()
	locked := iso == topology.IsolationAlwaysLock || (w.readOld && iso == topology.IsolationOnlyRMW)
	var lk *coord.ItemLock
	if locked {
		owner := fmt.Sprintf("%s-%d", ownerPrefix, ownerSeq.Add(1))
		if lk, err = co.Acquire(ctx, w.key, owner); err != nil {
			if errors.Is(err, coord.ErrLockContended) {
				return nil, nil, throttledf("the item is being written by other requests (its lock in table %s is contended); retry", w.t.Name)
			}
			return nil, nil, err
		}
		defer lk.Unlock()
	}
	clock := h.b.Clock()
	var floor uint64 // the next version must be at least this
	for range maxWriteAttempts {
		now := time.Now()
		old = nil
		if w.readOld {
			rec, err := co.Read(ctx, w.key, coord.Quorum)
			if err != nil {
				return nil, nil, err
			}
			if rec != nil {
				floor = max(floor, rec.GetVersion()+1)
			}
			if old, err = w.t.decodeRecord(rec, now); err != nil {
				return nil, nil, err
			}
			if w.cond != nil && !w.cond.Match(old) {
				if w.failOld {
					return nil, nil, conditionFailed(old)
				}
				return nil, nil, conditionFailed(nil)
			}
		}
		if next, err = w.next(old); err != nil {
			return nil, nil, err
		}
		if w.readOld && old == nil && next == nil {
			return nil, nil, nil // nothing to delete: the item stays missing
		}
		version := clock.Now()
		if version < floor {
			_ = clock.Update(floor) // keep later versions of this router above it
			version = floor
		}
		rec := &storagev1.Record{Key: w.key, Version: version}
		if next == nil {
			rec.Tombstone = true
		} else {
			rec.Value = ddb.EncodeItem(next)
			rec.ExpireUnixNanos = w.t.expiry(next, now)
		}
		var outs []coord.Outcome
		if lk != nil {
			// By the routing the lock was taken by; a lease about to
			// end or a routing change is ErrLockContended (Throttling).
			outs, err = co.WriteLocked(ctx, lk, []*storagev1.Record{rec}, coord.Quorum)
		} else {
			outs, err = co.Write(ctx, []*storagev1.Record{rec}, coord.Quorum)
		}
		if err != nil {
			return nil, nil, err
		}
		if outs[0].Applied || !locked && !w.readOld {
			// A blind write outside any lock that a newer write
			// superseded is simply older in last-writer-wins order.
			return old, next, nil
		}
		floor = max(floor, outs[0].Current+1)
	}
	return nil, nil, throttledf("the item in table %s kept being overwritten by newer writes from outside its lock during %d attempts; retry", w.t.Name, maxWriteAttempts)
}

type putItemInput struct {
	writeParams
	Item ddb.Item `json:"Item"`
}

func putItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in putItemInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := oldOnlyReturnValues(in.ReturnValues); err != nil {
		return nil, err
	}
	pr, err := h.prepare(&in.writeParams, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	if in.Item == nil {
		return nil, validationf("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null")
	}
	key, err := pr.t.storageKey(in.Item, false)
	if err != nil {
		return nil, err
	}
	if err := pr.t.checkItemSize(in.Item); err != nil {
		return nil, err
	}
	old, _, err := h.execute(ctx, &rmw{
		t: pr.t, key: key, cond: pr.cond, failOld: pr.failOld,
		readOld: pr.cond != nil || pr.rv == expr.ReturnAllOld,
		next:    func(ddb.Item) (ddb.Item, error) { return in.Item, nil },
	})
	if err != nil {
		return nil, err
	}
	out := writeOutput{ConsumedCapacity: capacity(pr.consumed, pr.t.Name, writeUnits(old.Size(), in.Item.Size()))}
	if pr.rv == expr.ReturnAllOld {
		out.Attributes = old
	}
	return out, nil
}

type deleteItemInput struct {
	writeParams
	Key ddb.Item `json:"Key"`
}

func deleteItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in deleteItemInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := oldOnlyReturnValues(in.ReturnValues); err != nil {
		return nil, err
	}
	pr, err := h.prepare(&in.writeParams, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	if in.Key == nil {
		return nil, validationf("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null")
	}
	key, err := pr.t.storageKey(in.Key, true)
	if err != nil {
		return nil, err
	}
	old, _, err := h.execute(ctx, &rmw{
		t: pr.t, key: key, cond: pr.cond, failOld: pr.failOld,
		readOld: pr.cond != nil || pr.rv == expr.ReturnAllOld,
		next:    func(ddb.Item) (ddb.Item, error) { return nil, nil },
	})
	if err != nil {
		return nil, err
	}
	out := writeOutput{ConsumedCapacity: capacity(pr.consumed, pr.t.Name, writeUnits(old.Size()))}
	if pr.rv == expr.ReturnAllOld {
		out.Attributes = old
	}
	return out, nil
}

type updateItemInput struct {
	writeParams
	Key              ddb.Item                       `json:"Key"`
	UpdateExpression *string                        `json:"UpdateExpression"`
	AttributeUpdates map[string]attributeUpdateWire `json:"AttributeUpdates"`
}

// legacyUpdates converts the wire form of AttributeUpdates.
func legacyUpdates(in map[string]attributeUpdateWire) (map[string]expr.AttributeUpdate, error) {
	out := make(map[string]expr.AttributeUpdate, len(in))
	for _, name := range sortedNames(in) {
		w := in[name]
		v, err := decodeValue(w.Value, "AttributeUpdates."+name+".Value")
		if err != nil {
			return nil, err
		}
		out[name] = expr.AttributeUpdate{Action: w.Action, Value: v}
	}
	return out, nil
}

func updateItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in updateItemInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if _, err := expr.ParseReturnValues(in.ReturnValues); err != nil {
		return nil, err
	}
	var legacy, expression []string
	if in.AttributeUpdates != nil {
		legacy = append(legacy, "AttributeUpdates")
	}
	if in.UpdateExpression != nil {
		expression = append(expression, "UpdateExpression")
	}
	var upd *expr.Update
	pr, err := h.prepare(&in.writeParams, legacy, expression, func(p *expr.Params) error {
		var err error
		switch {
		case in.UpdateExpression != nil:
			if strings.TrimSpace(*in.UpdateExpression) == "" {
				return validationf("Invalid UpdateExpression: The expression can not be empty;")
			}
			upd, err = expr.ParseUpdate(*in.UpdateExpression, p)
		case in.AttributeUpdates != nil:
			var au map[string]expr.AttributeUpdate
			if au, err = legacyUpdates(in.AttributeUpdates); err == nil {
				upd, err = expr.FromAttributeUpdates(au)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if in.Key == nil {
		return nil, validationf("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null")
	}
	t := pr.t
	key, err := t.storageKey(in.Key, true)
	if err != nil {
		return nil, err
	}
	if upd != nil {
		for _, a := range []ddb.KeyAttribute{t.Keys.PartitionKey, t.Keys.SortKey} {
			if a.Name != "" && upd.Touches(a.Name) {
				if in.AttributeUpdates != nil {
					return nil, validationf("One or more parameter values were invalid: Cannot update attribute %s. This attribute is part of the key", a.Name)
				}
				return nil, validationf("Cannot update attribute %s. This attribute is part of the key", a.Name)
			}
		}
	}
	old, next, err := h.execute(ctx, &rmw{
		t: t, key: key, cond: pr.cond, failOld: pr.failOld, readOld: true,
		next: func(old ddb.Item) (ddb.Item, error) {
			base := old
			if base == nil {
				if upd != nil && !upd.CreatesItem() {
					return nil, nil // REMOVE or DELETE only: the item stays missing
				}
				// UpdateItem creates a missing item from its key.
				base = in.Key
			}
			if upd == nil {
				return base, nil
			}
			next, err := upd.Apply(base)
			if err != nil {
				return nil, err
			}
			for name, v := range in.Key {
				if !ddb.Equal(next[name], v) {
					return nil, internalf("the update changed key attribute %s", name)
				}
			}
			if err := t.checkItemSize(next); err != nil {
				return nil, err
			}
			return next, nil
		},
	})
	if err != nil {
		return nil, err
	}
	out := writeOutput{ConsumedCapacity: capacity(pr.consumed, t.Name, writeUnits(old.Size(), next.Size()))}
	switch {
	case upd != nil:
		out.Attributes = upd.Returned(old, next, pr.rv)
	case pr.rv == expr.ReturnAllOld:
		out.Attributes = old
	case pr.rv == expr.ReturnAllNew:
		out.Attributes = next
	}
	return out, nil
}

// writeRequest is one BatchWriteItem request.
type writeRequest struct {
	PutRequest    *putRequest    `json:"PutRequest,omitempty"`
	DeleteRequest *deleteRequest `json:"DeleteRequest,omitempty"`
}

type putRequest struct {
	Item ddb.Item `json:"Item"`
}

type deleteRequest struct {
	Key ddb.Item `json:"Key"`
}

type batchWriteInput struct {
	RequestItems                map[string][]writeRequest `json:"RequestItems"`
	ReturnConsumedCapacity      string                    `json:"ReturnConsumedCapacity"`
	ReturnItemCollectionMetrics string                    `json:"ReturnItemCollectionMetrics"`
}

type batchWriteOutput struct {
	UnprocessedItems map[string][]writeRequest `json:"UnprocessedItems"`
	ConsumedCapacity []consumedCapacity        `json:"ConsumedCapacity,omitempty"`
}

// batchTable is one table's part of a BatchWriteItem.
type batchTable struct {
	t     *table
	reqs  []writeRequest
	keys  []*storagev1.Key
	units float64
	// unprocessed are the requests not written because of err, a
	// retryable error; err is nil when all were written.
	unprocessed []writeRequest
	err         error
}

// batchWriteItem validates every request before writing any. Each table's
// writes go to the replicas in one coord.Write at QUORUM; on
// always_use_lwt tables each item is instead written under its lock, like
// a PutItem or DeleteItem (one lock round trip per item, in parallel). A
// table whose writes fail as unavailable or contended is returned in
// UnprocessedItems; when every table fails so, the error is returned.
func batchWriteItem(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in batchWriteInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in.RequestItems) == 0 {
		return nil, validationf("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	if err := checkReporting(in.ReturnConsumedCapacity, in.ReturnItemCollectionMetrics); err != nil {
		return nil, err
	}
	total := 0
	for _, reqs := range in.RequestItems {
		total += len(reqs)
	}
	if total > maxBatchWrites {
		return nil, validationf("Too many items requested for the BatchWriteItem call")
	}
	var tables []*batchTable
	for _, name := range sortedNames(in.RequestItems) {
		reqs := in.RequestItems[name]
		if len(reqs) == 0 {
			return nil, validationf("1 validation error detected: Value '{%s=[]}' at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]", name)
		}
		t, err := h.table(name)
		if err != nil {
			return nil, err
		}
		bt := &batchTable{t: t, reqs: reqs}
		seen := map[string]bool{}
		for _, r := range reqs {
			var key *storagev1.Key
			switch {
			case (r.PutRequest == nil) == (r.DeleteRequest == nil):
				return nil, validationf("Supplied WriteRequest must contain exactly one of PutRequest or DeleteRequest")
			case r.PutRequest != nil:
				if r.PutRequest.Item == nil {
					return nil, validationf("1 validation error detected: Value null at 'requestItems.%s.member.putRequest.item' failed to satisfy constraint: Member must not be null", name)
				}
				if key, err = t.storageKey(r.PutRequest.Item, false); err != nil {
					return nil, err
				}
				if err := t.checkItemSize(r.PutRequest.Item); err != nil {
					return nil, err
				}
				bt.units += writeUnits(r.PutRequest.Item.Size())
			default:
				if r.DeleteRequest.Key == nil {
					return nil, validationf("1 validation error detected: Value null at 'requestItems.%s.member.deleteRequest.key' failed to satisfy constraint: Member must not be null", name)
				}
				if key, err = t.storageKey(r.DeleteRequest.Key, true); err != nil {
					return nil, err
				}
				bt.units += writeUnits(0)
			}
			id := fmt.Sprintf("%d:%s%s", len(key.GetPartitionKey()), key.GetPartitionKey(), key.GetSortKey())
			if seen[id] {
				return nil, validationf("Provided list of item keys contains duplicates")
			}
			seen[id] = true
			bt.keys = append(bt.keys, key)
		}
		tables = append(tables, bt)
	}

	var wg sync.WaitGroup
	for _, bt := range tables {
		wg.Go(func() { h.batchWrite(ctx, bt) })
	}
	wg.Wait()

	out := batchWriteOutput{UnprocessedItems: map[string][]writeRequest{}}
	var firstErr error
	unprocessed := 0
	for _, bt := range tables {
		if bt.err != nil && !retryable(bt.err) {
			return nil, bt.err
		}
		if bt.err != nil && firstErr == nil {
			firstErr = bt.err
		}
		if len(bt.unprocessed) > 0 {
			unprocessed += len(bt.unprocessed)
			out.UnprocessedItems[bt.t.Name] = bt.unprocessed
		}
		if len(bt.unprocessed) < len(bt.reqs) {
			if c := capacity(in.ReturnConsumedCapacity, bt.t.Name, bt.units); c != nil {
				out.ConsumedCapacity = append(out.ConsumedCapacity, *c)
			}
		}
	}
	if unprocessed == total {
		return nil, firstErr
	}
	return out, nil
}

// retryable reports whether a failed batch part belongs in
// UnprocessedItems: the replicas were unavailable, the write timed out, or
// an item lock was contended.
func retryable(err error) bool {
	if errors.Is(err, coord.ErrUnavailable) || errors.Is(err, coord.ErrNotReady) || errors.Is(err, coord.ErrLockContended) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && (e.Type == "ThrottlingException" || e.Status >= 500)
}

// batchWrite writes one table's part of a BatchWriteItem and records what
// failed in bt.
func (h *Handler) batchWrite(ctx context.Context, bt *batchTable) {
	now := time.Now()
	if bt.t.Isolation() == topology.IsolationAlwaysLock {
		errs := make([]error, len(bt.reqs))
		var wg sync.WaitGroup
		for i, r := range bt.reqs {
			wg.Go(func() {
				var item ddb.Item
				if r.PutRequest != nil {
					item = r.PutRequest.Item
				}
				_, _, errs[i] = h.execute(ctx, &rmw{t: bt.t, key: bt.keys[i],
					next: func(ddb.Item) (ddb.Item, error) { return item, nil }})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err == nil {
				continue
			}
			if !retryable(err) || bt.err == nil {
				bt.err = err
			}
			bt.unprocessed = append(bt.unprocessed, bt.reqs[i])
		}
		return
	}
	clock := h.b.Clock()
	recs := make([]*storagev1.Record, len(bt.reqs))
	for i, r := range bt.reqs {
		rec := &storagev1.Record{Key: bt.keys[i], Version: clock.Now()}
		if r.PutRequest != nil {
			rec.Value = ddb.EncodeItem(r.PutRequest.Item)
			rec.ExpireUnixNanos = bt.t.expiry(r.PutRequest.Item, now)
		} else {
			rec.Tombstone = true
		}
		recs[i] = rec
	}
	// One call for the table: when it fails, every request is returned
	// unprocessed (some may have been written; writing them again when
	// the client retries is harmless).
	if _, err := h.b.Coordinator().Write(ctx, recs, coord.Quorum); err != nil {
		bt.err, bt.unprocessed = err, bt.reqs
	}
}
