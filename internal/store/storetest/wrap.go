package storetest

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/holdfast/holdfast/internal/store"
)

var (
	_ store.Store = (*Counting)(nil)
	_ store.Store = (*Faulty)(nil)
)

// Counting wraps a Store and counts its traffic. The counters are safe to
// read while the store is in use.
type Counting struct {
	inner store.Store

	// BytesRead counts bytes actually read through ReadRange readers.
	BytesRead atomic.Int64
	// Reads counts ReadRange calls, failed ones included.
	Reads atomic.Int64
	// BytesWritten counts bytes the inner store read from Put's readers.
	BytesWritten atomic.Int64
	// Puts counts Put calls, failed ones included.
	Puts atomic.Int64
}

// NewCounting returns a Counting wrapper around s.
func NewCounting(s store.Store) *Counting { return &Counting{inner: s} }

// Reset sets every counter to zero.
func (c *Counting) Reset() {
	c.BytesRead.Store(0)
	c.Reads.Store(0)
	c.BytesWritten.Store(0)
	c.Puts.Store(0)
}

// Put implements store.Store.
func (c *Counting) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	c.Puts.Add(1)
	return c.inner.Put(ctx, name, &countingReader{r: r, n: &c.BytesWritten}, size)
}

// ReadRange implements store.Store.
func (c *Counting) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	c.Reads.Add(1)
	rc, err := c.inner.ReadRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{countingReader{r: rc, n: &c.BytesRead}, rc}, nil
}

// Stat implements store.Store.
func (c *Counting) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	return c.inner.Stat(ctx, name)
}

// Delete implements store.Store.
func (c *Counting) Delete(ctx context.Context, name string) error {
	return c.inner.Delete(ctx, name)
}

// List implements store.Store.
func (c *Counting) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	return c.inner.List(ctx, prefix, fn)
}

// Close implements store.Store.
func (c *Counting) Close() error { return c.inner.Close() }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingReadCloser struct {
	countingReader
	c io.Closer
}

func (c *countingReadCloser) Close() error { return c.c.Close() }

// Op names a Store operation.
type Op string

// Operations seen by a Faulty hook.
const (
	OpPut    Op = "put"
	OpRead   Op = "read"
	OpDelete Op = "delete"
	OpList   Op = "list"
)

// Phase names a point inside an operation where Faulty calls its hook.
type Phase string

// The points at which Faulty calls its hook.
const (
	// PutBegin: before the inner Put is called.
	PutBegin Phase = "put-begin"
	// PutMid: when the inner Put has read half of the body (size/2 bytes,
	// rounded down) from the caller's reader and asks for more. An error
	// from the hook is returned to the inner Put as a read error, so
	// nothing is stored.
	PutMid Phase = "put-mid"
	// PutEnd: after the inner Put returned nil. An error from the hook is
	// returned although the object is stored.
	PutEnd Phase = "put-end"
	// DeleteBegin: before the inner Delete is called.
	DeleteBegin Phase = "delete-begin"
	// DeleteEnd: after the inner Delete returned nil. An error from the
	// hook is returned although the object is deleted.
	DeleteEnd Phase = "delete-end"
	// ReadBegin: before the inner ReadRange is called.
	ReadBegin Phase = "read-begin"
	// ListBegin: before the inner List is called; Point.Name is the prefix.
	ListBegin Phase = "list-begin"
)

// Point is where a Faulty store is when it calls its hook.
type Point struct {
	Op    Op
	Name  string // object name, or the prefix for OpList
	Phase Phase
}

// Faulty wraps a Store and calls a hook at named points (see Phase). When
// the hook returns an error the operation fails with it. Crash tests make
// the hook end the process instead.
type Faulty struct {
	inner store.Store
	hook  func(Point) error
}

// NewFaulty returns a Faulty wrapper around s. A nil hook injects nothing.
// The hook may be called from several goroutines at once.
func NewFaulty(s store.Store, hook func(Point) error) *Faulty {
	if hook == nil {
		hook = func(Point) error { return nil }
	}
	return &Faulty{inner: s, hook: hook}
}

// Put implements store.Store.
func (f *Faulty) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := f.hook(Point{OpPut, name, PutBegin}); err != nil {
		return err
	}
	half := size / 2
	if size == store.UnknownSize {
		half = 2048 // every stored object is at least 4096 bytes
	}
	mr := &midReader{r: r, half: half, fire: func() error {
		return f.hook(Point{OpPut, name, PutMid})
	}}
	err := f.inner.Put(ctx, name, mr, size)
	if mr.err != nil {
		return mr.err
	}
	if err != nil {
		return err
	}
	return f.hook(Point{OpPut, name, PutEnd})
}

// midReader calls fire once, when half bytes have been read and more are
// asked for. If fire fails, every later Read fails with its error.
type midReader struct {
	r     io.Reader
	half  int64
	n     int64
	fired bool
	fire  func() error
	err   error
}

func (m *midReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if !m.fired && m.n >= m.half {
		m.fired = true
		if err := m.fire(); err != nil {
			m.err = err
			return 0, err
		}
	}
	if !m.fired && int64(len(p)) > m.half-m.n {
		p = p[:m.half-m.n] // stop exactly at half
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	return n, err
}

// ReadRange implements store.Store.
func (f *Faulty) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := f.hook(Point{OpRead, name, ReadBegin}); err != nil {
		return nil, err
	}
	return f.inner.ReadRange(ctx, name, off, length)
}

// Stat implements store.Store.
func (f *Faulty) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	return f.inner.Stat(ctx, name)
}

// Delete implements store.Store.
func (f *Faulty) Delete(ctx context.Context, name string) error {
	if err := f.hook(Point{OpDelete, name, DeleteBegin}); err != nil {
		return err
	}
	if err := f.inner.Delete(ctx, name); err != nil {
		return err
	}
	return f.hook(Point{OpDelete, name, DeleteEnd})
}

// List implements store.Store.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if err := f.hook(Point{OpList, prefix, ListBegin}); err != nil {
		return err
	}
	return f.inner.List(ctx, prefix, fn)
}

// Close implements store.Store.
func (f *Faulty) Close() error { return f.inner.Close() }
