package attacks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
)

// This file is test scaffolding for A13, not product crypto: it builds an
// AES-GCM ciphertext that authenticates under two different keys (an
// "invisible salamander") by solving GHASH for one block. GCM's tag is
//
//	T_k = GHASH_{H_k}(A, C) ⊕ E_k(J0),   H_k = E_k(0^128)
//
// and GHASH is linear in every ciphertext block: block j (of m) enters as
// C_j · H^(m-j+2). With every other block fixed, T_1 = T_2 is one linear
// equation in C_j over GF(2^128), solved with one inversion.

// gfBlock is an element of GF(2^128) in GCM's bit order (bit 0 is the most
// significant bit of byte 0).
type gfBlock [16]byte

// gfOne is the multiplicative identity in GCM's bit order.
var gfOne = gfBlock{0x80}

func (x gfBlock) xor(y gfBlock) gfBlock {
	for i := range x {
		x[i] ^= y[i]
	}
	return x
}

// gfMul multiplies in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, exactly
// as NIST SP 800-38D, algorithm 1.
func gfMul(x, y gfBlock) gfBlock {
	var z gfBlock
	v := y
	for i := 0; i < 128; i++ {
		if x[i/8]>>(7-i%8)&1 == 1 {
			z = z.xor(v)
		}
		lsb := v[15] & 1
		for k := 15; k > 0; k-- {
			v[k] = v[k]>>1 | v[k-1]<<7
		}
		v[0] >>= 1
		if lsb == 1 {
			v[0] ^= 0xe1
		}
	}
	return z
}

// gfPow raises x to the power n.
func gfPow(x gfBlock, n int) gfBlock {
	r := gfOne
	for ; n > 0; n-- {
		r = gfMul(r, x)
	}
	return r
}

// gfInv is x^(2^128-2), the inverse of a non-zero x.
func gfInv(x gfBlock) gfBlock {
	r := gfOne
	for i := 0; i < 128; i++ { // exponent bits, most significant first: 127 ones, then a zero
		r = gfMul(r, r)
		if i < 127 {
			r = gfMul(r, x)
		}
	}
	return r
}

// ghash is GHASH_H(A, C) with the lengths block.
func ghash(h gfBlock, ad, ct []byte) gfBlock {
	var y gfBlock
	absorb := func(b []byte) {
		for len(b) > 0 {
			var blk gfBlock
			n := copy(blk[:], b)
			b = b[n:]
			y = gfMul(y.xor(blk), h)
		}
	}
	absorb(ad)
	absorb(ct)
	var lens gfBlock
	binary.BigEndian.PutUint64(lens[:8], uint64(len(ad))*8)
	binary.BigEndian.PutUint64(lens[8:], uint64(len(ct))*8)
	return gfMul(y.xor(lens), h)
}

// gcmParts returns H = E_k(0) and E_k(J0) for a 12-byte nonce.
func gcmParts(key, nonce []byte) (h, ej0 gfBlock, err error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return h, ej0, err
	}
	b.Encrypt(h[:], make([]byte, 16))
	var j0 gfBlock
	copy(j0[:], nonce)
	j0[15] = 1
	b.Encrypt(ej0[:], j0[:])
	return h, ej0, nil
}

// salamander returns ciphertext||tag of blocks*16 bytes plus a 16-byte tag
// that opens with AES-256-GCM under key1 with associated data ad1 and under
// key2 with ad2, both with the same nonce. Every block is random except the
// last, which is solved for.
func salamander(key1, key2, nonce, ad1, ad2 []byte, blocks int) ([]byte, error) {
	if blocks < 1 || len(nonce) != 12 {
		return nil, errors.New("salamander: need at least one block and a 12-byte nonce")
	}
	h1, e1, err := gcmParts(key1, nonce)
	if err != nil {
		return nil, err
	}
	h2, e2, err := gcmParts(key2, nonce)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, 16*blocks)
	rand.Read(ct)
	j := blocks - 1
	clear(ct[16*j:])
	// With C_j = 0, the two tags differ by d; C_j adds C_j·(H1^e ⊕ H2^e),
	// e = m - j + 1 for a 0-based j (the lengths block is one more factor).
	d := ghash(h1, ad1, ct).xor(e1).xor(ghash(h2, ad2, ct)).xor(e2)
	e := blocks - j + 1
	coef := gfPow(h1, e).xor(gfPow(h2, e))
	if coef == (gfBlock{}) {
		return nil, errors.New("salamander: degenerate keys")
	}
	cj := gfMul(d, gfInv(coef))
	copy(ct[16*j:], cj[:])
	tag := ghash(h1, ad1, ct).xor(e1)
	return append(ct, tag[:]...), nil
}

// gcmOpen opens with the standard library's AES-GCM.
func gcmOpen(key, nonce, ct, ad []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return g.Open(nil, nonce, ct, ad)
}

// TestSalamanderConstruction proves the scaffolding itself: a forged
// ciphertext opens under both keys with crypto/cipher's GCM, to different
// plaintexts; the control shows one byte changed opens under neither, and
// that GHASH here agrees with the standard library's tags.
func TestSalamanderConstruction(t *testing.T) {
	k1, k2, nonce := make([]byte, 32), make([]byte, 32), make([]byte, 12)
	rand.Read(k1)
	rand.Read(k2)
	rand.Read(nonce)
	// GHASH agrees with crypto/cipher on an ordinary message.
	b, _ := aes.NewCipher(k1)
	g, _ := cipher.NewGCM(b)
	pt, ad := make([]byte, 40), []byte("associated")
	rand.Read(pt)
	sealed := g.Seal(nil, nonce, pt, ad)
	h, ej0, _ := gcmParts(k1, nonce)
	if tag := ghash(h, ad, sealed[:len(pt)]).xor(ej0); string(tag[:]) != string(sealed[len(pt):]) {
		t.Fatal("test GHASH disagrees with crypto/cipher")
	}
	for _, blocks := range []int{1, 2, 5} {
		ct, err := salamander(k1, k2, nonce, nil, []byte("other ad"), blocks)
		if err != nil {
			t.Fatal(err)
		}
		p1, err1 := gcmOpen(k1, nonce, ct, nil)
		p2, err2 := gcmOpen(k2, nonce, ct, []byte("other ad"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%d blocks: forged ciphertext does not open under both keys: %v, %v", blocks, err1, err2)
		}
		if string(p1) == string(p2) {
			t.Fatalf("%d blocks: both keys give the same plaintext", blocks)
		}
		ct[0] ^= 1
		if _, err := gcmOpen(k1, nonce, ct, nil); err == nil {
			t.Fatal("a flipped forged ciphertext still opens")
		}
	}
}
