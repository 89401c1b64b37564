package storetest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

func TestCounting(t *testing.T) {
	ctx := t.Context()
	c := storetest.NewCounting(newMem(""))
	body := bytes.Repeat([]byte("x"), 1000)
	if err := c.Put(ctx, "obj", bytes.NewReader(body), 1000); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "bad", bytes.NewReader(body[:10]), 11); !errors.Is(err, store.ErrShortWrite) {
		t.Fatalf("short Put: %v", err)
	}
	if p, w := c.Puts.Load(), c.BytesWritten.Load(); p != 2 || w != 1010 {
		t.Fatalf("after Puts: Puts=%d BytesWritten=%d, want 2 and 1010", p, w)
	}
	rc, err := c.ReadRange(ctx, "obj", 100, 300)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is counted until bytes are actually read.
	if r, b := c.Reads.Load(), c.BytesRead.Load(); r != 1 || b != 0 {
		t.Fatalf("before reading: Reads=%d BytesRead=%d, want 1 and 0", r, b)
	}
	if _, err := io.CopyN(io.Discard, rc, 120); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := c.ReadRange(ctx, "missing", 0, -1); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("ReadRange(missing): %v", err)
	}
	if r, b := c.Reads.Load(), c.BytesRead.Load(); r != 2 || b != 120 {
		t.Fatalf("after reading: Reads=%d BytesRead=%d, want 2 and 120", r, b)
	}
	c.Reset()
	if c.Reads.Load()+c.BytesRead.Load()+c.Puts.Load()+c.BytesWritten.Load() != 0 {
		t.Fatal("Reset left a counter non-zero")
	}
}

var errFault = errors.New("injected fault")

// recorder is a Faulty hook that records every point and fails at one.
type recorder struct {
	mu     sync.Mutex
	points []storetest.Point
	failAt storetest.Phase
}

func (r *recorder) hook(p storetest.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points = append(r.points, p)
	if p.Phase == r.failAt {
		return errFault
	}
	return nil
}

func (r *recorder) phases() []storetest.Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []storetest.Phase
	for _, p := range r.points {
		ps = append(ps, p.Phase)
	}
	r.points = nil
	return ps
}

// midSpy records how many body bytes had been read when PutMid fired.
type midSpy struct {
	r     io.Reader
	n     int
	atMid int
}

func (s *midSpy) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += n
	return n, err
}

func TestFaultyPoints(t *testing.T) {
	ctx := t.Context()
	rec := &recorder{}
	body := bytes.Repeat([]byte("y"), 1001)

	spy := &midSpy{r: bytes.NewReader(body)}
	midHook := func(p storetest.Point) error {
		if p.Phase == storetest.PutMid {
			spy.atMid = spy.n
		}
		return rec.hook(p)
	}
	f := storetest.NewFaulty(newMem(""), midHook)
	if err := f.Put(ctx, "obj", spy, 1001); err != nil {
		t.Fatal(err)
	}
	if spy.atMid != 500 {
		t.Fatalf("PutMid fired after %d bytes, want 500", spy.atMid)
	}
	if _, err := f.ReadRange(ctx, "obj", 0, -1); err != nil {
		t.Fatal(err)
	}
	if err := f.List(ctx, "ob", func(store.ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := f.Delete(ctx, "obj"); err != nil {
		t.Fatal(err)
	}
	want := []storetest.Point{
		{Op: storetest.OpPut, Name: "obj", Phase: storetest.PutBegin},
		{Op: storetest.OpPut, Name: "obj", Phase: storetest.PutMid},
		{Op: storetest.OpPut, Name: "obj", Phase: storetest.PutEnd},
		{Op: storetest.OpRead, Name: "obj", Phase: storetest.ReadBegin},
		{Op: storetest.OpList, Name: "ob", Phase: storetest.ListBegin},
		{Op: storetest.OpDelete, Name: "obj", Phase: storetest.DeleteBegin},
		{Op: storetest.OpDelete, Name: "obj", Phase: storetest.DeleteEnd},
	}
	if !slices.Equal(rec.points, want) {
		t.Fatalf("points = %+v\nwant %+v", rec.points, want)
	}
}

func TestFaultyPutMidSizeZero(t *testing.T) {
	rec := &recorder{failAt: storetest.PutMid}
	f := storetest.NewFaulty(newMem(""), rec.hook)
	if err := f.Put(t.Context(), "empty", bytes.NewReader(nil), 0); !errors.Is(err, errFault) {
		t.Fatalf("Put of an empty object failing at PutMid: %v", err)
	}
	if _, err := f.Stat(t.Context(), "empty"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after failed Put: %v", err)
	}
}

func TestFaultyFailures(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 4096)
	for _, tc := range []struct {
		failAt  storetest.Phase
		op      func(context.Context, *storetest.Faulty) error
		wantObj bool // whether "obj" exists afterwards
	}{
		{storetest.PutBegin, putNew(body), false},
		{storetest.PutMid, putNew(body), false},
		{storetest.PutEnd, putNew(body), true},
		{storetest.DeleteBegin, deleteObj, true},
		{storetest.DeleteEnd, deleteObj, false},
		{storetest.ReadBegin, readObj, true},
		{storetest.ListBegin, listAll, true},
	} {
		t.Run(string(tc.failAt), func(t *testing.T) {
			mem := newMem("")
			if tc.failAt != storetest.PutBegin && tc.failAt != storetest.PutMid && tc.failAt != storetest.PutEnd {
				if err := mem.Put(t.Context(), "obj", bytes.NewReader(body), int64(len(body))); err != nil {
					t.Fatal(err)
				}
			}
			// Positive control: with a hook that fails elsewhere, the
			// operation succeeds (on a copy of the store's state).
			ok := storetest.NewFaulty(cloneMem(mem), (&recorder{failAt: "nowhere"}).hook)
			if err := tc.op(t.Context(), ok); err != nil {
				t.Fatalf("without a fault: %v", err)
			}
			rec := &recorder{failAt: tc.failAt}
			f := storetest.NewFaulty(mem, rec.hook)
			if err := tc.op(t.Context(), f); !errors.Is(err, errFault) {
				t.Fatalf("failing at %s: %v; want the injected error", tc.failAt, err)
			}
			_, err := mem.Stat(t.Context(), "obj")
			if exists := err == nil; exists != tc.wantObj {
				t.Fatalf("after failing at %s: object exists = %v (%v), want %v", tc.failAt, exists, err, tc.wantObj)
			}
			if got := rec.phases(); got[len(got)-1] != tc.failAt {
				t.Fatalf("hook calls %v do not end at %s", got, tc.failAt)
			}
		})
	}
}

func cloneMem(m *memStore) *memStore {
	c := newMem("")
	for k, v := range m.objects {
		c.objects[k] = bytes.Clone(v)
	}
	return c
}

func putNew(body []byte) func(context.Context, *storetest.Faulty) error {
	return func(ctx context.Context, f *storetest.Faulty) error {
		return f.Put(ctx, "obj", bytes.NewReader(body), int64(len(body)))
	}
}

func deleteObj(ctx context.Context, f *storetest.Faulty) error { return f.Delete(ctx, "obj") }

func readObj(ctx context.Context, f *storetest.Faulty) error {
	rc, err := f.ReadRange(ctx, "obj", 0, -1)
	if err != nil {
		return err
	}
	return rc.Close()
}

func listAll(ctx context.Context, f *storetest.Faulty) error {
	return f.List(ctx, "", func(store.ObjectInfo) error { return nil })
}
