package hsm

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/testutil/memscan"
)

// TestUnwrapResidue: a key the token unwraps, wiped by its holder and
// collected, leaves none of its bytes anywhere in the process's readable
// memory. (The binding's Ctx.Decrypt callocs C_Decrypt's output and frees
// it without clearing, and the allocator overwrites only a freed chunk's
// first 16 bytes, so half of every key stayed in the C heap; decrypt.go
// has the module write into a buffer holdfast clears.) Controls: after
// the wrap of the same key the scan finds nothing, and a copy made on
// purpose is found.
//
// The check runs in a child test process with asynchronous preemption
// off. A preemption signal (SIGURG) that lands while a thread holds key
// bytes in its registers — SoftHSM's own AES code, which runs in this
// process as no real token's does, or this test's search for the key —
// has the kernel save those registers in the signal's frame, on the
// thread's signal stack in the Go heap, where the next scan finds them
// (seen here in most runs with it on, never with it off). Those are the
// token library's registers and the test's own, not a buffer holdfast
// could clear.
func TestUnwrapResidue(t *testing.T) {
	if !memscan.InChild(t) {
		return
	}
	s, _, _ := testSource(t, Options{CacheTTL: -1})
	if s.tok.mod.dec == nil {
		t.Fatal("SoftHSM2's C_Decrypt was not found in its function list: unwraps go through the binding's Decrypt")
	}
	ctx := context.Background()
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Wipe()
	arena := 0
	if secret.Backing() != "memfd_secret" {
		arena = 1 // k's own slot is readable
	}
	w, err := s.Wrap(ctx, 1, bucketAD(1), k)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	if c := memscan.Halves(t, k, arena); len(c) != 0 {
		t.Fatalf("after the wrap: key bytes at %v", c)
	}
	var ctl []byte
	k.Use(func(kb []byte) error { ctl = bytes.Clone(kb); return nil })
	if c := memscan.Halves(t, k, arena); len(c) < 2 {
		t.Fatalf("control: a copy on the heap found as %v, want both halves at least", c)
	}
	clear(ctl)

	got, err := s.Unwrap(ctx, w, bucketAD(1))
	if err != nil || !got.Equal(k) {
		t.Fatalf("unwrap: %v", err)
	}
	got.Wipe()
	runtime.GC()
	if c := memscan.Halves(t, k, arena); len(c) != 0 {
		t.Fatalf("after the unwrap, the key wiped: key bytes at %v", c)
	}
}
