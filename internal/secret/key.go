package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"io"
	"runtime"
)

// KeySize is the size of every symmetric key Holdfast holds: 256 bits.
const KeySize = 32

// ErrWiped is returned when a key is used after Wipe.
var ErrWiped = errors.New("secret: key has been wiped")

// Key is a 256-bit symmetric key. The zero value is an unusable, wiped key.
// Its bytes live outside the Go heap (see Backing), behind a pointer, so
// formatting a Key (or a struct holding one) with fmt prints an address,
// never the material. Every copy of a Key shares the material.
type Key struct {
	m *material
}

// material is a Key's handle: its slot, and the cleanup that zeroes and
// releases the slot when the handle is garbage collected without Wipe. It
// does not change after it is made; the slot's state says whether the key
// is wiped.
type material struct {
	s       slot
	cleanup runtime.Cleanup
}

// newMaterial allocates a zeroed slot from the arena and returns it locked:
// the caller fills it and calls m.s.state().mu.Unlock.
func newMaterial() (*material, error) {
	s, err := global.alloc()
	if err != nil {
		return nil, err
	}
	m := &material{s: s}
	m.cleanup = runtime.AddCleanup(m, slot.release, s)
	return m, nil
}

// wipe zeroes and releases the slot; later Use calls return ErrWiped.
func (m *material) wipe() {
	m.s.release()
	// Stop cancels the cleanup only while m is reachable. (A cleanup that
	// ran anyway would find the slot no longer its own.)
	m.cleanup.Stop()
	runtime.KeepAlive(m)
}

// New returns a fresh random key from crypto/rand.
func New() (Key, error) {
	return NewFrom(rand.Reader)
}

// NewFrom reads a key from r, straight into its slot. It is used with
// crypto/rand in production and with a deterministic stream by the
// test-vector generator.
func NewFrom(r io.Reader) (Key, error) {
	m, err := newMaterial()
	if err != nil {
		return Key{}, err
	}
	if _, err := io.ReadFull(r, m.s.bytes()); err != nil {
		m.s.releaseLocked()
		m.cleanup.Stop()
		runtime.KeepAlive(m)
		return Key{}, errors.New("secret: reading key material: " + err.Error())
	}
	m.s.state().mu.Unlock()
	return Key{m: m}, nil
}

// FromBytes copies b (which must be KeySize long) into a new Key and wipes b.
func FromBytes(b []byte) (Key, error) {
	if len(b) != KeySize {
		clear(b)
		return Key{}, errors.New("secret: key material has the wrong length")
	}
	m, err := newMaterial()
	if err != nil {
		clear(b)
		return Key{}, err
	}
	copy(m.s.bytes(), b)
	m.s.state().mu.Unlock()
	clear(b)
	return Key{m: m}, nil
}

// Use calls fn with the key bytes. fn must not retain or modify the slice.
func (k Key) Use(fn func(b []byte) error) error {
	if k.m == nil {
		return ErrWiped
	}
	st := k.m.s.state()
	st.mu.RLock()
	defer st.mu.RUnlock()
	if !k.m.s.current() {
		return ErrWiped
	}
	return fn(k.m.s.bytes())
}

// Valid reports whether the key holds material.
func (k Key) Valid() bool {
	if k.m == nil {
		return false
	}
	st := k.m.s.state()
	st.mu.RLock()
	defer st.mu.RUnlock()
	return k.m.s.current()
}

// Equal compares two keys in constant time. Wiped keys are never equal.
func (k Key) Equal(o Key) bool {
	if k.m == nil || o.m == nil {
		return false
	}
	if k.m == o.m {
		return k.Valid()
	}
	eq := false
	_ = k.Use(func(a []byte) error {
		return o.Use(func(b []byte) error {
			eq = subtle.ConstantTimeCompare(a, b) == 1
			return nil
		})
	})
	return eq
}

// Wipe zeroes the key material and returns its memory to the arena. Every
// copy of the Key value shares the material, so all of them become
// unusable. Wipe waits for a Use in progress to return; calling it from
// inside Use on the same key deadlocks.
func (k Key) Wipe() {
	if k.m == nil {
		return
	}
	k.m.wipe()
}
