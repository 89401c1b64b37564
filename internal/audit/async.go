package audit

import (
	"errors"
	"sync"
	"time"
)

// Async appends entries from a request path without making the request
// wait for a sync: Add queues (never blocks), and one goroutine appends
// what has queued with one write and one sync, and writes a checkpoint
// every Interval in which something was appended. An entry queued but
// not yet appended when the process dies is lost (docs/audit.md).
type Async struct {
	w        *Writer
	ch       chan Entry
	stop     chan struct{}
	done     chan struct{}
	interval time.Duration
	onErr    func(err error, lost int)
	once     sync.Once

	mu          sync.Mutex
	failingFrom time.Time // when the appends began to fail (zero: the last one worked)
	lastErr     error
}

// maxBatch bounds one append.
const maxBatch = 512

// NewAsync starts appending to w. queue bounds the entries waiting;
// interval (0: none) is how often a checkpoint is written while entries
// come; onErr hears every failed append (with the number of entries it
// lost) and every entry dropped because the queue was full.
func NewAsync(w *Writer, queue int, interval time.Duration, onErr func(err error, lost int)) *Async {
	a := &Async{w: w, ch: make(chan Entry, max(queue, 1)), stop: make(chan struct{}), done: make(chan struct{}),
		interval: interval, onErr: onErr}
	go a.run()
	return a
}

// ErrQueueFull: an entry was dropped because the writer fell behind.
var ErrQueueFull = errors.New("the audit queue is full: an entry was dropped")

// Add queues e; if the queue is full it is dropped and reported.
func (a *Async) Add(e Entry) {
	if e.Time.IsZero() {
		e.Time = a.w.now()
	}
	select {
	case a.ch <- e:
	default:
		a.onErr(ErrQueueFull, 1)
	}
}

func (a *Async) run() {
	defer close(a.done)
	var tick <-chan time.Time
	if a.interval > 0 {
		t := time.NewTicker(a.interval)
		defer t.Stop()
		tick = t.C
	}
	dirty := false
	batch := make([]Entry, 0, maxBatch)
	for {
		select {
		case e := <-a.ch:
			batch = append(batch[:0], e)
			batch = a.drain(batch)
			a.failed(a.w.Append(batch...), len(batch))
			dirty = true
		case <-tick:
			if dirty {
				a.failed(a.w.Checkpoint(), 0)
				dirty = false
			}
		case <-a.stop:
			return // Close appends what is queued
		}
	}
}

// failed notes the outcome of one append (err nil: it worked) and
// reports a failure to onErr.
func (a *Async) failed(err error, lost int) {
	a.mu.Lock()
	if err == nil {
		a.failingFrom, a.lastErr = time.Time{}, nil
	} else {
		if a.failingFrom.IsZero() {
			a.failingFrom = a.w.now()
		}
		a.lastErr = err
	}
	a.mu.Unlock()
	if err != nil {
		a.onErr(err, lost)
	}
}

// Failing reports whether the last append failed: since when appends
// have failed, and the last error (zero and nil: auditing works).
func (a *Async) Failing() (since time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failingFrom, a.lastErr
}

// drain adds to batch what is queued now, up to maxBatch.
func (a *Async) drain(batch []Entry) []Entry {
	for len(batch) < maxBatch {
		select {
		case e := <-a.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// Close appends what is queued, then writes the final checkpoint. Add
// must not be called after Close.
func (a *Async) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	for rest := a.drain(nil); len(rest) > 0; rest = a.drain(nil) {
		a.failed(a.w.Append(rest...), len(rest))
	}
	return a.w.Close()
}
