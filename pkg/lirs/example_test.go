package lirs_test

import (
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/lirs"
)

// A byte-bounded cache of encoded records, as a storage node keeps for
// point reads.
func Example() {
	c, err := lirs.New(lirs.Options[string, []byte]{
		Capacity: 64 << 20, // 64 MiB of values
	})
	if err != nil {
		panic(err)
	}
	key, record := "users/42", []byte(`{"name":"Ada"}`)
	c.Set(key, record, int64(len(key)+len(record)))

	if v, ok := c.Get(key); ok {
		fmt.Printf("hit: %s\n", v)
	}
	if _, ok := c.Get("users/43"); !ok {
		fmt.Println("miss")
	}
	st := c.Stats()
	fmt.Printf("hits=%d misses=%d bytes=%d\n", st.Hits, st.Misses, st.Bytes)
	// Output:
	// hit: {"name":"Ada"}
	// miss
	// hits=1 misses=1 bytes=22
}

// A scan does not flush what LIRS knows to be reused: the LIR set survives
// it, where an LRU cache of the same size would have lost every entry.
func Example_scanResistance() {
	c, err := lirs.New(lirs.Options[int, int]{Capacity: 100, Shards: 1})
	if err != nil {
		panic(err)
	}
	get := func(k int) bool {
		if _, ok := c.Get(k); ok {
			return true
		}
		c.Set(k, k, 1)
		return false
	}
	// A working set of 90 keys, referenced twice: they become LIR.
	for range 2 {
		for k := range 90 {
			get(k)
		}
	}
	// A scan of 10,000 keys seen once.
	for k := 1000; k < 11000; k++ {
		get(k)
	}
	hits := 0
	for k := range 90 {
		if get(k) {
			hits++
		}
	}
	fmt.Printf("working set hits after the scan: %d of 90\n", hits)
	// Output:
	// working set hits after the scan: 90 of 90
}

func ExampleOptions_Validate() {
	opts := lirs.Options[string, []byte]{Capacity: -1, Shards: 3, HIRFraction: 2}
	fmt.Println(opts.EnsureDefaults().Validate())
	// Output:
	// lirs: invalid options: Capacity must be positive, got -1; Shards must be a power of two, got 3; HIRFraction must be in (0, 1), got 2
}
