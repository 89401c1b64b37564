package spread

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// The shard layout (docs/format.md, "Spread store shards").
//
// An object of L bytes is cut into stripes of K×C bytes (the last one may
// be shorter). Stripe i of Li bytes is split into K data shards of
// ceil(Li/K) bytes (the last zero-padded) and M parity shards of the same
// size (Reed-Solomon). Member j stores, for every stripe in order, its
// shard followed by a 32-byte tag; in replica mode (system objects) it
// stores the whole stripe instead of a shard. A name too long to encrypt
// into the member name adds a 144-byte name block at the end.
const (
	// TagSize is the length of a stripe tag (HMAC-SHA256).
	TagSize = 32
	// DefaultChunk is the default shard chunk C: one stripe carries K×C
	// bytes of the object.
	DefaultChunk = 64 << 10
	// MaxChunk bounds C (a stripe is held in memory K+M times over).
	MaxChunk = 4 << 20
	// maxDirectName is the longest object name encrypted into the member
	// name; longer ones are hashed and carried in a name block.
	maxDirectName = 46
	// nameBlockLen is the name block: a 16-byte synthetic IV and the name
	// padded to 128 bytes, encrypted.
	nameBlockLen = sivLen + 128
	sivLen       = 16
	// hashedSuffix ends the member name of an object whose name is in a
	// name block.
	hashedSuffix = "-h"
)

// Modes of a member object.
const (
	modeErasure byte = 0 // one Reed-Solomon shard of each stripe
	modeReplica byte = 1 // the whole of each stripe
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// keySet holds the subkeys derived from the store's key.
type keySet struct {
	nameIV  secret.Key // HMAC key of the names' synthetic IVs
	nameEnc secret.Key // AES-256 key of the names
	shard   secret.Key // HMAC key of the stripe tags
}

func deriveKeys(k secret.Key) (keySet, error) {
	var ks keySet
	err := k.Use(func(kb []byte) error {
		for _, d := range []struct {
			info string
			dst  *secret.Key
		}{
			{"holdfast/v1/spread/name-iv", &ks.nameIV},
			{"holdfast/v1/spread/name-enc", &ks.nameEnc},
			{"holdfast/v1/spread/shard-mac", &ks.shard},
		} {
			okm, err := hkdf.Key(sha256.New, kb, nil, d.info, secret.KeySize)
			if err != nil {
				return err
			}
			*d.dst, err = secret.FromBytes(okm)
			clear(okm)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return ks, err
}

func (ks keySet) wipe() {
	ks.nameIV.Wipe()
	ks.nameEnc.Wipe()
	ks.shard.Wipe()
}

// geometry is the stripe arithmetic of one object.
type geometry struct {
	k     int   // data shards
	chunk int64 // C
	size  int64 // L, the object length
	mode  byte
}

// stripeData is K×C: the object bytes one full stripe carries.
func (g geometry) stripeData() int64 { return int64(g.k) * g.chunk }

// stripes is the number of stripes (0 for an empty object).
func (g geometry) stripes() int64 {
	return (g.size + g.stripeData() - 1) / g.stripeData()
}

// dataLen is the number of object bytes stripe i carries.
func (g geometry) dataLen(i int64) int64 {
	return min(g.stripeData(), g.size-i*g.stripeData())
}

// shardLen is the length of one member's shard of stripe i.
func (g geometry) shardLen(i int64) int64 {
	if g.mode == modeReplica {
		return g.dataLen(i)
	}
	return (g.dataLen(i) + int64(g.k) - 1) / int64(g.k)
}

// fullShard is the shard length of a full stripe.
func (g geometry) fullShard() int64 {
	if g.mode == modeReplica {
		return g.stripeData()
	}
	return g.chunk
}

// offset is where stripe i begins in a member object.
func (g geometry) offset(i int64) int64 { return i * (g.fullShard() + TagSize) }

// memberSize is the length of a member object (without a name block).
func (g geometry) memberSize() int64 {
	n := g.stripes()
	if n == 0 {
		return 0
	}
	return g.offset(n-1) + g.shardLen(n-1) + TagSize
}

// tagger computes stripe tags. Its fields are what every tag of one
// member object binds besides the stripe index and the shard bytes.
type tagger struct {
	mac    hash.Hash
	prefix []byte
}

// newTagger returns the tagger of member j's object of name, generation
// gen. The caller must not share it between goroutines.
func (ks keySet) newTagger(g geometry, m, j int, name string, gen uint64) (*tagger, error) {
	var mac hash.Hash
	if err := ks.shard.Use(func(kb []byte) error {
		mac = hmac.New(sha256.New, kb)
		return nil
	}); err != nil {
		return nil, err
	}
	p := []byte("holdfast/v1/spread/shard\x00")
	p = append(p, g.mode, byte(g.k), byte(m), byte(j))
	p = binary.BigEndian.AppendUint32(p, uint32(g.chunk))
	p = binary.BigEndian.AppendUint16(p, uint16(len(name)))
	p = append(p, name...)
	p = binary.BigEndian.AppendUint64(p, uint64(g.size))
	p = binary.BigEndian.AppendUint64(p, gen)
	return &tagger{mac: mac, prefix: p}, nil
}

// tag returns the tag of stripe i holding shard, appended to dst.
func (t *tagger) tag(dst []byte, i int64, shard []byte) []byte {
	t.mac.Reset()
	t.mac.Write(t.prefix)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	t.mac.Write(b[:])
	t.mac.Write(shard)
	return t.mac.Sum(dst)
}

// check reports whether tag is the tag of stripe i holding shard.
func (t *tagger) check(i int64, shard, tag []byte) bool {
	var buf [TagSize]byte
	return subtle.ConstantTimeCompare(t.tag(buf[:0], i, shard), tag) == 1
}

// memberName is how member j names its part of one generation of an
// object: TOKEN-SIZE-GEN, with SIZE and GEN in base 36, and "-h" appended
// when the object's name is in a name block. The parts of an object under
// construction (PartUploader) are internal objects, named
// TOKEN-LABEL-SIZE-GEN-u, where TOKEN encrypts the construction's handle
// and LABEL says which object of the construction it is.
type memberName struct {
	token    string // the object name, encrypted (or hashed) for member j
	label    string // internal objects only
	size     int64
	gen      uint64
	hashed   bool
	internal bool
}

func (n memberName) String() string {
	s := n.token
	if n.internal {
		s += "-" + n.label
	}
	s += "-" + strconv.FormatInt(n.size, 36) + "-" + strconv.FormatUint(n.gen, 36)
	switch {
	case n.internal:
		s += internalSuffix
	case n.hashed:
		s += hashedSuffix
	}
	return s
}

// internalSuffix ends the member name of an internal object.
const internalSuffix = "-u"

// parseMemberName splits a member's object name; ok is false for names
// that are not of the form.
func parseMemberName(s string) (n memberName, ok bool) {
	want := 3
	if rest, cut := strings.CutSuffix(s, hashedSuffix); cut {
		s, n.hashed = rest, true
	} else if rest, cut := strings.CutSuffix(s, internalSuffix); cut {
		s, n.internal, want = rest, true, 4
	}
	parts := strings.Split(s, "-")
	if len(parts) != want || parts[0] == "" {
		return memberName{}, false
	}
	if n.internal {
		n.label = parts[1]
		if !validLabel(n.label) {
			return memberName{}, false
		}
		parts = append(parts[:1], parts[2:]...)
	}
	size, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 36) != parts[1] {
		return memberName{}, false
	}
	gen, err := strconv.ParseUint(parts[2], 36, 64)
	if err != nil || strconv.FormatUint(gen, 36) != parts[2] {
		return memberName{}, false
	}
	n.token, n.size, n.gen = parts[0], size, gen
	return n, true
}

// validLabel: 1 to 16 characters of [a-z0-9.].
func validLabel(l string) bool {
	if l == "" || len(l) > 16 {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.') {
			return false
		}
	}
	return true
}

// ref names an object of the spread store: a public one by its name, or
// an internal one (a construction's record or part) by the
// construction's handle and its label.
type ref struct {
	name   string // the name tags bind: the object's, or "u-HANDLE/LABEL"
	handle string // internal objects: the construction's handle
	label  string // internal objects: "c" (the record) or "N.RANDOM" (a part)
}

func publicRef(name string) ref { return ref{name: name} }

func internalRef(handle, label string) ref {
	return ref{name: "u-" + handle + "/" + label, handle: handle, label: label}
}

func (r ref) internal() bool { return r.handle != "" }

// tokenFor returns member j's token of r: internal objects share the
// token of their construction, so one listing finds them all.
func (ks keySet) tokenFor(j int, r ref) (string, bool, error) {
	if r.internal() {
		tok, _, err := ks.token(j, "u-"+r.handle)
		return tok, false, err
	}
	return ks.token(j, r.name)
}

// siv is the synthetic IV of name for member j: the first 16 bytes of
// HMAC-SHA256 under the name-IV key. It is deterministic, so a member
// name can be computed from the object name, and it authenticates the
// encrypted name when it is decrypted (SIV, RFC 5297, with HMAC-SHA256 as
// the PRF).
func (ks keySet) siv(j int, what string, plain []byte) ([]byte, error) {
	var out []byte
	err := ks.nameIV.Use(func(kb []byte) error {
		mac := hmac.New(sha256.New, kb)
		mac.Write([]byte("holdfast/v1/spread/" + what + "\x00"))
		mac.Write([]byte{byte(j)})
		mac.Write(plain)
		out = mac.Sum(nil)[:sivLen]
		return nil
	})
	return out, err
}

// ctr encrypts (or decrypts) b in place with AES-256-CTR under the
// name-encryption key and the synthetic IV.
func (ks keySet) ctr(iv, b []byte) error {
	return ks.nameEnc.Use(func(kb []byte) error {
		blk, err := aes.NewCipher(kb)
		if err != nil {
			return err
		}
		cipher.NewCTR(blk, iv).XORKeyStream(b, b)
		return nil
	})
}

// token returns member j's token for name and whether the name is hashed
// (too long to encrypt into the token, and carried in a name block).
func (ks keySet) token(j int, name string) (string, bool, error) {
	if len(name) > maxDirectName {
		iv, err := ks.siv(j, "name-hash", []byte(name))
		if err != nil {
			return "", false, err
		}
		return b32.EncodeToString(iv), true, nil
	}
	iv, err := ks.siv(j, "name", []byte(name))
	if err != nil {
		return "", false, err
	}
	b := append(append([]byte(nil), iv...), name...)
	if err := ks.ctr(iv, b[sivLen:]); err != nil {
		return "", false, err
	}
	return b32.EncodeToString(b), false, nil
}

var errForeign = errors.New("not a shard of this repository")

// nameOfToken decrypts a direct token of member j and checks it.
func (ks keySet) nameOfToken(j int, token string) (string, error) {
	b, err := b32.DecodeString(token)
	if err != nil || len(b) < sivLen+1 || len(b) > sivLen+maxDirectName {
		return "", errForeign
	}
	if err := ks.ctr(b[:sivLen], b[sivLen:]); err != nil {
		return "", err
	}
	name := string(b[sivLen:])
	iv, err := ks.siv(j, "name", b[sivLen:])
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare(iv, b[:sivLen]) != 1 || !store.ValidName(name) {
		return "", errForeign
	}
	return name, nil
}

// nameBlock is the block that carries a long name in member j's object.
func (ks keySet) nameBlock(j int, name string) ([]byte, error) {
	if len(name) > nameBlockLen-sivLen {
		return nil, fmt.Errorf("name of %d bytes does not fit a name block", len(name))
	}
	padded := make([]byte, nameBlockLen-sivLen)
	copy(padded, name)
	iv, err := ks.siv(j, "name-block", padded)
	if err != nil {
		return nil, err
	}
	if err := ks.ctr(iv, padded); err != nil {
		return nil, err
	}
	return append(iv, padded...), nil
}

// nameOfBlock decrypts and checks member j's name block.
func (ks keySet) nameOfBlock(j int, blk []byte) (string, error) {
	if len(blk) != nameBlockLen {
		return "", errForeign
	}
	b := append([]byte(nil), blk...)
	if err := ks.ctr(b[:sivLen], b[sivLen:]); err != nil {
		return "", err
	}
	iv, err := ks.siv(j, "name-block", b[sivLen:])
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare(iv, b[:sivLen]) != 1 {
		return "", errForeign
	}
	name := strings.TrimRight(string(b[sivLen:]), "\x00")
	if !store.ValidName(name) || len(name) <= maxDirectName {
		return "", errForeign
	}
	return name, nil
}
