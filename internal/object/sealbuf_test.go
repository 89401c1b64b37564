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
		s, err := NewSealer(src, f.ident, Attrs{}, f.wrap, SealOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.WriteTo(io.Discard)
		s.Close()
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
	for segBufs.Outstanding() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d segment buffers never came back", what, segBufs.Outstanding())
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
