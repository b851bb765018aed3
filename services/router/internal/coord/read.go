package coord

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

type reply[T any] struct {
	node *cluster.Node
	resp T
	err  error
}

// gather calls call on candidates until need of them succeeded: need at
// once, the next one whenever one fails, and one hedge when the first has
// not answered within its hedge delay. Outstanding calls are cancelled when
// it returns.
//
// With need == 1 (reads at ONE, the common case) the first replica is
// called in the caller's goroutine: no goroutine, channel hop or stack
// growth on the path that almost every read takes. A hedge runs in the
// timer's goroutine and cancels the first call when it answers first.
//
// A failure that a stale-epoch refusal contributed to is marked (markStale)
// so the caller retries once by a newer view.
func gather[T any](ctx context.Context, co *Coordinator, what func() string, epoch uint64, cands []*cluster.Node, need int, call func(context.Context, *cluster.Node) (T, error)) ([]reply[T], error) {
	if len(cands) < need {
		return nil, unavailable(what(), len(cands), need, []string{"not enough live replicas"})
	}
	do := func(ctx context.Context, n *cluster.Node) reply[T] {
		start := time.Now()
		resp, err := call(ctx, n)
		if err == nil {
			n.ObserveLatency(time.Since(start))
		}
		return reply[T]{node: n, resp: resp, err: err}
	}
	var ok []reply[T]
	var errs []string
	var stale uint64
	// replicaFailed records a failed reply; it returns an error when the
	// failure ends the operation whatever the other replicas say.
	replicaFailed := func(ctx context.Context, r reply[T]) error {
		if err := inputErr(r.err); err != nil {
			return err
		}
		if err := ctxErr(ctx); err != nil {
			return err
		}
		if e, ok := staleEpoch(r.err, epoch); ok {
			stale = max(stale, e)
		}
		errs = append(errs, co.replicaErr(r.node, r.err))
		return nil
	}
	if need == 1 && len(cands) == 1 {
		// One replica to ask (RF 1): no hedge and nothing to cancel, so
		// no context of its own either.
		r := do(ctx, cands[0])
		if r.err == nil {
			return []reply[T]{r}, nil
		}
		if err := replicaFailed(ctx, r); err != nil {
			return nil, err
		}
		return nil, markStale(unavailable(what(), 0, need, errs), stale)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan reply[T], len(cands))
	next, inflight := 0, 0
	launch := func() {
		n := cands[next]
		next++
		inflight++
		go func() { ch <- do(ctx, n) }()
	}
	// failed records a failed reply and launches the next replica; it
	// returns an error when gather must give up.
	failed := func(r reply[T]) error {
		if err := replicaFailed(ctx, r); err != nil {
			return err
		}
		if next < len(cands) {
			launch()
		} else if len(ok)+inflight < need {
			return markStale(unavailable(what(), len(ok), need, errs), stale)
		}
		return nil
	}

	var hedge <-chan time.Time
	if need == 1 {
		firstCtx, firstCancel := context.WithCancel(ctx)
		next = 1
		var hedgeWon atomic.Bool
		var t *time.Timer
		if len(cands) > 1 {
			second := cands[1]
			t = time.AfterFunc(cands[0].HedgeDelay(co.o.HedgeMin, co.o.HedgeMax), func() {
				co.o.Metrics.Hedges.Inc()
				r := do(ctx, second)
				if r.err == nil {
					hedgeWon.Store(true)
					firstCancel()
				}
				ch <- r
			})
		}
		r := do(firstCtx, cands[0])
		firstCancel()
		if t != nil && !t.Stop() {
			// The hedge started: its reply will arrive on ch.
			next, inflight = 2, 1
		}
		switch {
		case r.err == nil:
			return []reply[T]{r}, nil
		case hedgeWon.Load():
			// Cancelled because the hedge answered first: take its reply.
		default:
			if err := failed(r); err != nil {
				return nil, err
			}
		}
	} else {
		for range need {
			launch()
		}
		if next < len(cands) {
			t := time.NewTimer(cands[0].HedgeDelay(co.o.HedgeMin, co.o.HedgeMax))
			defer t.Stop()
			hedge = t.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-hedge:
			hedge = nil
			if next < len(cands) {
				co.o.Metrics.Hedges.Inc()
				launch()
			}
		case r := <-ch:
			inflight--
			if r.err == nil {
				ok = append(ok, r)
				if len(ok) == need {
					return ok, nil
				}
				continue
			}
			if err := failed(r); err != nil {
				return nil, err
			}
		}
	}
}

// newer reports whether a is newer than b under last-writer-wins, for
// choosing what to return and what to repair. Equal versions count as the
// same write: storage nodes resolve any difference between them.
func newer(a, b *storagev1.Record) bool {
	if b == nil {
		return a != nil
	}
	return a != nil && a.GetVersion() > b.GetVersion()
}

// Read returns the newest record of key among Need(level, read set size)
// members of its partition's read set, or nil when none has it. Tombstones
// are returned (the caller reports them as absent). Stale replicas are
// repaired in the background. A read refused as made under a stale
// placement epoch is retried once by the newer view (see Write).
func (co *Coordinator) Read(ctx context.Context, key *storagev1.Key, level Level) (*storagev1.Record, error) {
	v, err := co.View()
	if err != nil {
		return nil, err
	}
	rec, err := co.read(ctx, v, key, level)
	if v2, ok := co.retryView(ctx, err); ok {
		return co.read(ctx, v2, key, level)
	}
	return rec, err
}

func (co *Coordinator) read(ctx context.Context, v *cluster.View, key *storagev1.Key, level Level) (*storagev1.Record, error) {
	// Formatted only for an error: a read that succeeds formats nothing.
	what := func() string { return "read of " + keyString(key) + " at " + level.String() }
	rt := v.Route(key.GetPartition())
	if rt == nil {
		return nil, unavailable(what(), 0, 1, []string{"partition out of range"})
	}
	need := Need(level, rt.ReadSize)
	cands := candidates(rt)
	if len(cands) < need {
		return nil, unavailable(what(), len(cands), need, downReplicas(rt.ReadIDs, rt.ReadNodes))
	}
	req := &storagev1.ReadRequest{Key: key, PlacementEpoch: v.Epoch}
	replies, err := gather(ctx, co, what, v.Epoch, cands, need, func(ctx context.Context, n *cluster.Node) (*storagev1.ReadResponse, error) {
		return n.Client.Read(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	var winner *storagev1.Record
	for _, r := range replies {
		if rec := r.resp.GetRecord(); r.resp.GetFound() && newer(rec, winner) {
			winner = rec
		}
	}
	if winner == nil {
		return nil, nil
	}
	// Storage nodes do not echo the key: the record takes the one asked for
	// (repairs send it on).
	winner.Key = key
	if len(replies) > 1 {
		repairs := map[*cluster.Node][]*storagev1.Record{}
		for _, r := range replies {
			if !r.resp.GetFound() || r.resp.GetRecord().GetVersion() < winner.GetVersion() {
				repairs[r.node] = append(repairs[r.node], winner)
			}
		}
		co.repair(v.Epoch, repairs)
	}
	return winner, nil
}

// repair sends the newest records to replicas that answered with older ones,
// in the background.
func (co *Coordinator) repair(epoch uint64, repairs map[*cluster.Node][]*storagev1.Record) {
	for node, recs := range repairs {
		co.o.Metrics.ReadRepairs.Add(float64(len(recs)))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), co.o.Timeout)
			defer cancel()
			if _, err := node.Client.Apply(ctx, &storagev1.ApplyRequest{Records: recs, PlacementEpoch: epoch}); err != nil {
				co.o.Logger.Warn("read repair failed", "node", node.ID, "records", len(recs), "err", co.replicaErr(node, err))
			}
		}()
	}
}

type batchState struct {
	cands []*cluster.Node
	next  int
	need  int
	ok    []*cluster.Node
	recs  []*storagev1.Record // found records, parallel to ok (nil: not found)
	errs  []string
}

// BatchRead reads keys at level, grouping keys per node so each round sends
// one BatchRead per node; keys whose replica failed move to their next
// replica in the following round. Results are in key order; nil means not
// found. Like Read it is retried once by a newer view when a replica
// refused the view's epoch as stale.
func (co *Coordinator) BatchRead(ctx context.Context, keys []*storagev1.Key, level Level) ([]*storagev1.Record, error) {
	v, err := co.View()
	if err != nil {
		return nil, err
	}
	out, err := co.batchRead(ctx, v, keys, level)
	if v2, ok := co.retryView(ctx, err); ok {
		return co.batchRead(ctx, v2, keys, level)
	}
	return out, err
}

func (co *Coordinator) batchRead(ctx context.Context, v *cluster.View, keys []*storagev1.Key, level Level) ([]*storagev1.Record, error) {
	states := make([]batchState, len(keys))
	// Keys of one partition share its candidates (in one order, so they
	// go to the same replicas and the batch stays in few groups).
	cands := map[*cluster.Route][]*cluster.Node{}
	for i, k := range keys {
		rt := v.Route(k.GetPartition())
		if rt == nil {
			return nil, unavailable("read of "+keyString(k)+" at "+level.String(), 0, 1, []string{"partition out of range"})
		}
		cs, ok := cands[rt]
		if !ok {
			cs = candidates(rt)
			cands[rt] = cs
		}
		st := &states[i]
		st.cands, st.need = cs, Need(level, rt.ReadSize)
		if len(st.cands) < st.need {
			return nil, unavailable("read of "+keyString(k)+" at "+level.String(), len(st.cands), st.need, downReplicas(rt.ReadIDs, rt.ReadNodes))
		}
	}
	// A key gets at most need answers: its ok and recs are slices of one
	// backing array each, not two allocations per key.
	total := 0
	for i := range states {
		total += states[i].need
	}
	oks, recs := make([]*cluster.Node, total), make([]*storagev1.Record, total)
	for i, off := 0, 0; i < len(states); i++ {
		st := &states[i]
		st.ok, st.recs = oks[off:off:off+st.need], recs[off:off:off+st.need]
		off += st.need
	}
	var stale uint64
	type result struct {
		node *cluster.Node
		idxs []int
		resp *storagev1.BatchReadResponse
		err  error
	}
	for {
		groups := map[*cluster.Node][]int{}
		for i := range states {
			st := &states[i]
			for want := st.need - len(st.ok); want > 0 && st.next < len(st.cands); want-- {
				n := st.cands[st.next]
				st.next++
				groups[n] = append(groups[n], i)
			}
		}
		if len(groups) == 0 {
			break
		}
		ch := make(chan result, len(groups))
		call := func(node *cluster.Node, idxs []int) result {
			req := &storagev1.BatchReadRequest{Keys: make([]*storagev1.Key, len(idxs)), PlacementEpoch: v.Epoch}
			for j, i := range idxs {
				req.Keys[j] = keys[i]
			}
			start := time.Now()
			resp, err := node.Client.BatchRead(ctx, req)
			if err == nil {
				node.ObserveLatency(time.Since(start))
			}
			return result{node: node, idxs: idxs, resp: resp, err: err}
		}
		if len(groups) == 1 {
			// One node to ask (RF 1, or every key on one replica): in the
			// caller's goroutine.
			for node, idxs := range groups {
				ch <- call(node, idxs)
			}
		} else {
			for node, idxs := range groups {
				go func() { ch <- call(node, idxs) }()
			}
		}
		var inErr error
		for range groups {
			r := <-ch
			if r.err != nil {
				if err := inputErr(r.err); err != nil {
					inErr = err
				}
				if e, ok := staleEpoch(r.err, v.Epoch); ok {
					stale = max(stale, e)
				}
				desc := co.replicaErr(r.node, r.err)
				for _, i := range r.idxs {
					states[i].errs = append(states[i].errs, desc)
				}
				continue
			}
			for j, i := range r.idxs {
				st := &states[i]
				st.ok = append(st.ok, r.node)
				if res := r.resp.GetResults()[j]; res.GetFound() {
					st.recs = append(st.recs, res.GetRecord())
				} else {
					st.recs = append(st.recs, nil)
				}
			}
		}
		if inErr != nil {
			return nil, inErr
		}
		if err := ctxErr(ctx); err != nil {
			return nil, err
		}
		for i := range states {
			if st := &states[i]; len(st.ok)+len(st.cands)-st.next < st.need {
				return nil, markStale(unavailable("read of "+keyString(keys[i])+" at "+level.String(), len(st.ok), st.need, st.errs), stale)
			}
		}
	}
	out := make([]*storagev1.Record, len(keys))
	repairs := map[*cluster.Node][]*storagev1.Record{}
	for i := range states {
		st := &states[i]
		var winner *storagev1.Record
		for _, rec := range st.recs {
			if newer(rec, winner) {
				winner = rec
			}
		}
		out[i] = winner
		if winner == nil {
			continue
		}
		// Results match keys by position: nodes do not echo the keys.
		winner.Key = keys[i]
		if len(st.ok) < 2 {
			continue
		}
		for j, node := range st.ok {
			if st.recs[j] == nil || st.recs[j].GetVersion() < winner.GetVersion() {
				repairs[node] = append(repairs[node], winner)
			}
		}
	}
	co.repair(v.Epoch, repairs)
	return out, nil
}

// QueryOptions select a sort-key range of one partition key.
type QueryOptions struct {
	Partition    uint32
	TableID      uint64
	PartitionKey []byte
	// Start and End bound sort keys to [Start, End); nil End: unbounded.
	Start, End []byte
	Prefix     []byte
	Limit      int
	Reverse    bool
}

// Query reads up to Limit live records of a partition key in sort-key
// order from Need(level, read set size) members of the partition's read
// set, merging by newest version. next is the sort key the replicas were
// read up to when more records may follow (the next page starts after
// it), or nil at the end. Like Read it is retried once by a newer view
// when a replica refused the view's epoch as stale.
func (co *Coordinator) Query(ctx context.Context, q QueryOptions, level Level) (recs []*storagev1.Record, next []byte, err error) {
	v, err := co.View()
	if err != nil {
		return nil, nil, err
	}
	recs, next, err = co.query(ctx, v, q, level)
	if v2, ok := co.retryView(ctx, err); ok {
		return co.query(ctx, v2, q, level)
	}
	return recs, next, err
}

func (co *Coordinator) query(ctx context.Context, v *cluster.View, q QueryOptions, level Level) (recs []*storagev1.Record, next []byte, err error) {
	what := func() string {
		return "query of partition key " + `"` + trunc(q.PartitionKey) + `"` + " at " + level.String()
	}
	rt := v.Route(q.Partition)
	if rt == nil {
		return nil, nil, unavailable(what(), 0, 1, []string{"partition out of range"})
	}
	need := Need(level, rt.ReadSize)
	cands := candidates(rt)
	if len(cands) < need {
		return nil, nil, unavailable(what(), len(cands), need, downReplicas(rt.ReadIDs, rt.ReadNodes))
	}
	req := &storagev1.ScanRequest{
		Partition: q.Partition, TableId: q.TableID, PartitionKey: q.PartitionKey,
		Start: q.Start, End: q.End, Prefix: q.Prefix, Limit: uint32(q.Limit), Reverse: q.Reverse,
		IncludeTombstones: need > 1, PlacementEpoch: v.Epoch,
	}
	replies, err := gather(ctx, co, what, v.Epoch, cands, need, func(ctx context.Context, n *cluster.Node) (*storagev1.ScanResponse, error) {
		return n.Client.Scan(ctx, req)
	})
	if err != nil {
		return nil, nil, err
	}
	if len(replies) == 1 {
		recs := replies[0].resp.GetRecords()
		if len(replies[0].resp.GetResume()) > 0 && len(recs) > 0 {
			// Non-nil even for an empty sort key: nil means the end.
			next = append([]byte{}, recs[len(recs)-1].GetKey().GetSortKey()...)
		}
		return recs, next, nil
	}
	return co.mergeScans(v.Epoch, replies, q.Reverse)
}

// mergeScans merges pages of one sort-key range from several replicas. A
// replica that returned a full page (it has a resume token) has only been
// seen up to its last key, so the merge stops at the earliest such bound;
// the caller resumes after it. Within the bound the newest version of each
// key wins, tombstones are dropped, and stale replicas are repaired.
func (co *Coordinator) mergeScans(epoch uint64, replies []reply[*storagev1.ScanResponse], reverse bool) ([]*storagev1.Record, []byte, error) {
	before := func(a, b []byte) bool {
		if reverse {
			return bytes.Compare(a, b) > 0
		}
		return bytes.Compare(a, b) < 0
	}
	var bound []byte
	more := false
	for _, r := range replies {
		recs := r.resp.GetRecords()
		if len(r.resp.GetResume()) == 0 || len(recs) == 0 {
			continue
		}
		last := recs[len(recs)-1].GetKey().GetSortKey()
		if !more || before(last, bound) {
			bound = append([]byte{}, last...)
		}
		more = true
	}
	type entry struct {
		win  *storagev1.Record
		seen map[*cluster.Node]uint64
	}
	entries := map[string]*entry{}
	var order [][]byte
	for _, r := range replies {
		for _, rec := range r.resp.GetRecords() {
			sk := rec.GetKey().GetSortKey()
			if more && before(bound, sk) {
				break
			}
			e, ok := entries[string(sk)]
			if !ok {
				e = &entry{seen: map[*cluster.Node]uint64{}}
				entries[string(sk)] = e
				order = append(order, sk)
			}
			e.seen[r.node] = rec.GetVersion()
			if newer(rec, e.win) {
				e.win = rec
			}
		}
	}
	sortKeys(order, before)
	out := make([]*storagev1.Record, 0, len(order))
	repairs := map[*cluster.Node][]*storagev1.Record{}
	for _, sk := range order {
		e := entries[string(sk)]
		for _, r := range replies {
			if ver, ok := e.seen[r.node]; !ok || ver < e.win.GetVersion() {
				repairs[r.node] = append(repairs[r.node], e.win)
			}
		}
		if !e.win.GetTombstone() {
			out = append(out, e.win)
		}
	}
	co.repair(epoch, repairs)
	if !more {
		bound = nil
	}
	return out, bound, nil
}
