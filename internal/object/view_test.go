package object

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
)

// countingViews is a regfile.Source whose views are counted, and which
// can truncate its file right after handing out a view.
type countingViews struct {
	*regfile.Source
	path       string
	taken      atomic.Int64 // views handed out
	open       atomic.Int64 // views not yet released
	truncateAt int64        // truncate the file after the view of this number (from 1), if > 0
	unmappable int64        // views from this number on fail with ErrNotMappable, if > 0
	atEnd      func()       // called when the input's end was reached, views maybe unread
}

func (c *countingViews) View(n int) ([]byte, func(), error) {
	if c.unmappable > 0 && c.taken.Load()+1 >= c.unmappable {
		return nil, nil, fmt.Errorf("%w: injected", regfile.ErrNotMappable)
	}
	v, release, err := c.Source.View(n)
	if len(v) == 0 {
		if err == io.EOF && c.atEnd != nil {
			c.atEnd()
		}
		return v, release, err
	}
	c.open.Add(1)
	if c.taken.Add(1) == c.truncateAt {
		if terr := os.Truncate(c.path, 0); terr != nil {
			panic(terr)
		}
	}
	var once atomic.Bool
	return v, func() {
		if !once.CompareAndSwap(false, true) {
			panic("view released twice")
		}
		c.open.Add(-1)
		release()
	}, err
}

func sourceOf(t *testing.T, data []byte) (string, *regfile.Source) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	s, err := regfile.NewSource(f)
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

// sealDiscard seals src whole into nothing, with the fixture's identity
// and wrapping, and returns the seal's error.
func (f *fixture) sealDiscard(t *testing.T, src io.Reader) error {
	t.Helper()
	s, err := NewSealer(src, f.ident, Attrs{}, f.wrap, SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.WriteTo(io.Discard)
	return err
}

// TestViewedSealMatchesCopied: an input sealed through views of a mapped
// file gives the same stored bytes as the same input copied in through
// Read, with the same randomness, at sizes around the segment size; every
// view is released, and views are used whenever there is more than one
// segment (the control that the views were taken at all).
func TestViewedSealMatchesCopied(t *testing.T) {
	const seg = 64 << 10
	f := newFixture(t)
	mod := time.Unix(1700000000, 0)
	for _, n := range []int{1, seg - 1, seg, seg + 1, 3 * seg, 3*seg + 5, 17*seg + 4097} {
		for _, segSize := range []int{seg, 0} {
			t.Run(fmt.Sprintf("%d/seg%d", n, segSize), func(t *testing.T) {
				data := make([]byte, n)
				rand.Read(data)
				salt := make([]byte, 64)
				rand.Read(salt)
				seed := [32]byte{byte(n), byte(segSize >> 16)}
				seal := func(src io.Reader) []byte {
					s, err := NewSealer(src, f.ident, Attrs{Modified: mod}, f.wrapFrom(salt),
						SealOptions{SegmentSize: segSize, Rand: mrand.NewChaCha8(seed)})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					var out bytes.Buffer
					if _, err := s.WriteTo(&out); err != nil {
						t.Fatal(err)
					}
					return out.Bytes()
				}
				want := seal(bytes.NewReader(data))
				path, src := sourceOf(t, data)
				cv := &countingViews{Source: src, path: path}
				got := seal(cv)
				if !bytes.Equal(got, want) {
					t.Fatalf("viewed seal differs from copied seal (%d vs %d bytes)", len(got), len(want))
				}
				// A file that cannot be mapped from its second view
				// on is read for the rest, to the same bytes.
				path2, src2 := sourceOf(t, data)
				if got := seal(&countingViews{Source: src2, path: path2, unmappable: 2}); !bytes.Equal(got, want) {
					t.Fatalf("seal of a file unmappable after one view differs from copied seal")
				}
				if open := cv.open.Load(); open != 0 {
					t.Fatalf("%d views never released", open)
				}
				ss := segSize
				if ss == 0 {
					ss = DefaultSegmentSize
				}
				if multi := n > ss; multi != (cv.taken.Load() > 0) {
					t.Fatalf("%d views taken for %d bytes in segments of %d", cv.taken.Load(), n, ss)
				}
			})
		}
	}
}

// TestViewFaultFailsTheObject: a file truncated while its pages are
// mapped makes reading the view fault; the sealer turns the fault into
// ErrInputChanged instead of crashing, releases every view and returns
// its buffers. The control seals the same file left alone.
func TestViewFaultFailsTheObject(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 4*DefaultSegmentSize+100)
	rand.Read(data)
	for _, truncate := range []bool{false, true} {
		path, src := sourceOf(t, data)
		cv := &countingViews{Source: src, path: path}
		if truncate {
			cv.truncateAt = 2
		}
		err := f.sealDiscard(t, cv)
		switch {
		case !truncate && err != nil:
			t.Fatalf("control: %v", err)
		case truncate && !errors.Is(err, ErrInputChanged):
			t.Fatalf("truncated under a view: got %v, want ErrInputChanged", err)
		}
		waitReturned(t, fmt.Sprintf("truncate=%v", truncate))
		deadline := time.Now().Add(10 * time.Second)
		for cv.open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("truncate=%v: %d views never released", truncate, cv.open.Load())
			}
			runtime.Gosched()
		}
		if cv.taken.Load() == 0 {
			t.Fatalf("truncate=%v: no view was taken", truncate)
		}
	}
}

// TestSourceChangeFailsTheObject: a file that grows after the Source saw
// it fails the seal with regfile.ErrChanged once its end is reached; the
// same file left alone (the control) seals.
func TestSourceChangeFailsTheObject(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 2*DefaultSegmentSize+7)
	rand.Read(data)
	for _, grow := range []bool{false, true} {
		path, src := sourceOf(t, data)
		if grow {
			g, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			g.Write([]byte("appended"))
			g.Close()
		}
		err := f.sealDiscard(t, src)
		switch {
		case !grow && err != nil:
			t.Fatalf("control: %v", err)
		case grow && !errors.Is(err, regfile.ErrChanged):
			t.Fatalf("grown file: got %v, want ErrChanged", err)
		}
		waitReturned(t, fmt.Sprintf("grow=%v", grow))
	}
}

// readStored returns n bytes (-1: to the end) of the stored object name
// from off.
func readStored(t *testing.T, st store.Store, name string, off, n int64) []byte {
	t.Helper()
	rc, err := st.ReadRange(t.Context(), name, off, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// failingWriter fails every write after the first ok bytes.
type failingWriter struct {
	ok  int64
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.ok {
		n := int(w.ok)
		w.ok = 0
		return n, w.err
	}
	w.ok -= int64(len(p))
	return len(p), nil
}

// TestLargePaddingIsTheKeystream: an object whose padding is made ahead
// of its writes (more than smallSegment of it, here a few buffers) is padded with exactly the
// padding keystream, which Open checks; a write failing inside the
// padding fails the seal with that error and returns the padding's
// buffers, and the control (no failure) stores the whole object.
func TestLargePaddingIsTheKeystream(t *testing.T) {
	f := newFixture(t)
	// Just over 64 MiB: Padmé pads to the next 2 MiB, a few buffers'
	// worth, so each of the two is filled and written more than once.
	data := make([]byte, 64<<20+1)
	rand.Read(data)
	res := f.put(t, data, 0)
	if res.Sizes.Padding <= 3*uint64(smallBufs.Size()) {
		t.Fatalf("padding is %d bytes: too little to go through both buffers twice", res.Sizes.Padding)
	}
	ctx := t.Context()
	name := format.StoreName(f.ident.Object)
	o, err := Open(ctx, f.st, name, f.expect(res), f.unwrap)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := o.WriteTo(ctx, &out); err != nil { // checks the padding
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("plaintext differs")
	}
	got := readStored(t, f.st, name, int64(res.Sizes.Body), int64(res.Sizes.Padding))
	want := make([]byte, res.Sizes.Padding)
	fillPadding(o.d.padStream(), want)
	if !bytes.Equal(got, want) {
		t.Fatal("stored padding is not the padding keystream")
	}

	// A reader checks the padding a piece ahead too: one byte changed
	// deep in it (past both buffers' first turn) fails the read with
	// the padding layer; the clean read above is the control.
	stored := readStored(t, f.st, name, 0, -1)
	stored[res.Sizes.Body+res.Sizes.Padding-100] ^= 1
	if err := f.st.Put(ctx, name, bytes.NewReader(stored), int64(len(stored))); err != nil {
		t.Fatal(err)
	}
	o, err = Open(ctx, f.st, name, f.expect(res), f.unwrap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteTo(ctx, io.Discard); format.LayerOf(err) != format.LayerPadding {
		t.Fatalf("altered padding: got %v, want a padding-layer error", err)
	}
	waitReturned(t, "altered padding")

	boom := errors.New("disk full")
	for _, fail := range []bool{false, true} {
		s, err := NewSealer(bytes.NewReader(data), f.ident, Attrs{}, f.wrap, SealOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := &failingWriter{ok: 1 << 62, err: boom}
		if fail {
			w.ok = int64(res.Sizes.Body) + int64(res.Sizes.Padding)/2
		}
		n, err := s.WriteTo(w)
		s.Close()
		switch {
		case !fail && (err != nil || uint64(n) != res.Sizes.Stored):
			t.Fatalf("control: wrote %d of %d bytes: %v", n, res.Sizes.Stored, err)
		case fail && !errors.Is(err, boom):
			t.Fatalf("a write failing in the padding: got %v", err)
		}
		waitReturned(t, fmt.Sprintf("padding, fail=%v", fail))
	}
}

// TestChangeAfterTheEndFailsTheObject: the input's end is reached while
// the last views are still to be sealed; a file changed then (grown, or
// rewritten in place with its times moved on) fails the seal with
// regfile.ErrChanged once every view is sealed, where checking only at
// the end of input would have stored bytes the file never held together.
// The control changes nothing and seals.
func TestChangeAfterTheEndFailsTheObject(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 3*DefaultSegmentSize+99)
	rand.Read(data)
	for _, c := range []struct {
		name   string
		change func(t *testing.T, p string)
	}{
		{"unchanged", nil},
		{"grown", func(t *testing.T, p string) {
			g, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			g.Write([]byte("x"))
			g.Close()
		}},
		{"rewritten", func(t *testing.T, p string) {
			g, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			g.WriteAt([]byte("changed"), int64(len(data)-10))
			g.Close()
			// The times move on however coarse the file system's
			// clock.
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Error(err)
			}
		}},
	} {
		path, src := sourceOf(t, data)
		cv := &countingViews{Source: src, path: path}
		if c.change != nil {
			cv.atEnd = func() { c.change(t, path) }
		}
		err := f.sealDiscard(t, cv)
		switch {
		case c.change == nil && err != nil:
			t.Fatalf("control: %v", err)
		case c.change != nil && !errors.Is(err, regfile.ErrChanged):
			t.Fatalf("%s after the end: got %v, want ErrChanged", c.name, err)
		}
		if cv.taken.Load() == 0 {
			t.Fatalf("%s: no view was taken", c.name)
		}
		waitReturned(t, c.name)
	}
}

// viewStore counts the ciphertext views its local store's readers hand
// out, and can cut the object file short after one, or refuse to map.
type viewStore struct {
	store.Store
	root       string       // the local store's directory
	taken      atomic.Int64 // views handed out
	open       atomic.Int64 // views not yet released
	truncateAt int64        // truncate the object after view number truncateAt (from 1), if > 0
	unmappable bool         // every view fails with ErrNotMappable
}

type viewReader struct {
	io.ReadCloser
	s *viewStore
}

func (s *viewStore) ReadRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.ReadRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	if _, ok := rc.(ctViewer); !ok {
		return nil, errors.New("the local store's reader hands out no views")
	}
	return &viewReader{rc, s}, nil
}

func (r *viewReader) View(n int) ([]byte, func(), error) {
	if r.s.unmappable {
		return nil, nil, fmt.Errorf("%w: injected", regfile.ErrNotMappable)
	}
	v, release, err := r.ReadCloser.(ctViewer).View(n)
	if len(v) == 0 {
		return v, release, err
	}
	r.s.open.Add(1)
	if r.s.taken.Add(1) == r.s.truncateAt {
		r.s.truncateObjects()
	}
	return v, func() { r.s.open.Add(-1); release() }, err
}

func (r *viewReader) Faulted(end int64) error { return r.ReadCloser.(ctViewer).Faulted(end) }

// truncateObjects cuts every object file of the store to 4 KiB.
func (s *viewStore) truncateObjects() {
	filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > 1<<20 {
				os.Truncate(p, 4096)
			}
		}
		return nil
	})
}

// TestOpenThroughViews: a local store hands a reader its ciphertext as
// views of the mapped file, and the object reads back exact; a byte
// flipped in a later segment stops the output before that chunk (every
// chunk is copied out of the view before it is authenticated, so what
// is released is what was authenticated); an object cut short under a
// view fails as truncated instead of crashing the process; a file that
// cannot be mapped is read for the rest. Every view is released.
func TestOpenThroughViews(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t)
	f.st = st
	data := make([]byte, 3*DefaultSegmentSize+70000)
	rand.Read(data)
	res := f.put(t, data, 0)
	name := format.StoreName(f.ident.Object)
	read := func(vs *viewStore) ([]byte, error) {
		t.Helper()
		o, err := Open(ctx, vs, name, f.expect(res), f.unwrap)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, err = o.WriteTo(ctx, &out)
		waitReturned(t, "open")
		for deadline := time.Now().Add(10 * time.Second); vs.open.Load() != 0; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("%d views never released", vs.open.Load())
			}
		}
		return out.Bytes(), err
	}

	vs := &viewStore{Store: st, root: dir}
	got, err := read(vs)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("control: %d bytes, %v", len(got), err)
	}
	if vs.taken.Load() < 3 {
		t.Fatalf("control: %d views taken, want one per full segment", vs.taken.Load())
	}

	un := &viewStore{Store: st, root: dir, unmappable: true}
	if got, err := read(un); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("unmappable: %d bytes, %v", len(got), err)
	}

	// Flip a byte in the third segment's second chunk.
	stored := readStored(t, st, name, 0, -1)
	segCT := int(format.SegmentCTLen(DefaultSegmentSize))
	at := format.HeaderLen + 2*segCT + format.ChunkCTSize + 100
	stored[at] ^= 1
	if err := st.Put(ctx, name, bytes.NewReader(stored), int64(len(stored))); err != nil {
		t.Fatal(err)
	}
	got, err = read(&viewStore{Store: st, root: dir})
	if format.LayerOf(err) != format.LayerChunk {
		t.Fatalf("flipped byte: got %v, want a chunk-layer error", err)
	}
	if len(got) > 2*DefaultSegmentSize+format.ChunkSize || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("flipped byte: %d bytes released, past the damaged chunk or not the plaintext", len(got))
	}
	stored[at] ^= 1
	if err := st.Put(ctx, name, bytes.NewReader(stored), int64(len(stored))); err != nil {
		t.Fatal(err)
	}

	cut := &viewStore{Store: st, root: dir, truncateAt: 1}
	got, err = read(cut)
	if format.LayerOf(err) != format.LayerSize {
		t.Fatalf("cut short under a view: got %v, want a size-layer error", err)
	}
	if len(got) > DefaultSegmentSize || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("cut short: %d bytes released", len(got))
	}
}
