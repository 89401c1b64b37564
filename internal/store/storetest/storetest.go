package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/holdfast/holdfast/internal/store"
)

// Run runs the conformance suite against the stores made by newStore. Each
// subtest calls newStore once and must get a new, empty store; Run closes it
// when the subtest ends, so newStore must not close it itself.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"ReadRange", testReadRange},
		{"ReadRangeEmptyObject", testReadRangeEmpty},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"PutReplaces", testPutReplaces},
		{"ShortWrite", testShortWrite},
		{"NegativeSize", testNegativeSize},
		{"ReaderFails", testReaderFails},
		{"List", testList},
		{"ListPrefix", testListPrefix},
		{"ListStopsOnError", testListStops},
		{"InvalidNames", testInvalidNames},
		{"CancelledBeforePut", testCancelledBeforePut},
		{"CancelledDuringPut", testCancelledDuringPut},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutsSameName", testConcurrentPutsSameName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

const mib = 1 << 20

// data returns n deterministic pseudo-random bytes; different seeds give
// different contents.
func data(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// plainReader hides any io.WriterTo of the reader it wraps, so stores see a
// bare io.Reader.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// readerKinds are the two shapes of body reader the suite feeds to Put.
var readerKinds = []struct {
	name string
	make func([]byte) io.Reader
}{
	{"bytes.Reader", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"plain", func(b []byte) io.Reader { return plainReader{bytes.NewReader(b)} }},
}

func put(t *testing.T, s store.Store, name string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(b), err)
	}
}

func read(ctx context.Context, s store.Store, name string, off, length int64) ([]byte, error) {
	rc, err := s.ReadRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return b, err
}

func list(t *testing.T, s store.Store, prefix string) []store.ObjectInfo {
	t.Helper()
	var got []store.ObjectInfo
	if err := s.List(t.Context(), prefix, func(oi store.ObjectInfo) error {
		got = append(got, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

// wantObject checks that name holds exactly b, through Stat, ReadRange and
// List.
func wantObject(t *testing.T, s store.Store, name string, b []byte) {
	t.Helper()
	oi, err := s.Stat(t.Context(), name)
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	if oi.Name != name || oi.Size != int64(len(b)) {
		t.Fatalf("Stat(%q) = %+v, want size %d", name, oi, len(b))
	}
	got, err := read(t.Context(), s, name, 0, -1)
	if err != nil {
		t.Fatalf("ReadRange(%q, 0, -1): %v", name, err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("ReadRange(%q, 0, -1): got %d bytes, want %d bytes (contents differ)", name, len(got), len(b))
	}
	listed := false
	for _, oi := range list(t, s, name) {
		if oi.Name == name {
			listed = true
			if oi.Size != int64(len(b)) {
				t.Fatalf("List: %q has size %d, want %d", name, oi.Size, len(b))
			}
		}
	}
	if !listed {
		t.Fatalf("List(%q) does not show %q", name, name)
	}
}

// wantGone checks that nothing is visible under name, through Stat,
// ReadRange and List.
func wantGone(t *testing.T, s store.Store, name string) {
	t.Helper()
	if oi, err := s.Stat(t.Context(), name); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat(%q) = %+v, %v; want ErrNotExist", name, oi, err)
	}
	if _, err := read(t.Context(), s, name, 0, -1); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("ReadRange(%q): %v; want ErrNotExist", name, err)
	}
	for _, oi := range list(t, s, "") {
		if oi.Name == name {
			t.Fatalf("List shows %q (size %d), want nothing", name, oi.Size)
		}
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	for i, size := range []int{0, 1, mib + 7} {
		for _, rk := range readerKinds {
			name := fmt.Sprintf("rt-%d-%s", size, strings.ToLower(strings.ReplaceAll(rk.name, "bytes.", "b")))
			b := data(uint64(i), size)
			if err := s.Put(t.Context(), name, rk.make(b), int64(size)); err != nil {
				t.Fatalf("Put(%q, %d bytes, %s): %v", name, size, rk.name, err)
			}
			wantObject(t, s, name, b)
			got, err := read(t.Context(), s, name, 0, int64(size))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("ReadRange(%q, 0, %d): %d bytes, %v; want the object", name, size, len(got), err)
			}
		}
	}
}

func testReadRange(t *testing.T, s store.Store) {
	const size = mib + 7
	b := data(1, size)
	put(t, s, "obj", b)
	for _, tc := range []struct {
		name        string
		off, length int64
		want        []byte
	}{
		{"start", 0, 10, b[:10]},
		{"start to end", 0, -1, b},
		{"zero length", 5, 0, nil},
		{"middle", 1000, 4096, b[1000 : 1000+4096]},
		{"across 1 MiB", mib - 3, 10, b[mib-3 : mib+7]},
		{"middle to end", 500, -1, b[500:]},
		{"end", size - 10, 10, b[size-10:]},
		{"past end is cut", size - 5, 100, b[size-5:]},
		{"at end", size, 10, nil},
		{"at end to end", size, -1, nil},
	} {
		got, err := read(t.Context(), s, "obj", tc.off, tc.length)
		if err != nil {
			t.Fatalf("%s: ReadRange(%d, %d): %v", tc.name, tc.off, tc.length, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Fatalf("%s: ReadRange(%d, %d): got %d bytes, want %d bytes (contents differ)", tc.name, tc.off, tc.length, len(got), len(tc.want))
		}
	}
	for _, tc := range []struct {
		name        string
		off, length int64
	}{
		{"beyond end", size + 1, 1},
		{"beyond end to end", size + 1, -1},
		{"far beyond end", 1 << 40, 1},
		{"negative offset", -1, 1},
		{"length below -1", 0, -2},
	} {
		if _, err := read(t.Context(), s, "obj", tc.off, tc.length); !errors.Is(err, store.ErrInvalidRange) {
			t.Fatalf("%s: ReadRange(%d, %d): %v; want ErrInvalidRange", tc.name, tc.off, tc.length, err)
		}
	}
}

func testReadRangeEmpty(t *testing.T, s store.Store) {
	put(t, s, "empty", nil)
	for _, r := range [][2]int64{{0, -1}, {0, 0}, {0, 10}} {
		got, err := read(t.Context(), s, "empty", r[0], r[1])
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadRange(empty, %d, %d) = %d bytes, %v; want 0 bytes", r[0], r[1], len(got), err)
		}
	}
	if _, err := read(t.Context(), s, "empty", 1, -1); !errors.Is(err, store.ErrInvalidRange) {
		t.Fatalf("ReadRange(empty, 1, -1): %v; want ErrInvalidRange", err)
	}
}

func testStat(t *testing.T, s store.Store) {
	for i, size := range []int{0, 1, 4097} {
		name := fmt.Sprintf("stat%d", i)
		put(t, s, name, data(uint64(i), size))
		oi, err := s.Stat(t.Context(), name)
		if err != nil || oi != (store.ObjectInfo{Name: name, Size: int64(size)}) {
			t.Fatalf("Stat(%q) = %+v, %v; want size %d", name, oi, err, size)
		}
	}
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat(missing): %v; want ErrNotExist", err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	keep, gone := data(1, 100), data(2, 200)
	put(t, s, "keep", keep)
	put(t, s, "gone", gone)
	wantObject(t, s, "gone", gone)
	if err := s.Delete(t.Context(), "gone"); err != nil {
		t.Fatalf("Delete(gone): %v", err)
	}
	wantGone(t, s, "gone")
	if err := s.Delete(t.Context(), "gone"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("second Delete(gone): %v; want ErrNotExist", err)
	}
	if err := s.Delete(t.Context(), "never"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Delete(never): %v; want ErrNotExist", err)
	}
	wantGone(t, s, "never")
	wantObject(t, s, "keep", keep)
	// A deleted name can be used again.
	put(t, s, "gone", keep)
	wantObject(t, s, "gone", keep)
}

func testPutReplaces(t *testing.T, s store.Store) {
	for i, size := range []int{mib + 7, 10, 0, 3000} {
		b := data(uint64(i+10), size)
		put(t, s, "obj", b)
		wantObject(t, s, "obj", b)
	}
	if got := list(t, s, ""); len(got) != 1 {
		t.Fatalf("List after replacing = %+v, want one object", got)
	}
}

func testShortWrite(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		name       string
		size, body int
	}{
		{"one fewer", 1000, 999},
		{"one more", 1000, 1001},
		{"empty body", 10, 0},
		{"body for size zero", 0, 1},
		{"large one fewer", mib + 7, mib + 6},
		{"large one more", mib + 7, mib + 8},
		{"double", mib + 7, 2*mib + 14},
	} {
		for _, rk := range readerKinds {
			prev := data(3, 77)
			put(t, s, "prev", prev)
			for _, name := range []string{"fresh", "prev"} {
				err := s.Put(t.Context(), name, rk.make(data(4, tc.body)), int64(tc.size))
				if !errors.Is(err, store.ErrShortWrite) {
					t.Fatalf("%s, %s: Put(%q, %d bytes, size %d): %v; want ErrShortWrite", tc.name, rk.name, name, tc.body, tc.size, err)
				}
			}
			wantGone(t, s, "fresh")
			wantObject(t, s, "prev", prev)
			// Positive control: the exact body under the same names.
			exact := data(5, tc.size)
			for _, name := range []string{"fresh", "prev"} {
				if err := s.Put(t.Context(), name, rk.make(exact), int64(tc.size)); err != nil {
					t.Fatalf("%s, %s: Put(%q) of exact body: %v", tc.name, rk.name, name, err)
				}
				wantObject(t, s, name, exact)
			}
			if err := s.Delete(t.Context(), "fresh"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testNegativeSize(t *testing.T, s store.Store) {
	if err := s.Put(t.Context(), "neg", bytes.NewReader(nil), -2); err == nil {
		t.Fatal("Put with size -2 succeeded")
	}
	wantGone(t, s, "neg")
	// Control: an unknown size (-1) stores whatever the reader yields.
	body := bytes.Repeat([]byte("unknown size "), 100000)
	if err := s.Put(t.Context(), "neg", iotest.OneByteReader(bytes.NewReader(body[:1000])), store.UnknownSize); err != nil {
		t.Fatal(err)
	}
	wantObject(t, s, "neg", body[:1000])
	if err := s.Put(t.Context(), "neg", struct{ io.Reader }{bytes.NewReader(body)}, store.UnknownSize); err != nil {
		t.Fatal(err)
	}
	wantObject(t, s, "neg", body)
	if err := s.Put(t.Context(), "neg", bytes.NewReader(nil), store.UnknownSize); err != nil {
		t.Fatal(err)
	}
	wantObject(t, s, "neg", nil)
	// A failing reader with an unknown size stores nothing new.
	err := s.Put(t.Context(), "neg", io.MultiReader(bytes.NewReader(body[:500]), iotest.ErrReader(errors.New("boom"))), store.UnknownSize)
	if err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	wantObject(t, s, "neg", nil)
}

// failReader yields n bytes of b and then fails with err.
type failReader struct {
	b   []byte
	n   int
	err error
}

func (f *failReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	n := copy(p[:min(len(p), f.n)], f.b)
	f.b, f.n = f.b[n:], f.n-n
	return n, nil
}

func testReaderFails(t *testing.T, s store.Store) {
	errBoom := errors.New("storetest: reader failed")
	const size = 2*mib + 5
	body := data(6, size)
	prev := data(7, 99)
	put(t, s, "prev", prev)
	for _, after := range []int{0, 1, mib + 3, size - 1} {
		for _, name := range []string{"fresh", "prev"} {
			err := s.Put(t.Context(), name, &failReader{b: body, n: after, err: errBoom}, size)
			if !errors.Is(err, errBoom) {
				t.Fatalf("Put(%q) with reader failing after %d bytes: %v; want the reader's error", name, after, err)
			}
		}
		wantGone(t, s, "fresh")
		wantObject(t, s, "prev", prev)
	}
	// Positive control: the same reader type delivering everything.
	if err := s.Put(t.Context(), "fresh", &failReader{b: body, n: size, err: io.EOF}, size); err != nil {
		t.Fatalf("Put(fresh) with a complete body: %v", err)
	}
	wantObject(t, s, "fresh", body)
}

// listNames are put in this (unsorted) order; several share prefixes and
// differ in '-', '.' and digits, which sort before letters.
var listNames = []string{"zz9", "ab", "a", "b", "abc", "a-b", "a.b", "a0", "ba", "ab-", "abd.1", "b0", "0x"}

func putListNames(t *testing.T, s store.Store) map[string]int64 {
	sizes := map[string]int64{}
	for i, n := range listNames {
		put(t, s, n, data(uint64(i), i*3))
		sizes[n] = int64(i * 3)
	}
	return sizes
}

func testList(t *testing.T, s store.Store) {
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List of an empty store = %+v", got)
	}
	sizes := putListNames(t, s)
	want := slices.Sorted(slices.Values(listNames))
	got := list(t, s, "")
	var gotNames []string
	for _, oi := range got {
		gotNames = append(gotNames, oi.Name)
		if oi.Size != sizes[oi.Name] {
			t.Fatalf("List: %q has size %d, want %d", oi.Name, oi.Size, sizes[oi.Name])
		}
	}
	if !slices.Equal(gotNames, want) {
		t.Fatalf("List = %q, want %q", gotNames, want)
	}
}

func testListPrefix(t *testing.T, s store.Store) {
	putListNames(t, s)
	sorted := slices.Sorted(slices.Values(listNames))
	for _, prefix := range []string{"", "a", "ab", "abc", "abd", "a.", "a-", "b", "0", "zz9", "zz9x", "q", ".", "-", "A", "../", "a/"} {
		var want []string
		for _, n := range sorted {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		var got []string
		for _, oi := range list(t, s, prefix) {
			got = append(got, oi.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testListStops(t *testing.T, s store.Store) {
	putListNames(t, s)
	if n := len(list(t, s, "")); n <= 3 {
		t.Fatalf("List shows %d objects, want more than 3", n)
	}
	errStop := errors.New("storetest: stop")
	calls := 0
	err := s.List(t.Context(), "", func(store.ObjectInfo) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 3 {
		t.Fatalf("List with fn failing on call 3: %v after %d calls; want errStop after 3", err, calls)
	}
}

func testInvalidNames(t *testing.T, s store.Store) {
	invalid := []string{
		"", ".", "..", ".a", "-a", "A", "aB", "a/b", "../x", "a\\b", "a b", "a_b",
		"a\x00", "é", strings.Repeat("a", 129), ".tmp",
	}
	for _, name := range invalid {
		if err := s.Put(t.Context(), name, bytes.NewReader([]byte("x")), 1); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("Put(%q): %v; want ErrInvalidName", name, err)
		}
		if _, err := s.ReadRange(t.Context(), name, 0, -1); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("ReadRange(%q): %v; want ErrInvalidName", name, err)
		}
		if _, err := s.Stat(t.Context(), name); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("Stat(%q): %v; want ErrInvalidName", name, err)
		}
		if err := s.Delete(t.Context(), name); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("Delete(%q): %v; want ErrInvalidName", name, err)
		}
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List after invalid Puts = %+v, want nothing", got)
	}
	// Positive control: names at the edges of validity work.
	valid := []string{"a", "0", "a-", "a.", "0-.z", strings.Repeat("z", 128)}
	for i, name := range valid {
		b := data(uint64(i), i+1)
		put(t, s, name, b)
		wantObject(t, s, name, b)
		if err := s.Delete(t.Context(), name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
	}
}

func testCancelledBeforePut(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := data(8, 1000)
	if err := s.Put(ctx, "obj", bytes.NewReader(b), int64(len(b))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v; want context.Canceled", err)
	}
	wantGone(t, s, "obj")
	put(t, s, "obj", b)
	wantObject(t, s, "obj", b)
}

// cancelReader cancels its context once after yielding at bytes, and keeps
// yielding the rest of the body.
type cancelReader struct {
	r      io.Reader
	n, at  int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n < c.at {
		p = p[:min(len(p), c.at-c.n)]
	} else if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func testCancelledDuringPut(t *testing.T, s store.Store) {
	const size = 4*mib + 1
	b := data(9, size)
	prev := data(10, 50)
	put(t, s, "prev", prev)
	for _, name := range []string{"fresh", "prev"} {
		ctx, cancel := context.WithCancel(t.Context())
		err := s.Put(ctx, name, &cancelReader{r: bytes.NewReader(b), at: size / 2, cancel: cancel}, size)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put(%q) cancelled halfway: %v; want context.Canceled", name, err)
		}
	}
	wantGone(t, s, "fresh")
	wantObject(t, s, "prev", prev)
	// Positive control: the same reader without cancelling.
	if err := s.Put(t.Context(), "fresh", &cancelReader{r: bytes.NewReader(b), at: size / 2, cancel: func() {}}, size); err != nil {
		t.Fatalf("Put(fresh) not cancelled: %v", err)
	}
	wantObject(t, s, "fresh", b)
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	const n = 8
	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		bodies[i] = data(uint64(100+i), 256<<10+i)
		wg.Go(func() {
			name := fmt.Sprintf("c%d", i)
			errs[i] = s.Put(t.Context(), name, plainReader{bytes.NewReader(bodies[i])}, int64(len(bodies[i])))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put(c%d): %v", i, err)
		}
	}
	for i := range n {
		wantObject(t, s, fmt.Sprintf("c%d", i), bodies[i])
	}
	if got := list(t, s, "c"); len(got) != n {
		t.Fatalf("List(c) = %+v, want %d objects", got, n)
	}
}

func testConcurrentPutsSameName(t *testing.T, s store.Store) {
	const n = 8
	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		bodies[i] = data(uint64(200+i), 128<<10+1000*i)
		wg.Go(func() {
			errs[i] = s.Put(t.Context(), "same", plainReader{bytes.NewReader(bodies[i])}, int64(len(bodies[i])))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put(same) #%d: %v", i, err)
		}
	}
	got, err := read(t.Context(), s, "same", 0, -1)
	if err != nil {
		t.Fatalf("ReadRange(same): %v", err)
	}
	i := slices.IndexFunc(bodies, func(b []byte) bool { return bytes.Equal(b, got) })
	if i < 0 {
		t.Fatalf("after concurrent Puts, same holds %d bytes matching none of the bodies", len(got))
	}
	wantObject(t, s, "same", bodies[i])
}
