package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"io"
	"sync"
)

// KeySize is the size of every symmetric key Holdfast holds: 256 bits.
const KeySize = 32

// ErrWiped is returned when a key is used after Wipe.
var ErrWiped = errors.New("secret: key has been wiped")

// Key is a 256-bit symmetric key. The zero value is an unusable, wiped key.
// Its bytes live behind a pointer, so formatting a Key (or a struct holding
// one) with fmt prints an address, never the material.
type Key struct {
	m *material
}

type material struct {
	mu    sync.RWMutex
	b     [KeySize]byte
	wiped bool
}

// New returns a fresh random key from crypto/rand.
func New() (Key, error) {
	return NewFrom(rand.Reader)
}

// NewFrom reads a key from r. It is used with crypto/rand in production and
// with a deterministic stream by the test-vector generator.
func NewFrom(r io.Reader) (Key, error) {
	m := &material{}
	if _, err := io.ReadFull(r, m.b[:]); err != nil {
		return Key{}, errors.New("secret: reading key material: " + err.Error())
	}
	return Key{m: m}, nil
}

// FromBytes copies b (which must be KeySize long) into a new Key and wipes b.
func FromBytes(b []byte) (Key, error) {
	if len(b) != KeySize {
		clear(b)
		return Key{}, errors.New("secret: key material has the wrong length")
	}
	m := &material{}
	copy(m.b[:], b)
	clear(b)
	return Key{m: m}, nil
}

// Use calls fn with the key bytes. fn must not retain or modify the slice.
func (k Key) Use(fn func(b []byte) error) error {
	if k.m == nil {
		return ErrWiped
	}
	k.m.mu.RLock()
	defer k.m.mu.RUnlock()
	if k.m.wiped {
		return ErrWiped
	}
	return fn(k.m.b[:])
}

// Valid reports whether the key holds material.
func (k Key) Valid() bool {
	if k.m == nil {
		return false
	}
	k.m.mu.RLock()
	defer k.m.mu.RUnlock()
	return !k.m.wiped
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

// Wipe zeroes the key material. Every copy of the Key value shares the
// material, so all of them become unusable.
func (k Key) Wipe() {
	if k.m == nil {
		return
	}
	k.m.mu.Lock()
	clear(k.m.b[:])
	k.m.wiped = true
	k.m.mu.Unlock()
}
