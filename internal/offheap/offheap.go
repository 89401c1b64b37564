// Package offheap provides large byte buffers outside the Go heap: anonymous
// private mappings, excluded from core dumps (MADV_DONTDUMP), reused through
// fixed-size pools.
//
// Holdfast streams objects through a handful of segment and part buffers
// of several MiB each. Kept on the Go heap, they set the collector's heap
// goal to about twice their size, so how far the heap grows past them
// depends on how much garbage a run happens to make before the next
// collection: peak memory then varies with the length of the stream. Kept
// here, the buffers are a fixed cost and the heap holds only small objects.
// Plaintext passes through these buffers, so they are also kept out of
// core dumps.
//
// A buffer from Alloc or Pool.Get must not be used after it is freed; the
// memory is unmapped and any access faults. Pools therefore never unmap the
// buffers they keep, only those above their limit, and callers hand a
// buffer back only once nothing else refers to it.
package offheap

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Alloc maps n bytes of zeroed memory outside the Go heap.
func Alloc(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("offheap: invalid size %d", n)
	}
	// Not populated: a page becomes resident when it is first written,
	// by whichever thread writes it — a pipeline's reader and workers
	// share that cost, in parallel, instead of its starter paying for
	// every page first — and a buffer only partly used (the last segment
	// of an object) costs only the part used.
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("offheap: mapping %d bytes: %w", n, err)
	}
	// Best effort: kernels before 3.4 lack MADV_DONTDUMP.
	_ = unix.Madvise(b, unix.MADV_DONTDUMP)
	return b, nil
}

// Free unmaps b, which must have come from Alloc (any length of it: the
// whole mapping is released). The kernel zeroes the pages before it hands
// them to anyone else.
func Free(b []byte) error {
	if cap(b) == 0 {
		return nil
	}
	return unix.Munmap(b[:cap(b)])
}

// Pool hands out buffers of one size and keeps up to a fixed number of
// returned ones for reuse; it frees the rest. Its zero value is not usable.
type Pool struct {
	size, keep int
	mu         sync.Mutex
	free       [][]byte
	out        int // handed out by Get and not yet returned
}

// NewPool returns a pool of size-byte buffers that keeps at most keep idle
// buffers mapped.
func NewPool(size, keep int) *Pool {
	return &Pool{size: size, keep: keep}
}

// Size is the length of the pool's buffers.
func (p *Pool) Size() int { return p.size }

// Get returns a buffer of the pool's size: an idle one (holding whatever
// its last user left) or a new zeroed one.
func (p *Pool) Get() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.out++
		return b, nil
	}
	b, err := Alloc(p.size)
	if err == nil {
		p.out++
	}
	return b, err
}

// Put returns b, from Get, to the pool. The caller must not use b again.
func (p *Pool) Put(b []byte) {
	b = b[:cap(b)]
	if len(b) != p.size {
		panic("offheap: buffer returned to the wrong pool")
	}
	p.mu.Lock()
	p.out--
	if len(p.free) < p.keep {
		p.free = append(p.free, b)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = Free(b)
}

// Outstanding reports how many buffers Get has handed out that have not
// come back.
func (p *Pool) Outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out
}

// Idle reports how many buffers the pool keeps mapped for reuse.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
