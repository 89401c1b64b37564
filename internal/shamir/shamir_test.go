package shamir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
)

// FIPS-197 §4.2 and §5.1.1: {57}•{83} = {c1}, {57}•{13} = {fe}, and the
// inverse of {53} is {ca}.
func TestFieldVectors(t *testing.T) {
	if got := mul(0x57, 0x83); got != 0xc1 {
		t.Errorf("57*83 = %02x, want c1", got)
	}
	if got := mul(0x57, 0x13); got != 0xfe {
		t.Errorf("57*13 = %02x, want fe", got)
	}
	if got := inv(0x53); got != 0xca {
		t.Errorf("inv(53) = %02x, want ca", got)
	}
	if inv(0) != 0 {
		t.Error("inv(0) is not 0")
	}
	// Every non-zero element times its inverse is one; multiplication
	// commutes and distributes over XOR.
	for a := 1; a < 256; a++ {
		if p := mul(byte(a), inv(byte(a))); p != 1 {
			t.Fatalf("%02x * inv = %02x", a, p)
		}
		for b := 0; b < 256; b++ {
			if mul(byte(a), byte(b)) != mul(byte(b), byte(a)) {
				t.Fatalf("mul(%02x,%02x) does not commute", a, b)
			}
			if mul(byte(a), byte(b)^0x5c) != mul(byte(a), byte(b))^mul(byte(a), 0x5c) {
				t.Fatalf("mul(%02x,.) does not distribute", a)
			}
		}
	}
}

// vectorShares were computed by an independent, table-based (log/exp)
// implementation for secret "holdfast shamir!", k=3, n=5 and coefficients
// (i*37+11) mod 256.
var vectorShares = []string{
	"534037830dbe5853fb1c9306465659c6",
	"be3674957b257b8ea027fd70e60daccd",
	"85192f7210fa50a97b480617cd32872a",
	"69c1d20d5d40007d8fc5a21239c9c306",
	"52ee89ea369f2b5a54aa597512f6e8e1",
}

func TestShareVectors(t *testing.T) {
	secret := []byte("holdfast shamir!")
	coeffs := make([]byte, len(secret)*2)
	for i := range coeffs {
		coeffs[i] = byte(i*37 + 11)
	}
	shares := splitWith(secret, 5, 3, coeffs)
	for i, s := range shares {
		if s.X != byte(i+1) || hex.EncodeToString(s.Y) != vectorShares[i] {
			t.Errorf("share %d = %d:%x, want %d:%s", i, s.X, s.Y, i+1, vectorShares[i])
		}
	}
	// Split reads exactly those coefficients from its random stream.
	got, err := Split(secret, 5, 3, bytes.NewReader(coeffs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i].Y, shares[i].Y) {
			t.Errorf("Split share %d differs from the vector", i+1)
		}
	}
}

// Every 3-subset of 5 shares rebuilds the secret; every 2-subset gives
// something else (with these fixed coefficients no 2-subset happens to
// equal the secret).
func TestEverySubset(t *testing.T) {
	secret := []byte("holdfast shamir!")
	coeffs := make([]byte, len(secret)*2)
	for i := range coeffs {
		coeffs[i] = byte(i*37 + 11)
	}
	shares := splitWith(secret, 5, 3, coeffs)
	n3, n2 := 0, 0
	for a := 0; a < 5; a++ {
		for b := a + 1; b < 5; b++ {
			got, err := Combine([]Share{shares[a], shares[b]})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, secret) {
				t.Errorf("shares %d,%d (below the threshold) gave the secret", a+1, b+1)
			}
			n2++
			for c := b + 1; c < 5; c++ {
				// Order does not matter.
				got, err := Combine([]Share{shares[c], shares[a], shares[b]})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, secret) {
					t.Errorf("shares %d,%d,%d gave %q", a+1, b+1, c+1, got)
				}
				n3++
			}
		}
	}
	if n3 != 10 || n2 != 10 {
		t.Fatalf("tried %d 3-subsets and %d 2-subsets, want 10 and 10", n3, n2)
	}
}

// Below the threshold the shares say nothing about the secret: for k=2 one
// share's byte is uniformly distributed whatever the secret byte, so for
// each secret byte every possible share value occurs exactly once over the
// 256 coefficients.
func TestOneShareRevealsNothing(t *testing.T) {
	for _, sb := range []byte{0x00, 0x41, 0xff} {
		seen := [256]int{}
		for c := 0; c < 256; c++ {
			sh := splitWith([]byte{sb}, 3, 2, []byte{byte(c)})
			seen[sh[1].Y[0]]++ // the share at x=2
		}
		for v, n := range seen {
			if n != 1 {
				t.Fatalf("secret %02x: share value %02x occurs %d times", sb, v, n)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	secret := []byte("k")
	// Positive control: valid parameters work.
	if _, err := Split(secret, 5, 3, rand.Reader); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ n, k int }{{5, 1}, {2, 3}, {256, 3}, {0, 0}} {
		if _, err := Split(secret, c.n, c.k, rand.Reader); err == nil {
			t.Errorf("Split n=%d k=%d accepted", c.n, c.k)
		}
	}
	if _, err := Split(nil, 5, 3, rand.Reader); err == nil {
		t.Error("empty secret accepted")
	}
	sh, _ := Split([]byte("ab"), 3, 2, rand.Reader)
	if got, err := Combine(sh[:2]); err != nil || string(got) != "ab" {
		t.Fatalf("positive control: %q %v", got, err)
	}
	if _, err := Combine(sh[:1]); !errors.Is(err, ErrTooFewShares) {
		t.Errorf("one share: %v", err)
	}
	if _, err := Combine([]Share{sh[0], sh[0]}); !errors.Is(err, ErrBadShares) {
		t.Errorf("duplicate share: %v", err)
	}
	if _, err := Combine([]Share{sh[0], {X: 0, Y: sh[1].Y}}); !errors.Is(err, ErrBadShares) {
		t.Errorf("index 0: %v", err)
	}
	if _, err := Combine([]Share{sh[0], {X: 2, Y: sh[1].Y[:1]}}); !errors.Is(err, ErrBadShares) {
		t.Errorf("short share: %v", err)
	}
}

// FuzzSplitCombine: for any secret and any 2 <= k <= n <= 12, any k of
// the n shares (a rotating window) rebuild the secret.
func FuzzSplitCombine(f *testing.F) {
	f.Add([]byte("holdfast shamir!"), uint8(5), uint8(3), uint8(0), []byte{1, 2, 3, 4})
	f.Add([]byte{0}, uint8(2), uint8(2), uint8(1), []byte{})
	f.Fuzz(func(t *testing.T, secret []byte, n, k, start uint8, seed []byte) {
		if len(secret) == 0 || len(secret) > 512 {
			return
		}
		nn, kk := int(n%11)+2, int(k%11)+2
		if kk > nn {
			kk = nn
		}
		coeffs := make([]byte, len(secret)*(kk-1))
		for i := range coeffs {
			if len(seed) > 0 {
				coeffs[i] = seed[i%len(seed)] ^ byte(i)
			}
		}
		shares := splitWith(secret, nn, kk, coeffs)
		pick := make([]Share, 0, kk)
		for i := range kk {
			pick = append(pick, shares[(int(start)+i)%nn])
		}
		got, err := Combine(pick)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, secret) {
			t.Fatalf("n=%d k=%d: combined %x, want %x", nn, kk, got, secret)
		}
	})
}
