package object

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
)

// failAfter yields n zero bytes, then fails.
type failAfter struct {
	n   int64
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(int64(len(p)), f.n)
	clear(p[:k])
	f.n -= k
	return int(k), nil
}

// A source that fails mid-stream fails the seal with its error, and the
// segment buffers the pipeline took go back to the pool once its
// goroutines have stopped; the same stream without the failure seals.
func TestSealerSourceFailureReturnsBuffers(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("disk went away")
	for _, fail := range []bool{false, true} {
		var src io.Reader = io.LimitReader(&failAfter{n: 1 << 40}, 3*DefaultSegmentSize+100)
		if fail {
			src = &failAfter{n: 3 * DefaultSegmentSize, err: boom}
		}
		err := f.sealDiscard(t, src)
		switch {
		case !fail && err != nil:
			t.Fatalf("control: %v", err)
		case fail && !errors.Is(err, boom):
			t.Fatalf("got %v, want the source's error", err)
		case fail && !strings.Contains(err.Error(), "reading input"):
			t.Fatalf("error does not say what failed: %v", err)
		}
		waitReturned(t, fmt.Sprintf("fail=%v", fail))
	}
}

// waitReturned waits until every pooled segment buffer is back.
func waitReturned(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for segBufs.Outstanding()+smallBufs.Outstanding() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d segment buffers and %d small ones never came back", what, segBufs.Outstanding(), smallBufs.Outstanding())
		}
		runtime.Gosched()
	}
}

// Reading a multi-segment object takes pooled buffers and returns them,
// both when it reads cleanly and when a damaged segment stops it.
func TestOpenReturnsBuffers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	plain := make([]byte, 3*DefaultSegmentSize+5)
	rand.Read(plain)
	res := f.put(t, plain, 0)
	name := format.StoreName(f.ident.Object)
	for _, damage := range []bool{false, true} {
		if damage {
			rc, _ := f.st.ReadRange(ctx, name, 0, -1)
			data, _ := io.ReadAll(rc)
			rc.Close()
			data[format.HeaderLen+int(format.SegmentCTLen(DefaultSegmentSize))+100] ^= 1 // segment 1
			if err := f.st.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
		}
		o, err := Open(ctx, f.st, name, f.expect(res), f.unwrap)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, err = o.WriteTo(ctx, &out)
		switch {
		case !damage && (err != nil || !bytes.Equal(out.Bytes(), plain)):
			t.Fatalf("control: %v", err)
		case damage && err == nil:
			t.Fatal("damaged segment read without error")
		}
		waitReturned(t, fmt.Sprintf("damage=%v", damage))
	}
}

// A small object is read with a buffer of the small class, which goes
// back to its pool; a large one (the control) uses the default class.
func TestSmallReadsTakeSmallBuffers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		size       int
		small, big bool
	}{{4096, true, false}, {smallSegment, true, false}, {smallSegment + 1, false, true}} {
		f := newFixture(t)
		plain := make([]byte, tc.size)
		res := f.put(t, plain, 0)
		o, err := Open(ctx, f.st, format.StoreName(f.ident.Object), f.expect(res), f.unwrap)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		tw := &takeWatcher{w: &out}
		if _, err := o.WriteTo(ctx, tw); err != nil || !bytes.Equal(out.Bytes(), plain) {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		if tw.small != tc.small || tw.big != tc.big {
			t.Errorf("%d bytes: small buffers out %v, default ones out %v; want %v, %v", tc.size, tw.small, tw.big, tc.small, tc.big)
		}
		o.Wipe()
		waitReturned(t, fmt.Sprint(tc.size, " bytes"))
	}
}

// takeWatcher notes, at the first write, which pools have buffers out.
type takeWatcher struct {
	w          io.Writer
	seen       bool
	small, big bool
}

func (tw *takeWatcher) Write(p []byte) (int, error) {
	if !tw.seen {
		tw.seen, tw.small, tw.big = true, smallBufs.Outstanding() > 0, segBufs.Outstanding() > 0
	}
	return tw.w.Write(p)
}
