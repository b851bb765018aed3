package lirs

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// counter is a striped event counter. One atomic counter bumped by every
// Get would be a cache line all cores write, which is exactly the contention
// the lock-free read path avoids.
type counter struct {
	stripes []paddedUint64
	mask    uintptr
}

type paddedUint64 struct {
	n atomic.Uint64
	_ [56]byte
}

func newCounter() counter {
	n := 1 << bits.Len(uint(4*runtime.GOMAXPROCS(0)-1))
	n = min(n, 64)
	return counter{stripes: make([]paddedUint64, n), mask: uintptr(n - 1)}
}

func (c *counter) inc() {
	c.stripes[stripeHint()&c.mask].n.Add(1)
}

func (c *counter) load() uint64 {
	var n uint64
	for i := range c.stripes {
		n += c.stripes[i].n.Load()
	}
	return n
}

// stripeHint picks a stripe from the address of the caller's stack: each
// goroutine has its own stack, so goroutines running in parallel mostly land
// on different stripes, at the cost of one multiply (no random number, no
// goroutine id). The address is only hashed, never turned back into a
// pointer.
func stripeHint() uintptr {
	var b byte
	p := uintptr(unsafe.Pointer(&b))
	return uintptr(uint64(p>>11) * 0x9E3779B97F4A7C15 >> 58)
}
