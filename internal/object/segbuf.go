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

// segBuf is one segment's plaintext and ciphertext buffers.
type segBuf struct {
	buf []byte // off-heap memory behind pt and ct, or nil
	pt  []byte // empty, with room for a segment's plaintext
	ct  []byte // empty, with room for its ciphertext
}

// take gives b room for a segment of up to segSize bytes: pooled memory
// for the default size or less, the heap for larger segments.
func (b *segBuf) take(segSize int) error {
	if segSize > DefaultSegmentSize {
		b.pt, b.ct = make([]byte, 0, segSize), make([]byte, 0, format.SegmentCTLen(uint64(segSize)))
		return nil
	}
	m, err := segBufs.Get()
	if err != nil {
		return err
	}
	b.buf, b.pt, b.ct = m, m[:0:DefaultSegmentSize], m[DefaultSegmentSize:DefaultSegmentSize]
	return nil
}

// give returns b's memory; nothing may use b's slices afterwards.
func (b *segBuf) give() {
	if b.buf != nil {
		segBufs.Put(b.buf)
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
