package keyserver

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

// TestHeadBook: the book moves forward only, refuses a second hash for a
// recorded sequence (a fork), and what it acknowledged is in the file.
func TestHeadBook(t *testing.T) {
	p := filepath.Join(t.TempDir(), CatalogHeadFile)
	b, err := openHeadBook(p)
	if err != nil {
		t.Fatal(err)
	}
	if h := b.get(); h.Has {
		t.Fatalf("a new book holds %+v", h)
	}
	h5 := [32]byte{5}
	if h, err := b.record(5, h5); err != nil || h.Seq != 5 || h.Hash != h5 {
		t.Fatalf("record 5: %+v %v", h, err)
	}
	// An older report (another client committed later, reported first):
	// accepted, the book keeps the newer head.
	if h, err := b.record(3, [32]byte{3}); err != nil || h.Seq != 5 {
		t.Fatalf("an older report: %+v %v", h, err)
	}
	// The same head again: accepted (a retried report).
	if _, err := b.record(5, h5); err != nil {
		t.Fatalf("the same head again: %v", err)
	}
	// The same sequence with another hash: a fork, refused; the control
	// above differs only in the hash.
	if _, err := b.record(5, [32]byte{0xee}); !errors.Is(err, errHeadFork) {
		t.Fatalf("a second hash for commit 5: %v", err)
	}
	// Many reports at once share writes; each is answered with its own
	// head or a newer one, and the file holds the newest.
	var wg sync.WaitGroup
	for i := uint64(6); i < 70; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h, err := b.record(i, [32]byte{byte(i)}); err != nil || h.Seq < i {
				t.Errorf("record %d: %+v %v", i, h, err)
			}
		}()
	}
	wg.Wait()
	b2, err := openHeadBook(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := b2.get(); got.Seq != 69 || got.Hash != ([32]byte{69}) {
		t.Fatalf("reopened: %+v, want seq 69", got)
	}
}
