package access

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// Access key ids and secrets.
const (
	// IDLen is the length of an access key id: IDPrefix and 18 random
	// characters from A-Z and 0-9 (93 bits), like AWS's 20-character ids.
	IDLen = 20
	// IDPrefix starts every id Holdfast makes, so that an id is told from
	// an AWS one (AKIA…, ASIA…) at a glance and by secret scanners.
	IDPrefix = "HF"
	// SecretLen is the length of a secret: characters from A-Z, a-z and
	// 0-9 (238 bits), from crypto/rand.
	SecretLen = 40
)

const (
	idAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// randomText returns n characters drawn uniformly from alphabet (by
// rejection of the bytes that would bias the draw).
func randomText(n int, alphabet string) ([]byte, error) {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	clear(buf)
	return out, nil
}

func newID() (string, error) {
	b, err := randomText(IDLen-len(IDPrefix), idAlphabet)
	return IDPrefix + string(b), err
}

// ValidID reports whether id has the shape of an access key id: IDLen
// characters from A-Z and 0-9.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// record is an access key as the catalog keeps it (JSON). Sealed is
// nonce[12] || AES-256-GCM(table key, secret) with secretAD as associated
// data.
type record struct {
	Format  int           `json:"format"`
	Name    string        `json:"name"`
	Created int64         `json:"created"` // unix nanoseconds
	Admin   bool          `json:"admin,omitempty"`
	Grants  []recordGrant `json:"grants,omitempty"`
	Sealed  []byte        `json:"sealed"`
}

type recordGrant struct {
	Bucket string `json:"bucket"`
	Perms  uint8  `json:"perms"`
}

const recordFormat = 1

const secretADLabel = "holdfast/v1/access-secret"

// secretAD binds a sealed secret to its repository, its id and everything
// the record says the key may do: a record moved to another id, or whose
// permissions, name or time were edited, does not open.
func secretAD(repo keys.ID, id string, r *record) []byte {
	b := make([]byte, 0, 128)
	b = append(b, secretADLabel...)
	b = append(b, repo[:]...)
	b = appendString(b, id)
	b = appendString(b, r.Name)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created))
	if r.Admin {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Grants)))
	for _, g := range r.Grants {
		b = appendString(b, g.Bucket)
		b = append(b, g.Perms)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// errOpen is what every failed opening of a record returns: from outside,
// a tampered record, a wrong table key and a wrong repository look alike.
var errOpen = errors.New("access key record does not authenticate")

func seal(k secret.Key, ad, plain []byte) ([]byte, error) {
	var out []byte
	err := k.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		out = make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(out); err != nil {
			return err
		}
		out = aead.Seal(out, out, plain, ad)
		return nil
	})
	return out, err
}

// open returns the secret sealed in sealed; the caller clears it.
func open(k secret.Key, ad, sealed []byte) ([]byte, error) {
	var out []byte
	err := k.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		if len(sealed) != aead.NonceSize()+SecretLen+aead.Overhead() {
			return errOpen
		}
		n := aead.NonceSize()
		out, err = aead.Open(nil, sealed[:n], sealed[n:], ad)
		if err != nil {
			return errOpen
		}
		return nil
	})
	return out, err
}

// decodeRecord parses and checks a record's plaintext fields; the secret
// is checked by open.
func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", errOpen, err)
	}
	if r.Format != recordFormat {
		return nil, fmt.Errorf("%w: record format %d (this program knows %d)", errOpen, r.Format, recordFormat)
	}
	if err := validateName(r.Name); err != nil {
		return nil, fmt.Errorf("%w: %v", errOpen, err)
	}
	for i, g := range r.Grants {
		if err := (Grant{Bucket: g.Bucket, Perms: Perm(g.Perms)}).validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", errOpen, err)
		}
		if i > 0 && r.Grants[i-1].Bucket >= g.Bucket {
			return nil, fmt.Errorf("%w: grants out of order", errOpen)
		}
	}
	if !r.Admin && len(r.Grants) == 0 {
		return nil, fmt.Errorf("%w: no permissions", errOpen)
	}
	return &r, nil
}

func (r *record) key(id string) Key {
	k := Key{ID: id, Name: r.Name, Created: time.Unix(0, r.Created), Admin: r.Admin, Grants: make([]Grant, len(r.Grants))}
	for i, g := range r.Grants {
		k.Grants[i] = Grant{Bucket: g.Bucket, Perms: Perm(g.Perms)}
	}
	return k
}

// tableKeyRecord is the table key wrapped by the key source (JSON). The
// wrap's AD is tableKeyAD; KeyCheck (keys.KeyCheck of the table key) is
// compared after every unwrap, as for bucket keys, because a source's wrap
// need not commit to the key.
type tableKeyRecord struct {
	Format     int    `json:"format"`
	Source     uint8  `json:"source"`
	Alg        uint8  `json:"alg"`
	KEKVersion uint32 `json:"kek_version"`
	KeyVersion uint32 `json:"key_version"`
	Wrapped    []byte `json:"wrapped"`
	KeyCheck   []byte `json:"key_check"`
}

// tableKeyVersion is the version of the one table key there is so far.
const tableKeyVersion = 1

func tableKeyAD(repo keys.ID, kekVersion, keyVersion uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeAccessTable, Repo: repo, KEKVersion: kekVersion, KeyVersion: keyVersion}
}

func (r tableKeyRecord) wrapped() keys.Wrapped {
	return keys.Wrapped{Source: keys.SourceKind(r.Source), Alg: keys.Alg(r.Alg), KEKVersion: r.KEKVersion, Data: r.Wrapped}
}
