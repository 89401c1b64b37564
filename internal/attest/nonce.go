package attest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// Nonce parameters (docs/keyserver.md, "Posture and attestation").
const (
	NonceSize = 32
	// NonceTTL is how long an issued nonce may be used.
	NonceTTL = 60 * time.Second
	// maxNonces bounds the outstanding nonces over all clients;
	// maxNoncesPerOwner per client (its oldest is dropped beyond it).
	maxNonces         = 4096
	maxNoncesPerOwner = 16
)

// ErrTooManyNonces: the table of outstanding nonces is full; the client
// tries again later.
var ErrTooManyNonces = errors.New("too many outstanding attestation nonces")

// Nonces is the server's table of issued, unused nonces: each is bound to
// the client it was issued to, expires after NonceTTL, and is consumed by
// its first use, valid or not. Safe for concurrent use.
type Nonces struct {
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	mu sync.Mutex
	m  map[string]issued // hex nonce →
}

type issued struct {
	owner   string
	expires time.Time
}

func (n *Nonces) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// Issue makes a nonce for owner (the client's certificate serial).
func (n *Nonces) Issue(owner string) ([]byte, time.Time, error) {
	b := make([]byte, NonceSize)
	if _, err := rand.Read(b); err != nil {
		return nil, time.Time{}, err
	}
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]issued{}
	}
	var oldest string
	var mine int
	for k, v := range n.m {
		if !now.Before(v.expires) {
			delete(n.m, k)
			continue
		}
		if v.owner == owner {
			mine++
			if oldest == "" || v.expires.Before(n.m[oldest].expires) {
				oldest = k
			}
		}
	}
	if mine >= maxNoncesPerOwner {
		delete(n.m, oldest)
	}
	if len(n.m) >= maxNonces {
		return nil, time.Time{}, ErrTooManyNonces
	}
	exp := now.Add(NonceTTL)
	n.m[hex.EncodeToString(b)] = issued{owner: owner, expires: exp}
	return b, exp, nil
}

// Consume checks that nonce was issued to owner, has not expired and was
// not used, and removes it: a nonce is good for one request only.
func (n *Nonces) Consume(nonce []byte, owner string) *Error {
	if len(nonce) != NonceSize {
		return fail(FailReplayed, nil, "the evidence carries no nonce of %d bytes from this key server", NonceSize)
	}
	k := hex.EncodeToString(nonce)
	n.mu.Lock()
	v, ok := n.m[k]
	delete(n.m, k)
	n.mu.Unlock()
	switch {
	case !ok:
		return fail(FailReplayed, nil, "the nonce is unknown or was already used (replayed evidence)")
	case subtle.ConstantTimeCompare([]byte(v.owner), []byte(owner)) != 1:
		return fail(FailReplayed, nil, "the nonce was issued to another client")
	case !n.now().Before(v.expires):
		return fail(FailReplayed, nil, "the nonce expired (it is good for %s)", NonceTTL)
	}
	return nil
}
