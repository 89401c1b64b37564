package secret

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// backing is where a page of key slots lives, strongest first.
type backing int

const (
	backingSecretmem backing = iota // memfd_secret(2): not in the kernel's direct map, locked, not dumped
	backingLocked                   // anonymous pages, mlock'ed, MADV_DONTDUMP, MADV_WIPEONFORK
	backingUnlocked                 // anonymous pages, MADV_DONTDUMP, MADV_WIPEONFORK, not locked
	backingHeap                     // Go heap (platforms without the calls above)
	backingNone                     // no page could be mapped
)

// Stable names, as reported by Backing and `holdfast posture`.
func (b backing) String() string {
	switch b {
	case backingSecretmem:
		return "memfd_secret"
	case backingLocked:
		return "mlock"
	case backingUnlocked:
		return "unlocked"
	case backingHeap:
		return "heap"
	}
	return "none"
}

// Backing names the memory that holds keys in this process, the weakest of
// the pages mapped so far (mapping the first one if there is none yet):
//
//   - "memfd_secret": pages of a memfd_secret(2) file, which the kernel
//     removes from its own direct map, never swaps and never dumps; other
//     processes, root included, cannot read them through /proc/PID/mem or
//     ptrace.
//   - "mlock": anonymous pages locked in RAM (no swap, no hibernation image
//     while locked), excluded from core dumps, zero in a forked child.
//   - "unlocked": as "mlock", but locking failed (RLIMIT_MEMLOCK): the pages
//     can be swapped out.
//   - "heap": the Go heap (systems other than Linux).
//   - "none": no page could be mapped; no key can be created.
func Backing() string {
	b, _ := global.describe()
	return b.String()
}

// BackingDetail says, for people, how keys are held and why a stronger
// backing was not used.
func BackingDetail() string {
	_, d := global.describe()
	return d
}

// WipeAll wipes every key that is alive in the process: each is zeroed and
// marked wiped (Use returns ErrWiped through every copy of it), including
// keys already garbage collected whose cleanup has not run yet. It waits
// for a Use in progress on a key to return before wiping that key. A key
// created while it runs may survive. cmd/holdfast calls it before the
// process exits and when a signal ends it.
func WipeAll() { global.wipeAll() }

// global is the arena every Key is allocated from. Tests swap it for one
// with another backing; so does a build for bench/keymem.sh only
// (unprotected.go); nothing else assigns it.
var global = newArena(backingSecretmem)

// arena hands out KeySize-byte slots from pages outside the Go heap. A slot
// is zeroed when it is released and before it is handed out again.
//
// Locking: a slot's bytes and state are guarded by its own RWMutex (read:
// Use; write: filling, wiping); the page list and the free list by
// arena.mu. No code holds both: a slot is taken off the free list under
// arena.mu and locked after, and locked, zeroed and unlocked before it
// goes back. So Use may create or wipe other keys, and WipeAll can wait
// for a Use in progress without blocking the arena.
type arena struct {
	first backing // strongest backing to try: backingSecretmem except in tests

	mu      sync.Mutex
	pages   []*page
	free    []slot   // generation unused
	weakest backing  // of the pages mapped so far
	why     []string // why stronger backings were given up, for BackingDetail
	noMemfd bool     // memfd_secret failed once: do not try it again
	noLock  bool     // mlock failed once: do not try it again
}

// page is one mapping of slots.
type page struct {
	a       *arena
	mem     []byte // outside the Go heap; len is a multiple of KeySize
	backing backing
	state   []slotState
}

// slotState is guarded by its mu. gen counts the owners a slot has had; a
// slot value from an earlier owner no longer matches it.
type slotState struct {
	mu    sync.RWMutex
	gen   uint64
	inUse bool
}

// slot names one KeySize-byte slot and the generation of its owner.
type slot struct {
	p   *page
	i   int
	gen uint64
}

func (s slot) bytes() []byte {
	off := s.i * KeySize
	return s.p.mem[off : off+KeySize : off+KeySize]
}

func (s slot) state() *slotState { return &s.p.state[s.i] }

func newArena(first backing) *arena {
	return &arena{first: first, weakest: backingNone}
}

// alloc hands out a zeroed slot, write-locked for the caller to fill and
// unlock: WipeAll, which may reach it at once, waits until it holds the key.
func (a *arena) alloc() (slot, error) {
	a.mu.Lock()
	if len(a.free) == 0 {
		if err := a.grow(); err != nil {
			a.mu.Unlock()
			return slot{}, err
		}
	}
	s := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	a.mu.Unlock()
	st := s.state()
	st.mu.Lock()
	st.gen++
	st.inUse = true
	s.gen = st.gen
	return s, nil
}

// current reports whether s still owns its slot. The slot's lock is held.
func (s slot) current() bool {
	st := s.state()
	return st.inUse && st.gen == s.gen
}

// release zeroes s and returns it to the free list, if s still owns it.
// Wipe, the cleanup of a collected key and WipeAll call it; whichever
// comes first releases the slot, the others find it no longer theirs.
func (s slot) release() {
	st := s.state()
	st.mu.Lock()
	if !s.current() {
		st.mu.Unlock()
		return
	}
	s.releaseLocked()
}

// releaseLocked is release with the slot's lock held; it unlocks it.
func (s slot) releaseLocked() {
	st := s.state()
	clear(s.bytes())
	st.inUse = false
	st.mu.Unlock()
	a := s.p.a
	a.mu.Lock()
	a.free = append(a.free, slot{p: s.p, i: s.i})
	a.mu.Unlock()
}

// grow maps one more page. a.mu is held.
func (a *arena) grow() error {
	mem, b, err := a.mapPage()
	if err != nil {
		return fmt.Errorf("secret: no memory for keys: %w", err)
	}
	n := len(mem) / KeySize
	p := &page{a: a, mem: mem, backing: b, state: make([]slotState, n)}
	a.pages = append(a.pages, p)
	if len(a.pages) == 1 || b > a.weakest {
		a.weakest = b
	}
	// Hand out low addresses first.
	for i := n - 1; i >= 0; i-- {
		a.free = append(a.free, slot{p: p, i: i})
	}
	return nil
}

// describe maps the first page if there is none and reports the weakest
// backing with an explanation.
func (a *arena) describe() (backing, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pages) == 0 {
		if err := a.grow(); err != nil {
			return backingNone, err.Error()
		}
	}
	var d string
	switch a.weakest {
	case backingSecretmem:
		d = "keys in memfd_secret pages: outside the kernel's direct map, locked, not dumped, unreadable by other processes including root"
	case backingLocked:
		d = "keys in mlock'ed pages, excluded from core dumps"
	case backingUnlocked:
		d = "keys in pages excluded from core dumps but NOT locked: they can be swapped out"
	case backingHeap:
		d = "keys on the Go heap"
	}
	if len(a.why) > 0 {
		d += " (" + strings.Join(a.why, "; ") + ")"
	}
	return a.weakest, d
}

// wipeAll: see WipeAll. It visits every slot under that slot's lock alone,
// so it waits for a Use in progress on it, and zeroes and releases it if
// it is handed out. A key whose slot it has passed already survives.
func (a *arena) wipeAll() {
	a.mu.Lock()
	pages := slices.Clone(a.pages)
	a.mu.Unlock()
	for _, p := range pages {
		for i := range p.state {
			st := &p.state[i]
			st.mu.Lock()
			if !st.inUse {
				st.mu.Unlock()
				continue
			}
			slot{p: p, i: i}.releaseLocked()
		}
	}
}

// liveSlots counts the slots handed out (tests).
func (a *arena) liveSlots() int {
	a.mu.Lock()
	pages := slices.Clone(a.pages)
	a.mu.Unlock()
	n := 0
	for _, p := range pages {
		for i := range p.state {
			p.state[i].mu.RLock()
			if p.state[i].inUse {
				n++
			}
			p.state[i].mu.RUnlock()
		}
	}
	return n
}
