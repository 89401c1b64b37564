//go:build linux

package secret

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// withArena makes the keys a test creates come from a fresh arena that
// tries first the given backing, and puts the process's arena back after.
// Tests that call it must not run in parallel.
func withArena(t testing.TB, first backing) *arena {
	a := newArena(first)
	old := global
	global = a
	t.Cleanup(func() { global = old })
	return a
}

// view returns the slot holding k's bytes. It stays readable after Wipe
// (arena pages are never unmapped), which is how tests see the zeroing.
func view(t *testing.T, k Key) []byte {
	t.Helper()
	if !k.Valid() {
		t.Fatal("view of a wiped key")
	}
	return k.m.s.bytes()
}

func pattern(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func isZero(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }

// backings lists what each test runs against, in the same run: the
// arena as production builds it (memfd_secret on this kernel), the
// fallbacks forced through the arena's first backing, and the Go heap.
var backings = []struct {
	first backing
	want  string
}{
	{backingSecretmem, "memfd_secret"},
	{backingLocked, "mlock"},
	{backingUnlocked, "unlocked"},
	{backingHeap, "heap"},
}

func TestWipeZeroesTheSlot(t *testing.T) {
	for _, b := range backings {
		t.Run(b.want, func(t *testing.T) {
			withArena(t, b.first)
			requireBacking(t, b.want)
			k, err := FromBytes(pattern(0x5a))
			if err != nil {
				t.Fatal(err)
			}
			v := view(t, k)
			// Control: the slot held the key until Wipe.
			if !bytes.Equal(v, pattern(0x5a)) {
				t.Fatalf("slot holds %x before Wipe", v)
			}
			copyOfK := k
			k.Wipe()
			if !isZero(v) {
				t.Fatalf("slot holds %x after Wipe", v)
			}
			if copyOfK.Valid() || copyOfK.Use(func([]byte) error { return nil }) != ErrWiped {
				t.Fatal("a copy of a wiped key is still usable")
			}
			k.Wipe() // twice is harmless
		})
	}
}

func TestReleasedSlotIsReusedZeroed(t *testing.T) {
	for _, b := range backings {
		t.Run(b.want, func(t *testing.T) {
			withArena(t, b.first)
			k, err := FromBytes(pattern(0x11))
			if err != nil {
				t.Fatal(err)
			}
			addr := &view(t, k)[0]
			k.Wipe()
			m, err := newMaterial()
			if err != nil {
				t.Fatal(err)
			}
			m.s.state().mu.Unlock()
			defer m.wipe()
			// Control: the new key really got the released slot.
			if &m.s.bytes()[0] != addr {
				t.Fatal("the released slot was not handed out again")
			}
			if !isZero(m.s.bytes()) {
				t.Fatalf("slot handed out holding %x", m.s.bytes())
			}
		})
	}
}

// TestCollectedKeyIsWiped: a key dropped without Wipe is zeroed and its
// slot released once the collector finds it, while a key still referenced
// survives the same collections.
func TestCollectedKeyIsWiped(t *testing.T) {
	for _, b := range backings {
		t.Run(b.want, func(t *testing.T) {
			a := withArena(t, b.first)
			kept, err := FromBytes(pattern(0x22))
			if err != nil {
				t.Fatal(err)
			}
			var dropped []byte
			func() {
				k, err := FromBytes(pattern(0x33))
				if err != nil {
					t.Fatal(err)
				}
				dropped = view(t, k)
			}()
			if !bytes.Equal(dropped, pattern(0x33)) {
				t.Fatal("dropped key's slot does not hold it")
			}
			// Cleanups run on their own goroutine after a collection; wait
			// for the count, not for a time.
			for i := 0; i < 1000 && a.liveSlots() > 1; i++ {
				runtime.GC()
				runtime.Gosched()
			}
			if n := a.liveSlots(); n != 1 {
				t.Fatalf("%d live slots after collecting, want 1 (the kept key)", n)
			}
			if !isZero(dropped) {
				t.Fatalf("collected key's slot holds %x", dropped)
			}
			if err := kept.Use(func(k []byte) error {
				if !bytes.Equal(k, pattern(0x22)) {
					return errors.New("kept key changed")
				}
				return nil
			}); err != nil {
				t.Fatalf("kept key: %v", err)
			}
			kept.Wipe()
		})
	}
}

func TestWipeAll(t *testing.T) {
	for _, b := range backings {
		t.Run(b.want, func(t *testing.T) {
			a := withArena(t, b.first)
			var ks []Key
			var vs [][]byte
			// More than one page of keys.
			for i := range 300 {
				k, err := FromBytes(pattern(byte(i) | 1))
				if err != nil {
					t.Fatal(err)
				}
				ks, vs = append(ks, k), append(vs, view(t, k))
			}
			copyOfFirst := ks[0]
			if !copyOfFirst.Valid() || isZero(vs[299]) {
				t.Fatal("keys not set up")
			}
			WipeAll()
			for i, k := range ks {
				if k.Valid() || !isZero(vs[i]) {
					t.Fatalf("key %d survived WipeAll", i)
				}
			}
			if copyOfFirst.Valid() {
				t.Fatal("a copy survived WipeAll")
			}
			if n := a.liveSlots(); n != 0 {
				t.Fatalf("%d slots still handed out", n)
			}
			after, err := New()
			if err != nil || !after.Valid() {
				t.Fatalf("no key after WipeAll: %v", err)
			}
			after.Wipe()
		})
	}
}

// TestUseSeesWholeKeyOrErrWiped: with WipeAll, Wipe and new keys racing
// Use (run with -race), a Use sees either the whole key or ErrWiped, never
// a half-zeroed one.
func TestUseSeesWholeKeyOrErrWiped(t *testing.T) {
	for _, b := range backings {
		t.Run(b.want, func(t *testing.T) {
			withArena(t, b.first)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var bad []string
			var used, refused int
			for g := range 8 {
				wg.Go(func() {
					for i := range 200 {
						want := pattern(byte(g*31+i) | 1)
						k, err := FromBytes(bytes.Clone(want))
						if err != nil {
							mu.Lock()
							bad = append(bad, err.Error())
							mu.Unlock()
							return
						}
						err = k.Use(func(got []byte) error {
							if !bytes.Equal(got, want) {
								return fmt.Errorf("Use saw %x, want %x", got, want)
							}
							return nil
						})
						mu.Lock()
						switch {
						case err == nil:
							used++
						case err == ErrWiped:
							refused++
						default:
							bad = append(bad, err.Error())
						}
						mu.Unlock()
						if i%3 == 0 {
							k.Wipe()
						}
						if g == 0 && i%20 == 0 {
							WipeAll()
						}
					}
				})
			}
			wg.Wait()
			if len(bad) > 0 {
				t.Fatalf("%d bad uses, first: %s", len(bad), bad[0])
			}
			// Control: most uses did see their key.
			if used == 0 {
				t.Fatalf("no Use succeeded (%d refused)", refused)
			}
			WipeAll()
		})
	}
}

// TestBackingIsTheWeakestPage: once one page could not get the strongest
// backing, Backing says so.
func TestBackingIsTheWeakestPage(t *testing.T) {
	a := withArena(t, backingSecretmem)
	first := requireBacking(t, "memfd_secret")
	var ks []Key
	defer func() {
		for _, k := range ks {
			k.Wipe()
		}
	}()
	a.mu.Lock()
	a.noMemfd = true // as if memfd_secret failed for the next page
	a.why = append(a.why, "memfd_secret: test")
	perPage := len(a.pages[0].mem) / KeySize
	a.mu.Unlock()
	for range perPage + 1 {
		k, err := New()
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
	}
	if got := Backing(); got != "mlock" {
		t.Fatalf("Backing %q with a memfd_secret page (%s) and an mlock one", got, first)
	}
	if d := BackingDetail(); !strings.Contains(d, "memfd_secret: test") {
		t.Fatalf("detail %q does not say why", d)
	}
}

// requireBacking fails unless the current arena holds keys in want, with
// the arena's own explanation (which names the fix when memfd_secret is
// disabled).
func requireBacking(t *testing.T, want string) string {
	t.Helper()
	if got := Backing(); got != want {
		t.Fatalf("keys are held in %q, want %q: %s", got, want, BackingDetail())
	}
	return BackingDetail()
}
