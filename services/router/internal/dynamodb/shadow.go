package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// read serves a read of a migrating table past PROXY: from Veltrix when
// every partition key it reads is in the cutover cohort (or the phase is
// VELTRIX), else from DynamoDB, and then, in SHADOW and for the keys
// outside the cohort in CUTOVER, compared with Veltrix's answer in the
// background. Scan reads every cohort, so it is served by DynamoDB until
// VELTRIX and not compared.
func (m *migrator) read(ctx context.Context, mg *migrationv1.Migration, op string, body []byte) (any, error) {
	t, err := m.h.table(mg.GetTable())
	if err != nil {
		return nil, err
	}
	var fromVeltrix, compare bool
	if op == "Scan" {
		fromVeltrix = mg.GetPhase() == migrationv1.Phase_PHASE_VELTRIX
	} else if pks, err := readPartitionKeys(t, op, body); err == nil && len(pks) > 0 {
		fromVeltrix = true
		for _, pk := range pks {
			fromVeltrix = fromVeltrix && migration.ReadsFromVeltrix(mg, pk)
			compare = compare || migration.ComparesReads(mg, pk)
		}
	}
	// (A request Veltrix cannot parse goes to DynamoDB, which words the
	// error.)
	start := time.Now()
	if fromVeltrix {
		resp, err := m.h.ops[op](ctx, m.h, body)
		m.ctl.ReadLatency(t.Name, migration.SideVeltrix, time.Since(start))
		if err != nil && toError(err).Status >= 500 {
			m.ctl.VeltrixServerError(t.Name)
		}
		return resp, err
	}
	resp, err := m.up.forward(ctx, mg, op, body)
	if err != nil {
		return nil, err
	}
	m.ctl.ReadLatency(t.Name, migration.SideDynamoDB, time.Since(start))
	if compare && resp.ok() {
		select {
		case m.shadow <- shadowJob{mg: mg, t: t, op: op, body: body, dynamo: resp.body, at: time.Now()}:
		default:
			// The client's latency is DynamoDB's: never wait for a
			// comparison.
			m.h.o.Metrics.shadowDropped()
		}
	}
	return resp, nil
}

// readPartitionKeys are the stored partition keys a GetItem, BatchGetItem
// or Query of t reads.
func readPartitionKeys(t *table, op string, body []byte) ([][]byte, error) {
	switch op {
	case "GetItem":
		var in getItemInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		k, err := t.storageKey(in.Key, true)
		if err != nil {
			return nil, err
		}
		return [][]byte{k.GetPartitionKey()}, nil
	case "BatchGetItem":
		var in batchGetItemInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		var out [][]byte
		for _, it := range in.RequestItems[t.Name].GetKeys() {
			k, err := t.storageKey(it, true)
			if err != nil {
				return nil, err
			}
			out = append(out, k.GetPartitionKey())
		}
		return out, nil
	case "Query":
		var in queryInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		_, pk, err := in.keyCondition(t, expr.NewParams(in.ExpressionAttributeNames, in.ExpressionAttributeValues))
		if err != nil {
			return nil, err
		}
		return [][]byte{pk}, nil
	}
	return nil, nil
}

// GetKeys returns the keys, nil-safe.
func (k *keysAndAttributes) GetKeys() []ddb.Item {
	if k == nil {
		return nil
	}
	return k.Keys
}

// shadowJob is one read to compare: the request and DynamoDB's answer
// (in the Veltrix table's names).
type shadowJob struct {
	mg     *migrationv1.Migration
	t      *table
	op     string
	body   []byte
	dynamo []byte
	at     time.Time
}

func (m *migrator) shadowWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case <-m.stop:
			return
		case j := <-m.shadow:
			m.compare(ctx, j)
		}
	}
}

// keyedPair is one item of a compared read: DynamoDB's and Veltrix's
// versions (nil: absent).
type keyedPair struct {
	key             ddb.Item
	dynamo, veltrix ddb.Item
}

// compare serves the job's read from Veltrix and compares the answers
// item by item. An item that differs is re-checked (recheck) to rule out a
// write that raced the comparison; only if it still differs is it a
// mismatch.
func (m *migrator) compare(base context.Context, j shadowJob) {
	ctx, cancel := context.WithTimeout(base, m.h.o.RequestTimeout)
	defer cancel()
	table := j.t.Name
	body, err := consistentRead(j.op, j.body)
	if err != nil {
		return // DynamoDB answered it, so this cannot happen; not compared
	}
	start := time.Now()
	out, err := m.h.ops[j.op](ctx, m.h, body)
	m.ctl.ReadLatency(table, migration.SideVeltrix, time.Since(start))
	if err != nil {
		if toError(err).Status >= 500 {
			m.ctl.VeltrixServerError(table)
		}
		m.h.o.Logger.Debug("dynamodb: migration: shadow read failed on Veltrix; not compared", "table", table, "op", j.op, "err", err)
		return
	}
	vb, err := json.Marshal(out)
	if err != nil {
		return
	}
	pairs, ok := shadowPairs(j.t, j.op, j.body, j.dynamo, vb)
	if !ok {
		return
	}
	mismatch := false
	for _, p := range pairs {
		if CompareItems(p.dynamo, p.veltrix) == nil {
			continue
		}
		// Each re-check has its own deadline: it waits ShadowSettle per
		// attempt, and a read may return many items.
		rctx, rcancel := context.WithTimeout(base, m.h.o.RequestTimeout+recheckAttempts*m.o.ShadowSettle)
		d, v, diffs, err := m.recheck(rctx, j.mg, j.t, p.key)
		rcancel()
		if err != nil {
			m.h.o.Logger.Warn("dynamodb: migration: a shadow mismatch could not be re-checked; not recorded", "table", table, "key", p.key.String(), "err", err)
			continue
		}
		if diffs == nil {
			continue
		}
		mismatch = true
		mm := &migrationv1.Mismatch{Key: p.key.String(), Differences: diffs, Time: timestamppb.New(j.at),
			Router: m.o.RouterID, Operation: j.op}
		if d != nil {
			mm.DynamodbItem = d.String()
		}
		if v != nil {
			mm.VeltrixItem = v.String()
		}
		m.ctl.RecordMismatch(base, table, mm)
	}
	m.ctl.ShadowCompared(table, mismatch)
}

// consistentRead returns a GetItem, BatchGetItem or Query request with
// ConsistentRead set on every table it reads. A shadow comparison reads
// Veltrix at QUORUM whatever the client asked for: it checks that Veltrix
// holds what DynamoDB holds, and a replica still applying a write could
// match DynamoDB's older state and hide a divergence the quorum holds (a
// stale read that differs would only be re-checked). Its latency is then
// QUORUM's, which errs on the safe side for the exit criteria.
func consistentRead(op string, body []byte) ([]byte, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if op != "BatchGetItem" {
		setConsistent(req)
		return json.Marshal(req)
	}
	var tables map[string]map[string]json.RawMessage
	if err := json.Unmarshal(requestItems(req), &tables); err != nil {
		return nil, err
	}
	for _, t := range tables {
		setConsistent(t)
	}
	items, err := json.Marshal(tables)
	if err != nil {
		return nil, err
	}
	for k := range req {
		if strings.EqualFold(k, "RequestItems") {
			delete(req, k)
		}
	}
	req["RequestItems"] = items
	return json.Marshal(req)
}

// setConsistent sets ConsistentRead in a request object, replacing every
// spelling of it (JSON field names match case-insensitively).
func setConsistent(obj map[string]json.RawMessage) {
	for k := range obj {
		if strings.EqualFold(k, "ConsistentRead") {
			delete(obj, k)
		}
	}
	obj["ConsistentRead"] = json.RawMessage("true")
}

// requestItems is a BatchGetItem's RequestItems, however spelled.
func requestItems(req map[string]json.RawMessage) json.RawMessage {
	for k, v := range req {
		if strings.EqualFold(k, "RequestItems") {
			return v
		}
	}
	return nil
}

// recheckAttempts bounds the re-checks of one shadow mismatch.
const recheckAttempts = 5

// recheck decides whether a difference a shadow read saw is real. A
// mirrored write reaches Veltrix only after DynamoDB acknowledged it (its
// re-sync follows), so under writes a read can see DynamoDB a write or
// more ahead of Veltrix, and so can an immediate second read. One attempt
// reads DynamoDB (ConsistentRead), waits ShadowSettle — longer than a
// re-sync takes — and reads Veltrix at QUORUM, which by then holds that
// state or a later one; then, if they differ, DynamoDB once more: Veltrix
// agrees if it equals either read. A real divergence (an item changed
// behind Veltrix's back, a lost or mis-encoded write) persists; a lagging
// re-sync passes unless the item is written again within every attempt,
// so the item is a mismatch (diffs non-nil) only if recheckAttempts
// attempts all disagree. dynamo is DynamoDB's last read.
func (m *migrator) recheck(ctx context.Context, mg *migrationv1.Migration, t *table, keyItem ddb.Item) (dynamo, veltrix ddb.Item, diffs []string, err error) {
	key, err := t.storageKey(keyItem, true)
	if err != nil {
		return nil, nil, nil, err
	}
	for range recheckAttempts {
		before, err := m.upstreamItem(ctx, mg, keyItem, true)
		if err != nil {
			return nil, nil, nil, err
		}
		select {
		case <-time.After(m.o.ShadowSettle):
		case <-m.stop:
			return nil, nil, nil, errors.New("the endpoint is closing")
		case <-ctx.Done():
			return nil, nil, nil, context.Cause(ctx)
		}
		rec, err := m.h.b.Coordinator().Read(ctx, key, coord.Quorum)
		if err != nil {
			return nil, nil, nil, err
		}
		if veltrix, err = t.decodeRecord(rec, time.Now()); err != nil {
			return nil, nil, nil, err
		}
		if CompareItems(before, veltrix) == nil {
			return before, veltrix, nil, nil
		}
		if dynamo, err = m.upstreamItem(ctx, mg, keyItem, true); err != nil {
			return nil, nil, nil, err
		}
		if diffs = CompareItems(dynamo, veltrix); diffs == nil {
			return dynamo, veltrix, nil, nil
		}
	}
	return dynamo, veltrix, diffs, nil
}

// shadowPairs pairs the items of two answers to one read by key. ok is
// false when they cannot be paired (an item without its key attributes,
// projected away): such a read is not compared.
func shadowPairs(t *table, op string, req, dynamo, veltrix []byte) (pairs []keyedPair, ok bool) {
	switch op {
	case "GetItem":
		var in getItemInput
		var d, v getItemOutput
		if decode(req, &in) != nil || json.Unmarshal(dynamo, &d) != nil || json.Unmarshal(veltrix, &v) != nil {
			return nil, false
		}
		return []keyedPair{{key: in.Key, dynamo: d.Item, veltrix: v.Item}}, true
	case "BatchGetItem":
		var in batchGetItemInput
		var d, v batchGetItemOutput
		if decode(req, &in) != nil || json.Unmarshal(dynamo, &d) != nil || json.Unmarshal(veltrix, &v) != nil {
			return nil, false
		}
		di, ok1 := byKey(t, d.Responses[t.Name])
		vi, ok2 := byKey(t, v.Responses[t.Name])
		du, _ := byKey(t, d.UnprocessedKeys[t.Name].GetKeys())
		vu, _ := byKey(t, v.UnprocessedKeys[t.Name].GetKeys())
		if !ok1 || !ok2 {
			return nil, false
		}
		for _, k := range in.RequestItems[t.Name].GetKeys() {
			id, ok := keyID(t, k)
			if !ok || du[id] != nil || vu[id] != nil {
				continue
			}
			pairs = append(pairs, keyedPair{key: k, dynamo: di[id], veltrix: vi[id]})
		}
		return pairs, true
	case "Query":
		var d, v pageOutput
		if json.Unmarshal(dynamo, &d) != nil || json.Unmarshal(veltrix, &v) != nil {
			return nil, false
		}
		di, ok1 := byKey(t, d.Items)
		vi, ok2 := byKey(t, v.Items)
		if !ok1 || !ok2 {
			return nil, false
		}
		for _, id := range sortedNames(unionKeys(di, vi)) {
			it := di[id]
			if it == nil {
				it = vi[id]
			}
			k, _ := t.keyItem(it)
			pairs = append(pairs, keyedPair{key: k, dynamo: di[id], veltrix: vi[id]})
		}
		return pairs, true
	}
	return nil, false
}

func unionKeys(a, b map[string]ddb.Item) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// keyID identifies an item by its stored key.
func keyID(t *table, it ddb.Item) (string, bool) {
	pk, sk, err := t.Keys.Key(it)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("%d:%s%s", len(pk), pk, sk), true
}

// byKey indexes items by keyID; false when one lacks its key.
func byKey(t *table, items []ddb.Item) (map[string]ddb.Item, bool) {
	out := make(map[string]ddb.Item, len(items))
	for _, it := range items {
		id, ok := keyID(t, it)
		if !ok {
			return nil, false
		}
		out[id] = it
	}
	return out, true
}
