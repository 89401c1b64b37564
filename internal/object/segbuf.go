package object

import (
	"runtime"
	"sync"

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

// segBuf is one segment's plaintext and ciphertext buffers.
type segBuf struct {
	buf  []byte        // off-heap memory behind pt and ct, or nil
	pool *offheap.Pool // where buf goes back
	pt   []byte        // empty, with room for a segment's plaintext
	ct   []byte        // empty, with room for its ciphertext
}

// take gives b room for a segment of up to segSize bytes: pooled memory
// of the smallest class that fits, the heap for segments above the
// default size.
func (b *segBuf) take(segSize int) error {
	if segSize > DefaultSegmentSize {
		b.pt, b.ct = make([]byte, 0, segSize), make([]byte, 0, format.SegmentCTLen(uint64(segSize)))
		return nil
	}
	pool, size := segBufs, DefaultSegmentSize
	if segSize <= smallSegment {
		pool, size = smallBufs, smallSegment
	}
	m, err := pool.Get()
	if err != nil {
		return err
	}
	b.buf, b.pool, b.pt, b.ct = m, pool, m[:0:size], m[size:size]
	return nil
}

// give returns b's memory; nothing may use b's slices afterwards.
func (b *segBuf) give() {
	if b.buf != nil {
		b.pool.Put(b.buf)
	}
	*b = segBuf{}
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
