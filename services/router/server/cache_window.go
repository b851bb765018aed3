package server

import (
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/topology"
)

// Sampling of the storage nodes' cache counters for the windowed
// cache_hit_ratio criterion.
const (
	// cacheSampleEvery is how often the router records the counters the
	// nodes registered (they refresh them every minute or so).
	cacheSampleEvery = 30 * time.Second
	// cacheWindow is the longest window, as for the routers' figures.
	cacheWindow = time.Hour
)

// cacheCounts is one node's cumulative point-read counters.
type cacheCounts struct{ hits, misses uint64 }

type cacheSample struct {
	at    time.Time
	nodes map[string]cacheCounts
}

// cacheSampler keeps the storage nodes' cumulative cache counters as seen
// in their registrations every cacheSampleEvery over the last hour, so the
// cache hit ratio can be judged over the same window as the other criteria
// (the last hour or the time in phase): the difference of the counters now
// and at the window's start. The samples are in the router's memory: after a
// restart the window starts at the router's first sample.
type cacheSampler struct {
	mu      sync.Mutex
	samples []cacheSample // oldest first
}

// observe records snap's counters at now if the last sample is older than
// cacheSampleEvery, and forgets the samples no window needs any more.
func (c *cacheSampler) observe(now time.Time, snap *topology.Snapshot) {
	if snap == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.samples); n > 0 && now.Sub(c.samples[n-1].at) < cacheSampleEvery {
		return
	}
	s := cacheSample{at: now, nodes: make(map[string]cacheCounts, len(snap.Nodes))}
	for id, n := range snap.Nodes {
		s.nodes[id] = cacheCounts{hits: n.CacheHits, misses: n.CacheMisses}
	}
	c.samples = append(c.samples, s)
	// Keep one sample at or before now-cacheWindow as the oldest baseline.
	drop := 0
	for drop+1 < len(c.samples) && !c.samples[drop+1].at.After(now.Add(-cacheWindow)) {
		drop++
	}
	c.samples = append(c.samples[:0], c.samples[drop:]...)
}

// windowed returns the hits and misses of the point reads the storage
// nodes served between from and now (cur holds the counters now), and the
// time the figure actually starts at: from, or the router's oldest sample
// when it has none as old (it started since).
//
// Per node: cur minus the newest sample at or before from; a node absent
// from that sample joined since, so all its counts are in the window; a
// counter below its baseline means the node restarted, and its counts
// since then are.
func (c *cacheSampler) windowed(from time.Time, cur *topology.Snapshot) (hits, misses uint64, since time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	since = from
	var base *cacheSample
	for i := range c.samples {
		if c.samples[i].at.After(from) {
			break
		}
		base = &c.samples[i]
	}
	if base == nil && len(c.samples) > 0 {
		base = &c.samples[0]
		since = base.at
	}
	for id, n := range cur.Nodes {
		var b cacheCounts
		if base != nil {
			b = base.nodes[id]
		}
		if n.CacheHits < b.hits || n.CacheMisses < b.misses {
			b = cacheCounts{}
		}
		hits += n.CacheHits - b.hits
		misses += n.CacheMisses - b.misses
	}
	return hits, misses, since
}
