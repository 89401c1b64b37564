//go:build linux

package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"sync"
	"testing"
)

// Benchmarks of key memory (numbers in docs/in-process.md, "Key memory").
// Each runs against every arena backing and against "before": the Key of
// the previous version, a [32]byte beside its RWMutex on the Go heap.

// heapKey is the previous Key, kept here as the baseline.
type heapKey struct {
	mu    sync.RWMutex
	b     [KeySize]byte
	wiped bool
}

func (k *heapKey) Use(fn func([]byte) error) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.wiped {
		return ErrWiped
	}
	return fn(k.b[:])
}

func (k *heapKey) Wipe() {
	k.mu.Lock()
	clear(k.b[:])
	k.wiped = true
	k.mu.Unlock()
}

// user is what the benchmarks need of a key.
type user interface {
	Use(func([]byte) error) error
}

// forEachBacking runs fn with a key of every backing, and of the previous
// implementation.
func forEachBacking(b *testing.B, fn func(b *testing.B, k user)) {
	b.Run("before", func(b *testing.B) {
		k := &heapKey{}
		copy(k.b[:], pattern(7))
		fn(b, k)
	})
	for _, bk := range backings {
		b.Run(bk.want, func(b *testing.B) {
			withArena(b, bk.first)
			if got := Backing(); got != bk.want {
				b.Fatalf("backing %q, want %q: %s", got, bk.want, BackingDetail())
			}
			k, err := FromBytes(pattern(7))
			if err != nil {
				b.Fatal(err)
			}
			defer k.Wipe()
			fn(b, k)
		})
	}
}

const chunk = 64 << 10

// BenchmarkUse is the bare cost of borrowing the key bytes.
func BenchmarkUse(b *testing.B) {
	forEachBacking(b, func(b *testing.B, k user) {
		for b.Loop() {
			if err := k.Use(func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUseSeal64K derives an AES-256-GCM key from the key inside Use
// (HKDF, as stream.SegmentAEAD does per segment), then seals one 64 KiB
// chunk: the hot path when every segment is one chunk long.
func BenchmarkUseSeal64K(b *testing.B) {
	pt := make([]byte, chunk)
	nonce := make([]byte, 12)
	forEachBacking(b, func(b *testing.B, k user) {
		out := make([]byte, 0, chunk+16)
		b.SetBytes(chunk)
		for b.Loop() {
			var aead cipher.AEAD
			err := k.Use(func(kb []byte) error {
				sk, err := hkdf.Key(sha256.New, kb, nil, "bench", 32)
				if err != nil {
					return err
				}
				defer clear(sk)
				blk, err := aes.NewCipher(sk)
				if err != nil {
					return err
				}
				aead, err = cipher.NewGCM(blk)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			out = aead.Seal(out[:0], nonce, pt, nil)
		}
	})
}

// BenchmarkSeal64K is the seal alone, with the AEAD built once: what each
// further chunk of a segment costs, whatever holds the key.
func BenchmarkSeal64K(b *testing.B) {
	pt := make([]byte, chunk)
	nonce := make([]byte, 12)
	blk, _ := aes.NewCipher(pattern(7))
	aead, _ := cipher.NewGCM(blk)
	out := make([]byte, 0, chunk+16)
	b.SetBytes(chunk)
	for b.Loop() {
		out = aead.Seal(out[:0], nonce, pt, nil)
	}
}

// BenchmarkNewWipe is the life of a short-lived key (a data key per
// object): created from bytes, used once, wiped.
func BenchmarkNewWipe(b *testing.B) {
	src := pattern(9)
	buf := make([]byte, KeySize)
	nop := func([]byte) error { return nil }
	b.Run("before", func(b *testing.B) {
		for b.Loop() {
			copy(buf, src)
			k := &heapKey{}
			copy(k.b[:], buf)
			clear(buf)
			k.Use(nop)
			k.Wipe()
		}
	})
	for _, bk := range backings {
		b.Run(bk.want, func(b *testing.B) {
			withArena(b, bk.first)
			for b.Loop() {
				copy(buf, src)
				k, err := FromBytes(buf)
				if err != nil {
					b.Fatal(err)
				}
				k.Use(nop)
				k.Wipe()
			}
		})
	}
}

// BenchmarkNewDrop is BenchmarkNewWipe for keys nobody wipes: the
// collector's cleanup zeroes and releases each slot.
func BenchmarkNewDrop(b *testing.B) {
	src := pattern(9)
	buf := make([]byte, KeySize)
	for _, bk := range backings {
		b.Run(bk.want, func(b *testing.B) {
			withArena(b, bk.first)
			for b.Loop() {
				copy(buf, src)
				if _, err := FromBytes(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
