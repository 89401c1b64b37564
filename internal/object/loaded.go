package object

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast/internal/store"
)

// loaded is one stored object read whole into memory (Expect.WholeMax):
// the reads Open, WriteTo and Range make of it are served from the copy.
// It is not a store: only ReadRange of its own name works.
type loaded struct {
	name string
	b    []byte
}

var errLoadedOnly = errors.New("internal error: a loaded object serves only reads of itself")

func (l *loaded) ReadRange(_ context.Context, name string, off, length int64) (io.ReadCloser, error) {
	switch {
	case name != l.name:
		return nil, fmt.Errorf("%w (asked for %s)", errLoadedOnly, name)
	case off < 0 || length < -1 || off > int64(len(l.b)):
		return nil, store.ErrInvalidRange
	}
	end := int64(len(l.b))
	if length >= 0 && off+length < end {
		end = off + length
	}
	return io.NopCloser(bytes.NewReader(l.b[off:end])), nil
}

func (l *loaded) Put(context.Context, string, io.Reader, int64) error { return errLoadedOnly }
func (l *loaded) Stat(_ context.Context, name string) (store.ObjectInfo, error) {
	if name != l.name {
		return store.ObjectInfo{}, errLoadedOnly
	}
	return store.ObjectInfo{Name: name, Size: int64(len(l.b))}, nil
}
func (l *loaded) Delete(context.Context, string) error { return errLoadedOnly }
func (l *loaded) List(context.Context, string, func(store.ObjectInfo) error) error {
	return errLoadedOnly
}
func (l *loaded) Close() error { return nil }
