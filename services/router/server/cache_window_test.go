package server

import (
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/topology"
)

func cacheSnap(counts map[string][2]uint64) *topology.Snapshot {
	s := &topology.Snapshot{Nodes: map[string]topology.Node{}}
	for id, c := range counts {
		s.Nodes[id] = topology.Node{ID: id, CacheHits: c[0], CacheMisses: c[1]}
	}
	return s
}

// TestCacheSamplerWindow: the cache hit ratio is judged on the point reads
// of the window, not on the counters since the nodes started. A cold
// start (1000 misses) before the phase began must not fail a phase whose
// reads all hit, and a node that restarted or joined in the window counts
// from zero.
func TestCacheSamplerWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	type obs struct {
		at     time.Duration
		counts map[string][2]uint64
	}
	tests := []struct {
		name         string
		obs          []obs
		from         time.Duration
		now          map[string][2]uint64
		hits, misses uint64
		since        time.Duration
	}{
		{"cold start before the window is left out",
			[]obs{{0, map[string][2]uint64{"n1": {0, 1000}}}, {time.Minute, map[string][2]uint64{"n1": {10, 1000}}}},
			time.Minute, map[string][2]uint64{"n1": {1010, 1001}}, 1000, 1, time.Minute},
		{"baseline is the newest sample at or before the start",
			[]obs{{0, map[string][2]uint64{"n1": {0, 0}}}, {30 * time.Second, map[string][2]uint64{"n1": {5, 5}}}, {90 * time.Second, map[string][2]uint64{"n1": {50, 50}}}},
			time.Minute, map[string][2]uint64{"n1": {100, 5}}, 95, 0, time.Minute},
		{"node restarted in the window counts from zero",
			[]obs{{0, map[string][2]uint64{"n1": {500, 500}, "n2": {100, 0}}}},
			time.Minute, map[string][2]uint64{"n1": {20, 1}, "n2": {150, 0}}, 70, 1, time.Minute},
		{"node joined in the window counts whole",
			[]obs{{0, map[string][2]uint64{"n1": {0, 0}}}},
			time.Minute, map[string][2]uint64{"n1": {10, 0}, "n2": {30, 3}}, 40, 3, time.Minute},
		{"router younger than the window starts at its first sample",
			[]obs{{2 * time.Minute, map[string][2]uint64{"n1": {0, 900}}}},
			time.Minute, map[string][2]uint64{"n1": {100, 900}}, 100, 0, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c cacheSampler
			for _, o := range tt.obs {
				c.observe(t0.Add(o.at), cacheSnap(o.counts))
			}
			hits, misses, since := c.windowed(t0.Add(tt.from), cacheSnap(tt.now))
			if hits != tt.hits || misses != tt.misses || !since.Equal(t0.Add(tt.since)) {
				t.Fatalf("windowed = %d hits, %d misses since %s; want %d, %d since %s",
					hits, misses, since, tt.hits, tt.misses, t0.Add(tt.since))
			}
		})
	}
}

// TestCacheSamplerKeepsAnHour: samples older than the window are dropped
// but for one baseline, and observe samples at most every 30 s.
func TestCacheSamplerKeepsAnHour(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var c cacheSampler
	for i := 0; i <= 240; i++ { // every 15 s for an hour
		c.observe(t0.Add(time.Duration(i)*15*time.Second), cacheSnap(map[string][2]uint64{"n1": {uint64(i), 0}}))
	}
	if n := len(c.samples); n != 121 {
		t.Fatalf("%d samples, want 121 (every 30 s over an hour, plus the baseline)", n)
	}
	if !c.samples[0].at.Equal(t0) {
		t.Fatalf("oldest sample at %s, want %s", c.samples[0].at, t0)
	}
}
