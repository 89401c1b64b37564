package storetest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/store"
)

// memStore is a minimal in-memory reference store. The suite is checked
// against it, and each of its bugs must make the suite fail.
type memStore struct {
	bug string // "" for a correct store; see brokenStores

	mu      sync.Mutex
	objects map[string][]byte
}

var _ store.Store = (*memStore)(nil)

func newMem(bug string) *memStore { return &memStore{bug: bug, objects: map[string][]byte{}} }

func (m *memStore) check(ctx context.Context, op, name string) error {
	if !store.ValidName(name) && m.bug != "accepts-invalid-names" {
		return fmt.Errorf("mem: %s %q: %w", op, name, store.ErrInvalidName)
	}
	if m.bug != "ignores-context" {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: %s %q: %w", op, name, err)
		}
	}
	return nil
}

func (m *memStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := m.check(ctx, "put", name); err != nil {
		return err
	}
	if size < store.UnknownSize {
		return fmt.Errorf("mem: put %q: negative size: %w", name, store.ErrShortWrite)
	}
	limit := size + 1
	if size == store.UnknownSize {
		limit = 1 << 40
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil {
		if m.bug == "keeps-partial-object" {
			m.mu.Lock()
			m.objects[name] = b
			m.mu.Unlock()
		}
		return fmt.Errorf("mem: put %q: %w", name, err)
	}
	if m.bug != "ignores-context" {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: put %q: %w", name, err)
		}
	}
	if size != store.UnknownSize && int64(len(b)) != size && m.bug != "accepts-short-write" {
		return fmt.Errorf("mem: put %q: %w", name, store.ErrShortWrite)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[name] = b
	return nil
}

func (m *memStore) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := m.check(ctx, "read", name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	b, ok := m.objects[name]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("mem: read %q: %w", name, store.ErrNotExist)
	}
	if off < 0 || length < -1 || off > int64(len(b)) {
		return nil, fmt.Errorf("mem: read %q: %w", name, store.ErrInvalidRange)
	}
	b = b[off:]
	if length >= 0 {
		if m.bug == "does-not-cut-range" {
			b = append(bytes.Clone(b), make([]byte, length)...)
		}
		b = b[:min(length, int64(len(b)))]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if err := m.check(ctx, "stat", name); err != nil {
		return store.ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[name]
	if !ok {
		return store.ObjectInfo{}, fmt.Errorf("mem: stat %q: %w", name, store.ErrNotExist)
	}
	return store.ObjectInfo{Name: name, Size: int64(len(b))}, nil
}

func (m *memStore) Delete(ctx context.Context, name string) error {
	if err := m.check(ctx, "delete", name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[name]; !ok && m.bug != "deletes-missing" {
		return fmt.Errorf("mem: delete %q: %w", name, store.ErrNotExist)
	}
	delete(m.objects, name)
	return nil
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	m.mu.Lock()
	var infos []store.ObjectInfo
	for name, b := range m.objects {
		if strings.HasPrefix(name, prefix) || m.bug == "ignores-prefix" {
			infos = append(infos, store.ObjectInfo{Name: name, Size: int64(len(b))})
		}
	}
	m.mu.Unlock()
	if m.bug == "lists-unsorted" {
		slices.SortFunc(infos, func(a, b store.ObjectInfo) int { return strings.Compare(b.Name, a.Name) })
	} else {
		slices.SortFunc(infos, func(a, b store.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	}
	for _, oi := range infos {
		if err := fn(oi); err != nil && m.bug != "ignores-fn-error" {
			return err
		}
	}
	return nil
}

func (m *memStore) Close() error { return nil }
