package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
)

// RunParts runs the conformance suite of store.PartUploader against the
// stores made by newStore (as Run does). A store that does not implement
// it fails the suite: call RunParts only for stores that must.
func RunParts(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store, store.PartUploader)
	}{
		{"OutOfOrder", testPartsOutOfOrder},
		{"SentAgain", testPartsSentAgain},
		{"TailOnly", testPartsTailOnly},
		{"CompleteTwice", testPartsCompleteTwice},
		{"Abort", testPartsAbort},
		{"ShortPart", testPartsShort},
		{"Janitor", testPartsJanitor},
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
			pu, ok := s.(store.PartUploader)
			if !ok {
				t.Fatalf("%T does not implement store.PartUploader", s)
			}
			tc.fn(t, s, pu)
		})
	}
}

// partSize is a size every store accepts for a part that is not last.
func partSize(pu store.PartUploader) int {
	return int(max(pu.PartLimits().MinSize, 3000))
}

func create(t *testing.T, pu store.PartUploader, name string) string {
	t.Helper()
	h, err := pu.CreateParts(context.Background(), name)
	if err != nil {
		t.Fatalf("CreateParts(%q): %v", name, err)
	}
	if h == "" {
		t.Fatal("CreateParts returned an empty handle")
	}
	return h
}

func upload(t *testing.T, pu store.PartUploader, name, h string, n int, b []byte) store.StoredPart {
	t.Helper()
	tok, err := pu.UploadPart(context.Background(), name, h, n, plainReader{bytes.NewReader(b)}, int64(len(b)))
	if err != nil {
		t.Fatalf("UploadPart(%q, %d): %v", name, n, err)
	}
	return store.StoredPart{Number: n, Token: tok}
}

func complete(t *testing.T, pu store.PartUploader, name, h string, parts []store.StoredPart, tail []byte) {
	t.Helper()
	if err := pu.CompleteParts(context.Background(), name, h, parts, bytes.NewReader(tail), int64(len(tail))); err != nil {
		t.Fatalf("CompleteParts(%q): %v", name, err)
	}
}

// testPartsOutOfOrder: parts uploaded in any order make, with the tail,
// the object in part-number order; nothing is visible before completion.
func testPartsOutOfOrder(t *testing.T, s store.Store, pu store.PartUploader) {
	ctx := context.Background()
	n := partSize(pu)
	p1, p2, p3, tail := data(1, n), data(2, n+1), data(3, n+2), data(4, 777)
	h := create(t, pu, "obj")
	parts := []store.StoredPart{upload(t, pu, "obj", h, 3, p3), upload(t, pu, "obj", h, 1, p1), upload(t, pu, "obj", h, 2, p2)}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("parts are visible before completion: %v", got)
	}
	if _, err := s.Stat(ctx, "obj"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat before completion: %v", err)
	}
	slices.SortFunc(parts, func(a, b store.StoredPart) int { return a.Number - b.Number })
	complete(t, pu, "obj", h, parts, tail)
	wantObject(t, s, "obj", slices.Concat(p1, p2, p3, tail))
	if got := list(t, s, ""); len(got) != 1 {
		t.Fatalf("after completion the store lists %v", got)
	}
}

// testPartsSentAgain: a part sent again with other bytes is completed
// with the new bytes when named by its new token (after DeletePart of the
// old one, which must not disturb the new).
func testPartsSentAgain(t *testing.T, s store.Store, pu store.PartUploader) {
	n := partSize(pu)
	h := create(t, pu, "obj")
	old := upload(t, pu, "obj", h, 1, data(10, n))
	p1 := data(11, n)
	cur := upload(t, pu, "obj", h, 1, p1)
	p2 := upload(t, pu, "obj", h, 2, data(12, n))
	if err := pu.DeletePart(context.Background(), "obj", h, old); err != nil {
		t.Fatalf("DeletePart: %v", err)
	}
	complete(t, pu, "obj", h, []store.StoredPart{cur, p2}, []byte("tail"))
	wantObject(t, s, "obj", slices.Concat(p1, data(12, n), []byte("tail")))
}

// testPartsTailOnly: an object may be all tail.
func testPartsTailOnly(t *testing.T, s store.Store, pu store.PartUploader) {
	h := create(t, pu, "small")
	tail := data(20, 5000)
	complete(t, pu, "small", h, nil, tail)
	wantObject(t, s, "small", tail)
}

// testPartsCompleteTwice: a completion repeated after it succeeded (its
// answer lost) succeeds and leaves the object as it was.
func testPartsCompleteTwice(t *testing.T, s store.Store, pu store.PartUploader) {
	n := partSize(pu)
	h := create(t, pu, "obj")
	p := upload(t, pu, "obj", h, 1, data(30, n))
	tail := data(31, 100)
	complete(t, pu, "obj", h, []store.StoredPart{p}, tail)
	complete(t, pu, "obj", h, []store.StoredPart{p}, tail)
	wantObject(t, s, "obj", slices.Concat(data(30, n), tail))
}

// testPartsAbort: an aborted construction leaves nothing, cannot be
// completed, and may be aborted again; another one (the control)
// completes.
func testPartsAbort(t *testing.T, s store.Store, pu store.PartUploader) {
	ctx := context.Background()
	n := partSize(pu)
	h := create(t, pu, "gone")
	p := upload(t, pu, "gone", h, 1, data(40, n))
	if err := pu.AbortParts(ctx, "gone", h); err != nil {
		t.Fatalf("AbortParts: %v", err)
	}
	if err := pu.AbortParts(ctx, "gone", h); err != nil {
		t.Fatalf("AbortParts again: %v", err)
	}
	if err := pu.CompleteParts(ctx, "gone", h, []store.StoredPart{p}, bytes.NewReader(nil), 0); err == nil {
		t.Fatal("an aborted construction completed")
	}
	if _, err := pu.UploadPart(ctx, "gone", h, 2, bytes.NewReader(data(41, 10)), 10); err == nil {
		t.Fatal("a part was uploaded to an aborted construction")
	}
	wantGone(t, s, "gone")
	h2 := create(t, pu, "kept")
	p2 := upload(t, pu, "kept", h2, 1, data(42, n))
	complete(t, pu, "kept", h2, []store.StoredPart{p2}, nil)
	wantObject(t, s, "kept", data(42, n))
	if got := list(t, s, ""); len(got) != 1 || got[0].Name != "kept" {
		t.Fatalf("the store lists %v", got)
	}
}

// testPartsShort: a part body shorter or longer than declared fails with
// ErrShortWrite and leaves no part; the exact body (control) completes.
func testPartsShort(t *testing.T, s store.Store, pu store.PartUploader) {
	ctx := context.Background()
	n := partSize(pu)
	h := create(t, pu, "obj")
	b := data(50, n)
	for _, declared := range []int64{int64(n) + 1, int64(n) - 1} {
		if _, err := pu.UploadPart(ctx, "obj", h, 1, plainReader{bytes.NewReader(b)}, declared); !errors.Is(err, store.ErrShortWrite) {
			t.Errorf("part of %d bytes declared %d: %v, want ErrShortWrite", n, declared, err)
		}
	}
	p := upload(t, pu, "obj", h, 1, b)
	complete(t, pu, "obj", h, []store.StoredPart{p}, []byte{1})
	wantObject(t, s, "obj", append(b, 1))
}

// testPartsJanitor: a store whose interrupted constructions cost storage
// abandons those not in progress and keeps the others, which then
// complete.
func testPartsJanitor(t *testing.T, s store.Store, pu store.PartUploader) {
	j, ok := s.(store.Janitor)
	if !ok {
		t.Fatalf("%T builds objects from parts but has no janitor", s)
	}
	ctx := context.Background()
	n := partSize(pu)
	hd := create(t, pu, "dead")
	upload(t, pu, "dead", hd, 1, data(60, n))
	hl := create(t, pu, "live")
	pl := upload(t, pu, "live", hl, 1, data(61, n))
	got, err := j.AbortIncomplete(ctx, func(name string) bool { return name == "live" })
	if err != nil || got != 1 {
		t.Fatalf("AbortIncomplete: %d, %v; want 1 abandoned", got, err)
	}
	if err := pu.CompleteParts(ctx, "dead", hd, nil, bytes.NewReader([]byte("x")), 1); err == nil {
		t.Fatal("an abandoned construction completed")
	}
	complete(t, pu, "live", hl, []store.StoredPart{pl}, nil)
	wantObject(t, s, "live", data(61, n))
	wantGone(t, s, "dead")
}
