package server

import (
	"context"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/topology"
)

// The node reports the placement epoch it has seen in its registration
// (topology.Node.PlacementEpoch); the controller takes a move's next step
// only once every node and router reports the epoch of the last one
// (Snapshot.Reached). Reporting an epoch promises that no write checked
// against an older placement is still being applied: the reporter waits
// for such writes (inflightWrites) before it reports.

const (
	// reportInterval is how often the reporter looks for something to
	// report, besides topology changes.
	reportInterval = 250 * time.Millisecond
	// reportMinGap spaces the registration updates: at most a few a
	// second, however fast the placement changes.
	reportMinGap = 200 * time.Millisecond
	// usedBytesInterval is how often the node reports its disk usage.
	usedBytesInterval = time.Minute
	// writeDrainWait bounds one wait for writes checked against an older
	// placement to finish; the reporter tries again on its next tick.
	writeDrainWait = 2 * time.Second
)

// inflightWrites counts the writes being applied, by the placement epoch
// they were checked against.
type inflightWrites struct {
	mu      sync.Mutex
	byEpoch map[uint64]int
}

// begin records a write checked against epoch; the returned func ends it.
func (w *inflightWrites) begin(epoch uint64) func() {
	w.mu.Lock()
	if w.byEpoch == nil {
		w.byEpoch = map[uint64]int{}
	}
	w.byEpoch[epoch]++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		if w.byEpoch[epoch]--; w.byEpoch[epoch] == 0 {
			delete(w.byEpoch, epoch)
		}
		w.mu.Unlock()
	}
}

// before reports whether a write checked against an epoch older than
// epoch is in flight.
func (w *inflightWrites) before(epoch uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for e := range w.byEpoch {
		if e < epoch {
			return true
		}
	}
	return false
}

// drained waits until no write checked against an epoch older than epoch
// is in flight; false if some still are after writeDrainWait.
func (w *inflightWrites) drained(ctx context.Context, epoch uint64) bool {
	deadline := time.Now().Add(writeDrainWait)
	for w.before(epoch) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// registration returns the node's registration, nil while it is not
// registered (a start without etcd).
func (s *Server) registration() *topology.Registration {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	return s.reg
}

func (s *Server) setRegistration(r *topology.Registration) {
	s.regMu.Lock()
	s.reg = r
	s.regMu.Unlock()
}

// usedBytes is the space the node's Pebble store takes on disk.
func (s *Server) usedBytes() uint64 {
	if m := s.eng.PebbleMetrics(); m != nil {
		return m.DiskSpaceUsage()
	}
	return 0
}

// reportLoop keeps the registration's PlacementEpoch at the epoch the node
// has seen (coalescing changes, at most one update per reportMinGap) and
// its UsedBytes fresh (every usedBytesInterval), until ctx ends. It never
// holds the watcher up: it only reads snapshots.
func (s *Server) reportLoop(ctx context.Context) {
	defer s.bg.Done()
	changes := s.watcher.Changes()
	defer s.watcher.StopChanges(changes)
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	var lastPut time.Time
	lastUsed := time.Now() // the registration carried it
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-t.C:
		}
		reg := s.registration()
		if reg == nil {
			continue
		}
		s.nodeMu.Lock()
		n := s.node
		s.nodeMu.Unlock()
		epoch := s.watcher.Snapshot().Epoch()
		usedDue := time.Since(lastUsed) >= usedBytesInterval
		if (epoch <= n.PlacementEpoch && !usedDue) || time.Since(lastPut) < reportMinGap {
			continue
		}
		if epoch > n.PlacementEpoch {
			if !s.writes.drained(ctx, epoch) {
				continue
			}
			n.PlacementEpoch = epoch
		}
		if usedDue {
			n.UsedBytes = s.usedBytes()
			st := s.eng.Stats()
			n.CacheHits, n.CacheMisses = st.CacheHits, st.CacheMisses
		}
		uctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
		err := reg.Update(uctx, n)
		cancel()
		lastPut = time.Now()
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Info("registration not updated; retrying", "placement_epoch", n.PlacementEpoch, "err", err)
			}
			continue
		}
		s.nodeMu.Lock()
		s.node = n
		s.nodeMu.Unlock()
		if usedDue {
			lastUsed = time.Now()
		}
	}
}
