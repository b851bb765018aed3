package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd starts an embedded etcd member and returns a client to it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// lww is the storage nodes' last-writer-wins rule over changes: the higher
// version wins; at equal versions a delete wins, then the greater value.
type lww map[string]cdc.Change

func (m lww) apply(c cdc.Change) {
	k := keyOf(c)
	old, ok := m[k]
	if !ok || wins(c, old) {
		m[k] = c
	}
}

func wins(a, b cdc.Change) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	if (a.Kind == cdc.Delete) != (b.Kind == cdc.Delete) {
		return a.Kind == cdc.Delete
	}
	return valueOf(a) > valueOf(b)
}

// TestStreamsRestart stops the consumer again and again mid-stream — by
// cancelling it, and by failing an apply whose writes did land (a crash
// between the write and the checkpoint) — and restarts it with its etcd
// checkpoints, while the source keeps writing and splitting shards. Every
// record must be applied, replays must carry their first versions, and
// the result must equal the source's final state.
func TestStreamsRestart(t *testing.T) {
	cli := startEtcd(t)
	prefix := topology.NewKeys("test").Job("stream-1") + "/shards/"
	store := checkpoint.NewEtcd(cli, prefix)

	s := newFakeStream(t, "NEW_AND_OLD_IMAGES", streamsfake.Options{})
	rng := rand.New(rand.NewPCG(7, 7))
	final := map[string]string{}
	var seqs []string
	open := []string{"shard-0"}
	s.must(t, s.fake.CreateShard(s.arn, "shard-0", ""))
	home := map[string]string{} // item -> its shard: an item stays in one lineage
	nextShard := 1
	// write puts n random writes into the open shards and sometimes
	// splits one, sending each of its items to one of the children.
	write := func(n int) {
		for range n {
			id := fmt.Sprintf("k%02d", rng.IntN(40))
			sh, ok := home[id]
			if !ok {
				sh = open[rng.IntN(len(open))]
				home[id] = sh
			}
			v := rng.IntN(1000)
			if rng.IntN(5) == 0 {
				v = -1
				final[id] = "deleted"
			} else {
				final[id] = fmt.Sprint(v)
			}
			// Several writes share a second: the sequence orders them.
			if rng.IntN(3) == 0 {
				s.at = s.at.Add(time.Second)
			}
			at := s.at
			seqs = append(seqs, s.put(t, sh, id, v))
			s.at = at
		}
		if rng.IntN(2) == 0 && len(open) < 4 {
			parent := open[0]
			a, b := fmt.Sprintf("shard-%d", nextShard), fmt.Sprintf("shard-%d", nextShard+1)
			nextShard += 2
			s.must(t, s.fake.Split(s.arn, parent, a, b))
			open = append(open[1:], a, b)
			for id, sh := range home {
				if sh == parent {
					home[id] = []string{a, b}[rng.IntN(2)]
				}
			}
		}
	}

	applied := lww{}
	versions := map[string]uint64{}
	var total int
	crashAfter := -1
	var mu sync.Mutex // apply runs for several shards at once
	apply := func(_ context.Context, changes []cdc.Change) error {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range changes {
			if v, ok := versions[c.Seq]; ok && v != c.Version {
				t.Errorf("record %s replayed with version %d, first applied with %d", c.Seq, c.Version, v)
			}
			versions[c.Seq] = c.Version
			applied.apply(c)
			total++
		}
		if crashAfter == 0 {
			return errors.New("crash after writing, before the checkpoint")
		}
		crashAfter--
		return nil
	}

	opts := fastOptions()
	opts.Limit = 7
	write(60)
	for round := 0; round < 8; round++ {
		c, err := cdc.NewStreamsConsumer(s.api, s.arn, cdc.StartPosition{}, store, opts)
		s.must(t, err)
		if round%2 == 0 {
			crashAfter = rng.IntN(4)
			if err := start(t, c.Run, apply).wait(t, 10*time.Second); err == nil || !strings.Contains(err.Error(), "crash") {
				t.Fatalf("round %d: Run = %v, want the crash", round, err)
			}
		} else {
			crashAfter = -1
			r := start(t, c.Run, apply)
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			if err := r.stop(t); err != nil && !isCanceled(err) {
				t.Fatalf("round %d: Run = %v", round, err)
			}
		}
		write(40)
	}
	for _, sh := range open {
		s.must(t, s.fake.CloseShard(s.arn, sh))
	}
	crashAfter = -1
	c, err := cdc.NewStreamsConsumer(s.api, s.arn, cdc.StartPosition{}, store, opts)
	s.must(t, err)
	if err := start(t, c.Run, apply).wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	for _, seq := range seqs {
		if _, ok := versions[seq]; !ok {
			t.Errorf("record %s was never applied", seq)
		}
	}
	if len(versions) != len(seqs) {
		t.Errorf("applied %d distinct records, put %d", len(versions), len(seqs))
	}
	for id, want := range final {
		if got := valueOf(applied[id]); got != want {
			t.Errorf("item %s = %s, source has %s", id, got, want)
		}
	}
	cps, err := store.List(t.Context())
	s.must(t, err)
	for name, cp := range cps {
		if !cp.Done {
			t.Errorf("checkpoint %s not done after the stream ended: %+v", name, cp)
		}
	}
	t.Logf("%d records, %d applies (%d replays), %d shards", len(seqs), total, total-len(seqs), len(cps))
}
