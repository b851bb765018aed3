package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// randomMutations returns versioned puts and deletes over a few keys, with
// versions drawn from a small range so equal versions with different
// contents are common, and with duplicates.
func randomMutations(rng *rand.Rand, n int) []Record {
	values := [][]byte{{}, []byte("a"), []byte("b"), []byte("ab"), bytes.Repeat([]byte("x"), 300)}
	var muts []Record
	for range n {
		r := Record{
			Key: Key{
				Partition:    uint32(rng.IntN(3)),
				TableID:      uint64(1 + rng.IntN(2)),
				PartitionKey: fmt.Appendf(nil, "pk%d", rng.IntN(4)),
				SortKey:      fmt.Appendf(nil, "sk%d", rng.IntN(5)),
			},
			Version: uint64(1 + rng.IntN(8)),
		}
		switch rng.IntN(4) {
		case 0:
			r.Tombstone = true
		case 1:
			r.Value = values[rng.IntN(len(values))]
			r.ExpireAt = t0.Add(time.Duration(rng.IntN(3)) * time.Hour).UnixNano()
		default:
			r.Value = values[rng.IntN(len(values))]
		}
		muts = append(muts, r)
	}
	for range n / 4 { // duplicates
		muts = append(muts, muts[rng.IntN(len(muts))])
	}
	return muts
}

// applyShuffled applies muts in a random order, in batches of random size,
// from several goroutines when concurrent is set.
func applyShuffled(t *testing.T, e *Engine, muts []Record, rng *rand.Rand, concurrent bool) {
	t.Helper()
	order := slices.Clone(muts)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var batches [][]Record
	for len(order) > 0 {
		n := min(1+rng.IntN(8), len(order))
		batches = append(batches, order[:n])
		order = order[n:]
	}
	if !concurrent {
		for _, b := range batches {
			if _, err := e.Apply(b); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(batches); i += 4 {
				if _, err := e.Apply(batches[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestConvergence: a random set of versioned mutations applied in two random
// orders, with duplicates, gives byte-identical partition streams and equal
// digests, and the state the LWW rule predicts.
func TestConvergence(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			muts := randomMutations(rng, 300)
			clock := newTestClock()
			clock.Advance(90 * time.Minute) // some items are expired, some not
			a := openTest(t, Options{Now: clock.Now})
			b := openTest(t, Options{Now: clock.Now, Cache: newMapCache()})
			applyShuffled(t, a, muts, rng, false)
			applyShuffled(t, b, muts, rng, true)

			model := make(map[string]stored)
			for i := range muts {
				k := string(EncodeKey(muts[i].Key))
				s := recordState(&muts[i], 0)
				if cur, ok := model[k]; !ok || compareLWW(&s, &cur) > 0 {
					model[k] = s
				}
			}
			for p := range uint32(3) {
				sa, sb := streamAll(t, a, p), streamAll(t, b, p)
				if !slices.EqualFunc(sa, sb, bytes.Equal) {
					t.Fatalf("partition %d: streams differ:\n%q\n%q", p, sa, sb)
				}
				var want [][]byte
				for k, s := range model {
					key, _ := DecodeKey([]byte(k))
					if key.Partition == p {
						want = append(want, canonical(s.record(key)))
					}
				}
				// No key here is a prefix of another, so byte order is key order.
				slices.SortFunc(want, bytes.Compare)
				if !slices.EqualFunc(sa, want, bytes.Equal) {
					t.Fatalf("partition %d: stream differs from the LWW model:\n%q\n%q", p, sa, want)
				}
				da, err := a.Digest(p)
				if err != nil {
					t.Fatal(err)
				}
				db, err := b.Digest(p)
				if err != nil {
					t.Fatal(err)
				}
				if da != db || da.Count != uint64(len(want)) {
					t.Fatalf("partition %d: digests %+v and %+v, %d records", p, da, db, len(want))
				}
			}
			checkDigests(t, a)
			checkDigests(t, b)
			// Point reads agree too, through b's cache.
			sameGets(t, a, b, muts)
		})
	}
}
