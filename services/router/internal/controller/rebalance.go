package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// Metrics are the controller's Prometheus metrics, updated by the leader
// after every iteration.
type Metrics struct {
	InFlight        *prometheus.GaugeVec
	Pending         prometheus.Gauge
	UnderReplicated prometheus.Gauge
	Completed       prometheus.Counter
	BytesStreamed   prometheus.Gauge
}

// NewMetrics creates (and registers, when reg is not nil) the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_rebalance_moves_in_flight",
			Help: "Replica moves in the placement, by stage (pending, streaming, read_new, cleanup); set by the controller leader.",
		}, []string{"stage"}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "veltrix_rebalance_pending_partitions",
			Help: "Partitions whose replica set differs from the target placement; set by the controller leader.",
		}),
		UnderReplicated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "veltrix_rebalance_under_replicated_partitions",
			Help: "Partitions whose read set has fewer registered members than the replication factor; set by the controller leader.",
		}),
		Completed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "veltrix_rebalance_moves_completed_total",
			Help: "Replica moves this router promoted as controller.",
		}),
		BytesStreamed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "veltrix_rebalance_bytes_streamed",
			Help: "Bytes backfilled since the current (or last) rebalance began: promoted moves plus the progress of those in flight.",
		}),
	}
	for _, s := range []placement.Stage{placement.StagePending, placement.StageStreaming, placement.StageReadNew, placement.StageCleanup} {
		m.InFlight.WithLabelValues(string(s))
	}
	if reg != nil {
		reg.MustRegister(m.InFlight, m.Pending, m.UnderReplicated, m.Completed, m.BytesStreamed)
	}
	return m
}

// FillMembers adds to d.Members every node that the replica sets name and
// every registered node that is up, as active, and makes a removed node
// active again when its process started after the removal (a removed id
// registers again only on an empty directory, as a new node). It reports
// whether d changed.
func FillMembers(d *placement.Document, nodes map[string]topology.Node, now time.Time) bool {
	changed := false
	if d.Members == nil {
		d.Members = map[string]placement.Member{}
	}
	for _, set := range d.Replicas {
		for _, id := range set {
			if _, ok := d.Members[id]; !ok {
				d.Members[id] = placement.Member{State: placement.MemberActive, Zone: nodes[id].Zone, Since: now, Reason: "controller: holds replicas"}
				changed = true
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[id]
		if n.State != topology.NodeUp {
			continue
		}
		m, ok := d.Members[id]
		switch {
		case !ok:
			d.Members[id] = placement.Member{State: placement.MemberActive, Zone: n.Zone, Since: now, Reason: "controller: registered", Incarnation: n.Incarnation}
			changed = true
		case m.Zone == "" && n.Zone != "" && m.State != placement.MemberRemoved:
			// Filled in while it was down: take the zone it registered.
			m.Zone = n.Zone
			d.Members[id] = m
			changed = true
		case m.State == placement.MemberRemoved && rejoined(m, n):
			// Back on an empty directory (the storage side refuses
			// anything else). A decommissioned node still running until
			// it is stopped stays removed.
			d.Members[id] = placement.Member{State: placement.MemberActive, Zone: n.Zone, Since: now, Reason: "controller: registered again after removal", Incarnation: n.Incarnation}
			changed = true
		case n.Incarnation != "" && m.Incarnation != n.Incarnation && m.State != placement.MemberRemoved:
			// The directory registered now is the node's (storage nodes
			// check their identity before registering): a replaced node's
			// new one, or the first one seen.
			m.Incarnation = n.Incarnation
			d.Members[id] = m
			changed = true
		}
	}
	return changed
}

// rejoined reports whether registration n of a removed member m is a new
// data directory: another incarnation than the one the member recorded,
// or, when it recorded none, a process started after the removal.
func rejoined(m placement.Member, n topology.Node) bool {
	if m.Incarnation != "" && n.Incarnation != "" {
		return m.Incarnation != n.Incarnation
	}
	return n.StartTime.After(m.Since)
}

// stepResult is what one iteration did, for logs and metrics once its
// document is written.
type stepResult struct {
	promoted uint64
	events   []string
}

// step applies one iteration of the state machine to d (at its new epoch
// d.Epoch) from the snapshot's registrations and progress reports. It is
// a pure function of its inputs, so UpdatePlacement may run it again on a
// newer document.
func (c *Controller) step(d *placement.Document, snap *topology.Snapshot, now time.Time) stepResult {
	var res stepResult
	E := d.Epoch
	note := func(format string, args ...any) { res.events = append(res.events, fmt.Sprintf(format, args...)) }
	FillMembers(d, snap.Nodes, now)

	// Members unregistered for too long are dead.
	c.mu.Lock()
	deadAfter := c.cfg.DeadAfter
	c.mu.Unlock()
	if deadAfter > 0 {
		for _, id := range slices.Sorted(maps.Keys(d.Members)) {
			m := d.Members[id]
			since, absent := c.absent[id]
			if m.State != placement.MemberActive || !absent || now.Sub(since) < deadAfter {
				continue
			}
			d.Members[id] = placement.Member{State: placement.MemberDead, Zone: m.Zone, Since: now,
				Reason: fmt.Sprintf("auto: unregistered for %s", now.Sub(since).Round(time.Second)), Incarnation: m.Incarnation}
			note("node %s declared dead: unregistered for %s", id, now.Sub(since).Round(time.Second))
		}
	}

	// Move transitions: at most one step per move per iteration.
	registered := func(id string) (topology.Node, bool) { n, ok := snap.Nodes[id]; return n, ok }
	reached := func(e uint64) bool { ok, _ := snap.Reached(e); return ok }
	var keep []placement.Move
	for _, m := range slices.Clone(d.Moves) {
		if !m.Active() {
			st := d.Members[m.Remove].State
			if snap.Progress[topology.MoveKey{Partition: m.Partition, Node: m.Remove}].Dropped ||
				st == placement.MemberDead || st == placement.MemberRemoved {
				note("%s: done", m)
				continue
			}
			keep = append(keep, m)
			continue
		}
		keep = append(keep, m)
	}
	d.Moves = keep
	for _, m := range slices.Clone(d.Moves) {
		if !m.Active() {
			continue
		}
		if !d.Members[m.Add].State.Placed() {
			d.Abandon(m, E)
			note("%s: abandoned (%s is %s)", m, m.Add, d.Members[m.Add].State)
			continue
		}
		i := slices.Index(d.Moves, m)
		switch m.Stage {
		case placement.StagePending:
			if reached(m.Since) {
				d.Moves[i].Stage, d.Moves[i].Since = placement.StageStreaming, E
				note("%s: streaming", m)
			}
		case placement.StageStreaming:
			pr, ok := snap.Progress[topology.MoveKey{Partition: m.Partition, Node: m.Add}]
			n, live := registered(m.Add)
			if ok && pr.Done && live && pr.Incarnation == n.Incarnation && pr.Move == m.Created {
				d.Moves[i].Stage, d.Moves[i].Since = placement.StageReadNew, E
				d.MarkChanged(m.Partition, E)
				note("%s: read_new", m)
			}
		case placement.StageReadNew:
			if reached(m.Since) {
				pr := snap.Progress[topology.MoveKey{Partition: m.Partition, Node: m.Add}]
				if d.Promote(m, E) {
					if d.Rebalance == nil {
						d.Rebalance = &placement.Rebalance{StartTime: now}
					}
					d.Rebalance.Moved++
					d.Rebalance.Bytes += pr.Bytes
					res.promoted++
					note("%s: promoted", m)
				}
			}
		}
	}

	// Members done leaving, and replacements done backfilling.
	for _, id := range slices.Sorted(maps.Keys(d.Members)) {
		m := d.Members[id]
		switch m.State {
		case placement.MemberLeaving, placement.MemberDead:
			if !holds(d, id) && !slices.ContainsFunc(d.Moves, func(x placement.Move) bool { return x.Add == id || x.Remove == id }) {
				d.Members[id] = placement.Member{State: placement.MemberRemoved, Zone: m.Zone, Since: now, Reason: fmt.Sprintf("controller: %s and holds nothing", m.State), Incarnation: m.Incarnation}
				note("node %s removed (was %s)", id, m.State)
			}
		case placement.MemberReplacing:
			if !slices.ContainsFunc(d.Moves, func(x placement.Move) bool { return x.Active() && x.Add == id }) {
				d.Members[id] = placement.Member{State: placement.MemberActive, Zone: m.Zone, Since: now, Reason: "controller: replacement backfilled", Incarnation: m.Incarnation}
				note("node %s active: replacement backfilled", id)
			}
		}
	}

	// New moves towards the target.
	target, err := d.Target()
	if err != nil {
		return res
	}
	planned := d.Plan(target, E, placement.PlanOptions{
		MaxMovesPerNode: c.cfg.MaxMovesPerNode,
		Live: func(id string) bool {
			n, ok := snap.Nodes[id]
			return ok && n.State == topology.NodeUp
		},
	})
	for _, m := range planned {
		d.MarkChanged(m.Partition, E)
		d.Moves = append(d.Moves, m)
		note("%s: planned", m)
	}
	// A rebalance begins with the first move while none is running (moves
	// an admin call created, such as a replacement's, included).
	if slices.ContainsFunc(d.Moves, placement.Move.Active) && (d.Rebalance == nil || !d.Rebalance.EndTime.IsZero()) {
		d.Rebalance = &placement.Rebalance{StartTime: now}
	}
	if len(d.Moves) == 0 && d.Rebalance != nil && d.Rebalance.EndTime.IsZero() && placement.Diff(d.Table(), target) == 0 {
		d.Rebalance.EndTime = now
		note("rebalance done: %d moves, %d bytes", d.Rebalance.Moved, d.Rebalance.Bytes)
	}
	return res
}

// holds reports whether id is in any replica set.
func holds(d *placement.Document, id string) bool {
	for _, set := range d.Replicas {
		if slices.Contains(set, id) {
			return true
		}
	}
	return false
}

// moveExists reports whether a progress report belongs to a move of d: the
// backfill of an active move's Add, or a cleanup's Remove.
func moveExists(d *placement.Document, k topology.MoveKey) bool {
	return slices.ContainsFunc(d.Moves, func(m placement.Move) bool {
		if m.Partition != k.Partition {
			return false
		}
		if m.Active() {
			return m.Add == k.Node
		}
		return m.Remove == k.Node
	})
}

// trackAbsence updates when each member was first seen unregistered since
// this router became leader (conservative: a failover restarts the clock).
func (c *Controller) trackAbsence(snap *topology.Snapshot, now time.Time) {
	for id := range c.absent {
		if _, ok := snap.Nodes[id]; ok {
			delete(c.absent, id)
		}
	}
	if snap.Placement == nil {
		return
	}
	ids := map[string]bool{}
	for id := range snap.Placement.Members {
		ids[id] = true
	}
	for _, set := range snap.Placement.Replicas {
		for _, id := range set {
			ids[id] = true
		}
	}
	for id := range ids {
		if _, ok := snap.Nodes[id]; !ok {
			if _, seen := c.absent[id]; !seen {
				c.absent[id] = now
			}
		}
	}
}

// rebalance runs one iteration: the transitions for the current snapshot,
// written as one placement update, then the progress reports of moves that
// no longer exist are deleted.
func (c *Controller) rebalance(ctx context.Context) error {
	snap := c.watcher.Snapshot()
	if snap.Placement == nil {
		return nil
	}
	now := time.Now().UTC()
	c.trackAbsence(snap, now)
	var res stepResult
	doc, err := c.store.UpdatePlacement(ctx, func(d *placement.Document) error {
		res = c.step(d, snap, now)
		return nil
	})
	if err != nil {
		return fmt.Errorf("controller: update placement: %w", err)
	}
	for _, e := range res.events {
		c.cfg.Logger.Info("controller: "+e, "epoch", doc.Epoch)
	}
	c.metrics.Completed.Add(float64(res.promoted))
	for k := range snap.Progress {
		if !moveExists(&doc, k) {
			if err := c.store.DeleteMoveProgress(ctx, k.Partition, k.Node); err != nil {
				return err
			}
		}
	}
	c.observe(&doc, snap)
	return nil
}

// observe sets the gauges from the document and the snapshot.
func (c *Controller) observe(d *placement.Document, snap *topology.Snapshot) {
	counts := map[placement.Stage]int{}
	var bytes uint64
	for _, m := range d.Moves {
		counts[m.Stage]++
		if m.Active() {
			bytes += snap.Progress[topology.MoveKey{Partition: m.Partition, Node: m.Add}].Bytes
		}
	}
	for _, s := range []placement.Stage{placement.StagePending, placement.StageStreaming, placement.StageReadNew, placement.StageCleanup} {
		c.metrics.InFlight.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	if d.Rebalance != nil {
		bytes += d.Rebalance.Bytes
	}
	c.metrics.BytesStreamed.Set(float64(bytes))
	pending := 0
	if target, err := d.Target(); err == nil {
		for p := range d.Replicas {
			if p < len(target.Replicas) && placement.Diff(placement.Table{Replicas: d.Replicas[p : p+1]}, placement.Table{Replicas: target.Replicas[p : p+1]}) > 0 {
				pending++
			}
		}
	}
	c.metrics.Pending.Set(float64(pending))
	c.metrics.UnderReplicated.Set(float64(UnderReplicated(d, snap.Nodes)))
}

// UnderReplicated counts the partitions whose read set has fewer
// registered members than the replication factor.
func UnderReplicated(d *placement.Document, nodes map[string]topology.Node) int {
	n := 0
	for p := range d.Replicas {
		live := 0
		for _, id := range d.Routing(uint32(p)).Read.Members {
			if _, ok := nodes[id]; ok {
				live++
			}
		}
		if live < d.RF {
			n++
		}
	}
	return n
}
