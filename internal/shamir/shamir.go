// Package shamir splits a secret into n shares of which any k rebuild it
// and any k-1 reveal nothing about it: Shamir's secret sharing over
// GF(2^8), byte by byte, as in docs/keys.md ("Shamir's scheme").
//
// Why our own: the maintained Go implementations were not usable here —
// HashiCorp Vault's shamir package is BUSL-licensed since Vault 1.15, the
// standalone forks (corvus-ch/shamir) are not served by the module proxy,
// and OpenBao's copy comes inside a module whose requirements would move
// the project's other dependencies. The scheme is small: the field is
// GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1, multiplication is
// branch-free and table-free (no secret-dependent memory access), shares
// are the polynomial's values at x = 1..n, and the secret is its value at
// x = 0 by Lagrange interpolation. It is checked against the FIPS-197
// field vectors, against share vectors computed by an independent
// (table-based) implementation, and by the fuzz target FuzzSplitCombine.
//
// A share is (x, y): its index x in 1..255 and y, as long as the secret.
// Combine cannot tell a wrong share from a right one: callers check what
// it returns (the key backup carries a hash of its secret).
package shamir

import (
	"errors"
	"fmt"
	"io"
)

// MaxShares is the largest n: x runs over the non-zero field elements.
const MaxShares = 255

// Share is one share: its index X (1..255) and its values Y, one per byte
// of the secret.
type Share struct {
	X byte
	Y []byte
}

var (
	// ErrTooFewShares: Combine got fewer shares than it needs (at least
	// two); the caller knows the threshold and says how many more.
	ErrTooFewShares = errors.New("shamir: too few shares")
	// ErrBadShares: the shares do not fit together (duplicate or zero
	// index, different lengths).
	ErrBadShares = errors.New("shamir: shares do not fit together")
)

// Split returns n shares of secret, any k of which rebuild it. The
// polynomial coefficients come from rand (crypto/rand in production). It
// needs 2 <= k <= n <= 255 and a non-empty secret. The shares hold
// material: the caller clears their Y when done.
func Split(secret []byte, n, k int, rand io.Reader) ([]Share, error) {
	if k < 2 || k > n || n > MaxShares {
		return nil, fmt.Errorf("shamir: need 2 <= threshold <= shares <= %d, got threshold %d of %d", MaxShares, k, n)
	}
	if len(secret) == 0 {
		return nil, errors.New("shamir: empty secret")
	}
	// coeffs[i*(k-1)+j] is coefficient j+1 of the polynomial for byte i.
	coeffs := make([]byte, len(secret)*(k-1))
	defer clear(coeffs)
	if _, err := io.ReadFull(rand, coeffs); err != nil {
		return nil, fmt.Errorf("shamir: reading random coefficients: %w", err)
	}
	return splitWith(secret, n, k, coeffs), nil
}

// splitWith evaluates, for every byte i of secret, the polynomial
// secret[i] + c[0] x + ... + c[k-2] x^(k-1) with c = coeffs[i*(k-1):],
// at x = 1..n.
func splitWith(secret []byte, n, k int, coeffs []byte) []Share {
	out := make([]Share, n)
	for s := range out {
		x := byte(s + 1)
		y := make([]byte, len(secret))
		for i, b := range secret {
			c := coeffs[i*(k-1) : (i+1)*(k-1)]
			// Horner, from the highest coefficient down.
			var acc byte
			for j := len(c) - 1; j >= 0; j-- {
				acc = mul(acc, x) ^ c[j]
			}
			y[i] = mul(acc, x) ^ b
		}
		out[s] = Share{X: x, Y: y}
	}
	return out
}

// Combine rebuilds the secret from shares (at least the threshold of
// them; with fewer it returns a value unrelated to the secret, which it
// cannot detect). It refuses fewer than two shares, a zero or repeated
// index, and shares of different lengths. The caller clears the result.
func Combine(shares []Share) ([]byte, error) {
	if len(shares) < 2 {
		return nil, fmt.Errorf("%w: got %d, need at least 2", ErrTooFewShares, len(shares))
	}
	n := len(shares[0].Y)
	if n == 0 {
		return nil, fmt.Errorf("%w: empty share", ErrBadShares)
	}
	seen := map[byte]bool{}
	for _, s := range shares {
		switch {
		case s.X == 0:
			return nil, fmt.Errorf("%w: share index 0", ErrBadShares)
		case seen[s.X]:
			return nil, fmt.Errorf("%w: share index %d given twice", ErrBadShares, s.X)
		case len(s.Y) != n:
			return nil, fmt.Errorf("%w: share %d has %d bytes, share %d has %d", ErrBadShares, s.X, len(s.Y), shares[0].X, n)
		}
		seen[s.X] = true
	}
	// Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i), and
	// subtraction is XOR in GF(2^8).
	basis := make([]byte, len(shares))
	for i, si := range shares {
		num, den := byte(1), byte(1)
		for j, sj := range shares {
			if i != j {
				num = mul(num, sj.X)
				den = mul(den, sj.X^si.X)
			}
		}
		basis[i] = mul(num, inv(den))
	}
	out := make([]byte, n)
	for i, s := range shares {
		for b := range out {
			out[b] ^= mul(s.Y[b], basis[i])
		}
	}
	return out, nil
}

// mul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1 without branches or
// tables on its operands.
func mul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		hi := -(a >> 7)
		a = a<<1 ^ hi&0x1b
		b >>= 1
	}
	return p
}

// inv returns a^254, the inverse of a non-zero a (and 0 for 0), by a fixed
// sequence of multiplications: 254 = 2+4+8+16+32+64+128.
func inv(a byte) byte {
	r, s := byte(1), a
	for range 7 {
		s = mul(s, s)
		r = mul(r, s)
	}
	return r
}
