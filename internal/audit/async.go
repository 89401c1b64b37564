package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Async appends entries from a request path without making the request
// wait for a sync: Add queues (never blocks), and one goroutine appends
// what has queued with one write and one sync, and writes a checkpoint
// every Interval in which something was appended. An entry queued but
// not yet appended when the process dies is lost (docs/audit.md).
type Async struct {
	w         *Writer
	ch        chan item
	stop      chan struct{}
	done      chan struct{}
	closed    chan struct{} // closed when Close has appended what was queued
	interval  time.Duration
	onErr     func(err error, lost int)
	once      sync.Once
	closeOnce sync.Once

	mu          sync.Mutex
	failingFrom time.Time // when the appends began to fail (zero: the last one worked)
	lastErr     error
}

// item is one queued entry; done, if not nil, hears the outcome of the
// append that takes it (Wait).
type item struct {
	e    Entry
	done chan error
}

// maxBatch bounds one append.
const maxBatch = 512

// NewAsync starts appending to w. queue bounds the entries waiting;
// interval (0: none) is how often a checkpoint is written while entries
// come; onErr hears every failed append (with the number of entries it
// lost) and every entry dropped because the queue was full.
func NewAsync(w *Writer, queue int, interval time.Duration, onErr func(err error, lost int)) *Async {
	a := &Async{w: w, ch: make(chan item, max(queue, 1)), stop: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{}),
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
	case a.ch <- item{e: e}:
	default:
		a.onErr(ErrQueueFull, 1)
	}
}

// Wait queues e and waits for the append that takes it: nil means e is
// in the log, synced (entries queued together share one write and one
// sync). A full queue makes it wait for room, not drop e; ctx bounds the
// wait for room (an entry queued is appended whatever ctx does). A
// failed append is reported to onErr as well. After Close it returns
// ErrClosed (an entry queued too late is not written).
func (a *Async) Wait(ctx context.Context, e Entry) error {
	if e.Time.IsZero() {
		e.Time = a.w.now()
	}
	it := item{e: e, done: make(chan error, 1)}
	select {
	case a.ch <- it:
	case <-ctx.Done():
		return fmt.Errorf("the audit queue is full: %w", ctx.Err())
	case <-a.closed:
		return ErrClosed
	}
	select {
	case err := <-it.done:
		return err
	case <-a.closed:
		select {
		case err := <-it.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// ErrClosed: the entry came after Close and was not written.
var ErrClosed = errors.New("the audit writer is closed: the entry was not written")

func (a *Async) run() {
	defer close(a.done)
	var tick <-chan time.Time
	if a.interval > 0 {
		t := time.NewTicker(a.interval)
		defer t.Stop()
		tick = t.C
	}
	dirty := false
	batch := make([]item, 0, maxBatch)
	for {
		select {
		case it := <-a.ch:
			batch = a.drain(append(batch[:0], it))
			a.appendBatch(batch)
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

// appendBatch appends batch with one write and tells its waiters.
func (a *Async) appendBatch(batch []item) {
	es := make([]Entry, len(batch))
	for i, it := range batch {
		es[i] = it.e
	}
	err := a.w.Append(es...)
	a.failed(err, len(batch))
	for _, it := range batch {
		if it.done != nil {
			it.done <- err
		}
	}
}

// drain adds to batch what is queued now, up to maxBatch.
func (a *Async) drain(batch []item) []item {
	for len(batch) < maxBatch {
		select {
		case it := <-a.ch:
			batch = append(batch, it)
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
		a.appendBatch(rest)
	}
	err := a.w.Close()
	a.closeOnce.Do(func() { close(a.closed) })
	return err
}
