package object

import (
	"context"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
)

// gate is a source of n zero bytes that blocks after its first segment
// until open is closed, so that the seals in a test overlap.
type gate struct {
	n, sent int64
	open    chan struct{}
}

func (g *gate) Read(p []byte) (int, error) {
	const free = DefaultSegmentSize + 1 // what goes before the gate
	if g.sent >= free {
		<-g.open
	}
	if g.sent == g.n {
		return 0, io.EOF
	}
	lim := g.n - g.sent
	if g.sent < free {
		lim = min(lim, free-g.sent)
	}
	k := min(int64(len(p)), lim)
	clear(p[:k])
	g.sent += k
	return int(k), nil
}

// TestSealBudget: many large objects sealed at once hold at most
// sealBudget's segment buffers between them, and every one completes —
// copies too, whose source is an object being opened (the open side
// takes no unit of the budget, so the two cannot wait on each other).
// The control is the budget's own count: it is reached.
func TestSealBudget(t *testing.T) {
	f := newFixture(t)
	// A source object for the copies: three segments.
	plain := make([]byte, 3*DefaultSegmentSize+7)
	res := f.put(t, plain, 0)
	sealBudget.mu.Lock()
	sealBudget.leastFree = sealBudget.free
	n := sealBudget.n
	sealBudget.mu.Unlock()

	const uploads, copies = 12, 6
	open := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, uploads+copies)
	seal := func(src io.Reader) {
		defer wg.Done()
		s, err := NewSealer(src, f.ident, Attrs{}, f.wrap, SealOptions{})
		if err != nil {
			errs <- err
			return
		}
		defer s.Close()
		if _, err := s.WriteTo(io.Discard); err != nil {
			errs <- err
		}
	}
	for range uploads {
		wg.Add(1)
		go seal(&gate{n: 3*DefaultSegmentSize + 100, open: open})
	}
	for range copies {
		wg.Add(1)
		pr, pw := io.Pipe()
		go func() {
			o, err := Open(context.Background(), f.st, format.StoreName(f.ident.Object), f.expect(res), f.unwrap)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			defer o.Wipe()
			_, err = o.WriteTo(context.Background(), pw)
			pw.CloseWithError(err)
		}()
		go seal(pr)
	}
	// Let every seal start and take what it can, then release the gates.
	deadline := time.After(60 * time.Second)
	for {
		sealBudget.mu.Lock()
		full := sealBudget.free == 0
		sealBudget.mu.Unlock()
		if full {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the seals never took the whole budget")
		default:
		}
		runtime.Gosched()
	}
	close(open)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline:
		t.Fatal("seals sharing the budget did not all finish: a deadlock")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sealBudget.mu.Lock()
	least, free := sealBudget.leastFree, sealBudget.free
	sealBudget.mu.Unlock()
	if least != 0 || free != n {
		t.Fatalf("budget of %d: fewest free %d (want 0: reached), free at the end %d (want all back)", n, least, free)
	}
	waitReturned(t, "after the budget test")
}
