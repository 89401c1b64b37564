package object

import (
	"runtime"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/offheap"
)

// segBufs keeps idle buffers for segments of up to DefaultSegmentSize
// outside the Go heap (see package offheap): enough for one pipelined
// object on every core, reused by the objects that follow. Sealing and
// opening share them.
var segBufs = offheap.NewPool(DefaultSegmentSize+int(format.SegmentCTLen(DefaultSegmentSize)), runtime.GOMAXPROCS(0)+2)

// smallSegment is the largest segment (or piece) that takes a buffer from
// smallBufs: small objects, the common case of many requests at once, then
// neither map nor populate a default-size buffer each (an 8 MiB mapping
// for a 4 KiB read cost more than the rest of the read).
const smallSegment = 256 << 10

// smallBufs keeps idle buffers for segments of up to smallSegment: enough
// for a busy gateway's concurrent small reads and writes (32 × ½ MiB).
var smallBufs = offheap.NewPool(smallSegment+int(format.SegmentCTLen(smallSegment)), 32)

// sealBudget bounds the default-size segment buffers that sealing holds
// at once in the process (each 4 MiB of plaintext and its ciphertext,
// about 8 MiB): two pipelines at full width. However many large objects
// are written at once — a gateway taking 32 large uploads — their segment
// buffers stay within it. A pipeline waits for its first buffer and takes
// more only while the budget has them, so it never waits holding one: no
// pipeline can block another for good, and one alone runs at full width.
// Opening is not bounded here: a copy opens its source and seals its
// copy, and a budget shared by both could deadlock; a gateway's reads are
// bounded by its request limit.
var sealBudget = newBudget(2 * (runtime.GOMAXPROCS(0) + 2))

// budget counts units out of a fixed number.
type budget struct {
	mu        sync.Mutex
	cond      *sync.Cond
	n, free   int
	leastFree int // the fewest free units seen (tests)
}

func newBudget(n int) *budget {
	b := &budget{n: n, free: n, leastFree: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire() {
	b.mu.Lock()
	for b.free == 0 {
		b.cond.Wait()
	}
	b.free--
	b.leastFree = min(b.leastFree, b.free)
	b.mu.Unlock()
}

func (b *budget) tryAcquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.free == 0 {
		return false
	}
	b.free--
	b.leastFree = min(b.leastFree, b.free)
	return true
}

func (b *budget) release() {
	b.mu.Lock()
	b.free++
	b.mu.Unlock()
	b.cond.Signal()
}

// segBuf is one segment's plaintext and ciphertext buffers.
type segBuf struct {
	buf  []byte        // off-heap memory behind pt and ct, or nil
	pool *offheap.Pool // where buf goes back
	pt   []byte        // empty, with room for a segment's plaintext
	ct   []byte        // empty, with room for its ciphertext
	bud  *budget       // holds a unit of it, or nil
}

// take gives b room for a segment of up to segSize bytes: pooled memory
// of the smallest class that fits, the heap for segments above the
// default size. A default-size buffer waits for a unit of bud, if any.
func (b *segBuf) take(segSize int, bud *budget) error {
	if bud != nil && segBudgeted(segSize) {
		bud.acquire()
	}
	return b.takeHeld(segSize, bud)
}

// segBudgeted reports whether a buffer for segments of segSize bytes
// takes a unit of a budget: default-size ones do; small ones come from
// their own bounded pool and larger ones (a multipart part's segment,
// opened in pieces) from the heap.
func segBudgeted(segSize int) bool {
	return segSize > smallSegment && segSize <= DefaultSegmentSize
}

// takeHeld is take for a caller that already holds a unit of bud for it
// when segBudgeted(segSize) (bud nil: no budget); b keeps the unit and
// give releases it — or takeHeld does, if it fails.
func (b *segBuf) takeHeld(segSize int, bud *budget) error {
	if segSize > DefaultSegmentSize {
		b.pt, b.ct = make([]byte, 0, segSize), make([]byte, 0, format.SegmentCTLen(uint64(segSize)))
		return nil
	}
	pool, size := segBufs, DefaultSegmentSize
	if segSize <= smallSegment {
		pool, size = smallBufs, smallSegment
	}
	if !segBudgeted(segSize) {
		bud = nil
	}
	m, err := pool.Get()
	if err != nil {
		if bud != nil {
			bud.release()
		}
		return err
	}
	b.buf, b.pool, b.pt, b.ct, b.bud = m, pool, m[:0:size], m[size:size], bud
	return nil
}

// give returns b's memory; nothing may use b's slices afterwards.
func (b *segBuf) give() {
	if b.buf != nil {
		b.pool.Put(b.buf)
	}
	if b.bud != nil {
		b.bud.release()
	}
	*b = segBuf{}
}

// nextBuf is a pipeline reader's next buffer: an idle one from free, else
// a new one from grow while it makes one (ok), else the next to come back
// to free. Once stop is closed it returns the zero J, and no new buffer is
// made for a pipeline that has already failed.
func nextBuf[J any](free <-chan J, stop <-chan struct{}, grow func() (j J, ok bool, err error)) (J, error) {
	var zero J
	select {
	case j := <-free:
		return j, nil
	case <-stop:
		return zero, nil
	default:
	}
	if j, ok, err := grow(); err != nil || ok {
		return j, err
	}
	select {
	case j := <-free:
		return j, nil
	case <-stop:
		return zero, nil
	}
}

// releaseWhenStopped runs release now if the pipeline finished cleanly
// (every buffer is idle), else once its goroutines, counted by running,
// have all stopped: after a failure a reader may still be blocked on its
// source and workers may still hold buffers.
func releaseWhenStopped(finished bool, running *sync.WaitGroup, release func()) {
	if finished {
		release()
		return
	}
	go func() { running.Wait(); release() }()
}

// readView runs read, which reads view: a mapping of a file another
// process can cut short, or whose pages may fail to be read in. A memory
// fault inside view ends read and readView reports it (faulted); any
// other panic, a fault elsewhere included (a bug), goes on.
func readView(view []byte, read func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		f, ok := r.(interface{ Addr() uintptr })
		base := uintptr(unsafe.Pointer(unsafe.SliceData(view)))
		if !ok || len(view) == 0 || f.Addr() < base || f.Addr()-base >= uintptr(len(view)) {
			panic(r)
		}
		faulted = true
	}()
	read()
	return false
}
