//go:build linux && goexperiment.runtimesecret

package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	rtsecret "runtime/secret"
	"testing"
)

// The evaluation of Go's runtime/secret (docs/in-process.md): what
// secret.Do costs around the code that handles key bytes. Run with
// GOEXPERIMENT=runtimesecret go test -run '^$' -bench SecretDo.

func BenchmarkSecretDo(b *testing.B) {
	withArena(b, backingSecretmem)
	k, err := FromBytes(pattern(7))
	if err != nil {
		b.Fatal(err)
	}
	defer k.Wipe()
	pt := make([]byte, chunk)
	nonce := make([]byte, 12)
	out := make([]byte, 0, chunk+16)
	useSeal := func() {
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
	derive := func() {
		k.Use(func(kb []byte) error {
			sk, _ := hkdf.Key(sha256.New, kb, nil, "bench", 32)
			clear(sk)
			return nil
		})
	}
	b.Run("empty/plain", func(b *testing.B) {
		for b.Loop() {
			func() {}()
		}
	})
	b.Run("empty/Do", func(b *testing.B) {
		for b.Loop() {
			rtsecret.Do(func() {})
		}
	})
	b.Run("HKDF/plain", func(b *testing.B) {
		for b.Loop() {
			derive()
		}
	})
	b.Run("HKDF/Do", func(b *testing.B) {
		for b.Loop() {
			rtsecret.Do(derive)
		}
	})
	b.Run("UseSeal64K/plain", func(b *testing.B) {
		b.SetBytes(chunk)
		for b.Loop() {
			useSeal()
		}
	})
	b.Run("UseSeal64K/Do", func(b *testing.B) {
		b.SetBytes(chunk)
		for b.Loop() {
			rtsecret.Do(useSeal)
		}
	})
}
