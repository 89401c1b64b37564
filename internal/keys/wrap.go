package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast/internal/secret"
)

// Alg names a key-wrap construction (docs/format.md, "Key wrap").
type Alg uint8

const (
	// AlgHKDFGCMCommit is the software wrap: a fresh HKDF-SHA256 subkey per
	// wrap from a random 32-byte salt, AES-256-GCM under a zero nonce (the
	// subkey is used once), and a 32-byte key commitment.
	// Layout: salt[32] || commit[32] || ciphertext+tag[48] (112 bytes).
	AlgHKDFGCMCommit Alg = 1
	// AlgGCM is the wrap for keys held where only AES-GCM is offered (an
	// HSM, a key server): a random 12-byte nonce and AES-256-GCM directly
	// under the root key. Layout: nonce[12] || ciphertext+tag[48] (60
	// bytes). It is not key-committing by itself; records that use it carry
	// a key check value of the wrapped key (KeyCheck).
	AlgGCM Alg = 2
)

// Wrapped sizes per algorithm.
const (
	WrappedLenHKDFGCMCommit = 32 + 32 + secret.KeySize + 16
	WrappedLenGCM           = 12 + secret.KeySize + 16
	// MaxWrappedLen is the size of the fixed key slot in an object header.
	MaxWrappedLen = WrappedLenHKDFGCMCommit
)

// WrappedLen returns the wrapped length for alg, or 0 for an unknown alg.
func WrappedLen(a Alg) int {
	switch a {
	case AlgHKDFGCMCommit:
		return WrappedLenHKDFGCMCommit
	case AlgGCM:
		return WrappedLenGCM
	}
	return 0
}

// Wrapped is a key record's wrapped key: the key sealed under key version
// KEKVersion of a source of kind Source, with algorithm Alg.
type Wrapped struct {
	Source     SourceKind
	Alg        Alg
	KEKVersion uint32
	Data       []byte
}

// Purpose says what a wrapped key is for; it is bound into the associated
// data so that a record cannot be replayed in another role.
type Purpose uint8

const (
	PurposeDataKey   Purpose = 1 // an object's data key under a bucket key
	PurposeBucketKey Purpose = 2 // a bucket key under a root key
	PurposeSystemKey Purpose = 3 // a system object's data key under a root key
	// PurposeAccessTable: the key that seals the S3 gateway's access-key
	// secrets (internal/access), under a root key. Its AD names the
	// repository, the root key version and the table key's version
	// (KeyVersion); bucket and object ids are zero.
	PurposeAccessTable Purpose = 4
	// PurposeStateKey: the key that seals the PKCS#11 source's state file
	// (internal/hsm: root key version records and the freshness record),
	// under a root key held in the token. Its AD names the repository and
	// the root key version; bucket and object ids are zero.
	PurposeStateKey Purpose = 5
)

// ID is a random 128-bit identifier (repository, bucket, object).
type ID [16]byte

// AD is the associated data of every wrap: it names the wrap's place in the
// hierarchy.
type AD struct {
	Purpose    Purpose
	Repo       ID
	Bucket     ID     // zero for system objects
	KEKVersion uint32 // version of the wrapping key
	KeyVersion uint32 // version of the wrapped key (bucket keys); 0 otherwise
	Object     ID     // the object id (data and system keys); zero for bucket keys
}

const adLabel = "holdfast/v1/wrap-ad"

// ADLen is the length of the encoded associated data.
const ADLen = len(adLabel) + 1 + 16 + 16 + 4 + 4 + 16

// Bytes encodes the associated data (docs/format.md, "Wrap associated data").
func (a AD) Bytes() []byte {
	b := make([]byte, 0, ADLen)
	b = append(b, adLabel...)
	b = append(b, byte(a.Purpose))
	b = append(b, a.Repo[:]...)
	b = append(b, a.Bucket[:]...)
	b = binary.BigEndian.AppendUint32(b, a.KEKVersion)
	b = binary.BigEndian.AppendUint32(b, a.KeyVersion)
	b = append(b, a.Object[:]...)
	return b
}

const (
	wrapInfo     = "holdfast/v1/wrap"
	keyCheckInfo = "holdfast/v1/key-check"
)

// errOpen is the single error every failed software unwrap returns.
var errOpen = fmt.Errorf("software unwrap: %w", ErrNotMyKey)

// WrapSoftware seals k under kek with AlgHKDFGCMCommit. rand supplies the
// salt (crypto/rand in production; a deterministic stream for test vectors).
func WrapSoftware(kek secret.Key, ad AD, k secret.Key, rand io.Reader) ([]byte, error) {
	out := make([]byte, WrappedLenHKDFGCMCommit)
	salt := out[:32]
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, fmt.Errorf("reading wrap salt: %w", err)
	}
	aead, commit, err := wrapSubkey(kek, salt)
	if err != nil {
		return nil, err
	}
	copy(out[32:64], commit)
	err = k.Use(func(kb []byte) error {
		aead.Seal(out[64:64], make([]byte, 12), kb, ad.Bytes())
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UnwrapSoftware opens a AlgHKDFGCMCommit record. A record that was sealed
// under another key fails at the commitment (ErrNotMyKey); one whose bytes
// or associated data differ fails at the AEAD (also ErrNotMyKey).
func UnwrapSoftware(kek secret.Key, ad AD, data []byte) (secret.Key, error) {
	if len(data) != WrappedLenHKDFGCMCommit {
		return secret.Key{}, errOpen
	}
	aead, commit, err := wrapSubkey(kek, data[:32])
	if err != nil {
		return secret.Key{}, err
	}
	if subtle.ConstantTimeCompare(commit, data[32:64]) != 1 {
		return secret.Key{}, errOpen
	}
	pt, err := aead.Open(nil, make([]byte, 12), data[64:], ad.Bytes())
	if err != nil {
		return secret.Key{}, errOpen
	}
	return secret.FromBytes(pt)
}

func wrapSubkey(kek secret.Key, salt []byte) (cipher.AEAD, []byte, error) {
	var aead cipher.AEAD
	var commit []byte
	err := kek.Use(func(kb []byte) error {
		okm, err := hkdf.Key(sha256.New, kb, salt, wrapInfo, 64)
		if err != nil {
			return err
		}
		defer clear(okm)
		aead, err = NewGCM(okm[:32])
		commit = append([]byte(nil), okm[32:]...)
		return err
	})
	return aead, commit, err
}

// NewGCM returns AES-256-GCM for a 32-byte key.
func NewGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("AES-256-GCM needs a 32-byte key")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// KeyCheck returns a 32-byte value that commits to k without revealing it:
// HKDF-SHA256(ikm=k, salt="", info="holdfast/v1/key-check"). Records
// wrapped with AlgGCM carry it so that an unwrap is checked against it.
func KeyCheck(k secret.Key) ([]byte, error) {
	var out []byte
	err := k.Use(func(kb []byte) error {
		var err error
		out, err = hkdf.Key(sha256.New, kb, nil, keyCheckInfo, 32)
		return err
	})
	return out, err
}
