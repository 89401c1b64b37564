package keyring

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// The file layout (docs/format-keyring.md, "File layout"):
//
//	header[63] || AES-256-GCM(payload)+tag[16] || SHA-256(header || ciphertext)[32]
const (
	magic         = "HFKEYRNG"
	formatV1      = 1
	kdfArgon2id   = 1
	saltLen       = 32
	nonceLen      = 12
	headerLen     = len(magic) + 1 + 1 + 4 + 4 + 1 + saltLen + nonceLen // 63
	tagLen        = 16
	sumLen        = sha256.Size
	minFileLen    = headerLen + tagLen + sumLen
	maxFileLen    = 1 << 20
	payloadV1     = 1
	maxRootKeys   = 16384
	entryFixedLen = 4 + 1 + 8 // version, state, created
)

// Offsets of header fields.
const (
	offVersion = len(magic)
	offKDF     = offVersion + 1
	offTime    = offKDF + 1
	offMemory  = offTime + 4
	offThreads = offMemory + 4
	offSalt    = offThreads + 1
	offNonce   = offSalt + saltLen
)

var (
	// ErrCorrupt: the file is not a well-formed keyring: bad magic, wrong
	// length, checksum mismatch, or (after decryption) a payload that is not
	// the one valid encoding. Nothing was derived for a checksum failure.
	ErrCorrupt = errors.New("keyring file is corrupt or truncated")
	// ErrUnsupported: the file names a format version, KDF or payload
	// version this build does not know.
	ErrUnsupported = errors.New("unsupported keyring file")
	// ErrWrongPassphrase: the file is intact (its checksum matches) but does
	// not open under the passphrase. A file altered by someone who also
	// recomputed the checksum fails the same way.
	ErrWrongPassphrase = errors.New("wrong passphrase, or the keyring was altered")
)

// header is the plaintext start of the file; its bytes are the AEAD's
// associated data.
type header struct {
	params Params
	salt   [saltLen]byte
	nonce  [nonceLen]byte
}

func (h header) bytes() []byte {
	b := make([]byte, 0, headerLen)
	b = append(b, magic...)
	b = append(b, formatV1, kdfArgon2id)
	b = binary.BigEndian.AppendUint32(b, h.params.Time)
	b = binary.BigEndian.AppendUint32(b, h.params.MemoryKiB)
	b = append(b, h.params.Threads)
	b = append(b, h.salt[:]...)
	b = append(b, h.nonce[:]...)
	return b
}

// parseFile checks a whole file's structure and checksum and returns its
// header and ciphertext. It does no cryptography beyond SHA-256, so it is
// cheap to run on anything.
func parseFile(b []byte) (header, []byte, error) {
	var h header
	n := min(len(b), len(magic))
	if !bytes.Equal(b[:n], []byte(magic[:n])) {
		return h, nil, fmt.Errorf("%w: not a holdfast keyring (bad magic)", ErrCorrupt)
	}
	if len(b) <= offVersion {
		return h, nil, fmt.Errorf("%w: %d bytes is shorter than a header", ErrCorrupt, len(b))
	}
	if v := b[offVersion]; v != formatV1 {
		return h, nil, fmt.Errorf("%w: format version %d (this build reads version %d)", ErrUnsupported, v, formatV1)
	}
	if len(b) < minFileLen {
		return h, nil, fmt.Errorf("%w: %d bytes is shorter than the minimum %d", ErrCorrupt, len(b), minFileLen)
	}
	if len(b) > maxFileLen {
		return h, nil, fmt.Errorf("%w: %d bytes is longer than the maximum %d", ErrCorrupt, len(b), maxFileLen)
	}
	body, sum := b[:len(b)-sumLen], b[len(b)-sumLen:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return h, nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if k := b[offKDF]; k != kdfArgon2id {
		return h, nil, fmt.Errorf("%w: key derivation function %d (this build knows %d, argon2id)", ErrUnsupported, k, kdfArgon2id)
	}
	h.params = Params{
		Time:      binary.BigEndian.Uint32(b[offTime:]),
		MemoryKiB: binary.BigEndian.Uint32(b[offMemory:]),
		Threads:   b[offThreads],
	}
	copy(h.salt[:], b[offSalt:])
	copy(h.nonce[:], b[offNonce:])
	return h, body[headerLen:], nil
}

// sealFile encrypts pt under kek and returns the whole file.
func sealFile(kek secret.Key, h header, pt []byte) ([]byte, error) {
	hb := h.bytes()
	out := make([]byte, 0, headerLen+len(pt)+tagLen+sumLen)
	out = append(out, hb...)
	err := kek.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		out = aead.Seal(out, h.nonce[:], pt, hb)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sealing keyring: %w", err)
	}
	sum := sha256.Sum256(out)
	return append(out, sum[:]...), nil
}

// openCiphertext decrypts ct (the part of a parsed file between header and
// checksum). The caller clears the plaintext when done.
func openCiphertext(kek secret.Key, h header, ct []byte) ([]byte, error) {
	var pt []byte
	err := kek.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		pt, err = aead.Open(nil, h.nonce[:], ct, h.bytes())
		if err != nil {
			return ErrWrongPassphrase
		}
		return nil
	})
	return pt, err
}

// State is the life-cycle state of a root key version.
type State uint8

const (
	// StateActive: the version wraps and unwraps.
	StateActive State = 1
	// StateDecryptOnly: the version only unwraps (it was rotated out).
	StateDecryptOnly State = 2
	// StateDestroyed: the material is gone; the number stays so that it is
	// never reused, and records under it fail with keys.ErrNotMyKey.
	StateDestroyed State = 3
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateDecryptOnly:
		return "decrypt-only"
	case StateDestroyed:
		return "destroyed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// RootKeyInfo describes one root key version without its material.
type RootKeyInfo struct {
	Version uint32
	Created time.Time
	State   State
}

// Freshness is the last catalog backup the keyring has seen. Because the
// keyring lives on premises, the provider cannot roll it back: a catalog
// backup older than this record is a rollback.
type Freshness struct {
	Sequence uint64   // catalog backup sequence number
	Hash     [32]byte // SHA-256 of that backup
	Time     time.Time
}

type rootKey struct {
	info RootKeyInfo
	key  secret.Key // zero (invalid) for destroyed versions
}

// payload is the decrypted content of a keyring file.
type payload struct {
	repo     keys.ID
	primary  uint32
	hasFresh bool
	fresh    Freshness
	roots    []rootKey // strictly increasing versions
}

func (p payload) clone() payload {
	p.roots = append([]rootKey(nil), p.roots...)
	return p
}

func (p payload) find(ver uint32) (rootKey, bool) {
	for _, r := range p.roots {
		if r.info.Version == ver {
			return r, true
		}
	}
	return rootKey{}, false
}

// wipe zeroes every root key the payload holds.
func (p payload) wipe() {
	for _, r := range p.roots {
		r.key.Wipe()
	}
}

// validate enforces every rule that makes the encoding the only valid one.
func (p payload) validate() error {
	if len(p.roots) == 0 {
		return fmt.Errorf("%w: no root key versions", ErrCorrupt)
	}
	if len(p.roots) > maxRootKeys {
		return fmt.Errorf("%w: %d root key versions, more than %d", ErrCorrupt, len(p.roots), maxRootKeys)
	}
	if p.hasFresh && !timeInRange(p.fresh.Time) {
		return fmt.Errorf("%w: freshness time %v is out of range", ErrCorrupt, p.fresh.Time)
	}
	var prev uint32
	primaryOK := false
	for _, r := range p.roots {
		v := r.info.Version
		if !timeInRange(r.info.Created) {
			return fmt.Errorf("%w: root key version %d has created time %v out of range", ErrCorrupt, v, r.info.Created)
		}
		if v <= prev {
			return fmt.Errorf("%w: root key version %d follows %d (versions must be strictly increasing from 1)", ErrCorrupt, v, prev)
		}
		prev = v
		switch r.info.State {
		case StateActive, StateDecryptOnly:
			if !r.key.Valid() {
				return fmt.Errorf("%w: root key version %d is %s but has no material", ErrCorrupt, v, r.info.State)
			}
		case StateDestroyed:
			if r.key.Valid() {
				return fmt.Errorf("%w: root key version %d is destroyed but has material", ErrCorrupt, v)
			}
		default:
			return fmt.Errorf("%w: root key version %d has unknown state %d", ErrCorrupt, v, uint8(r.info.State))
		}
		if v == p.primary {
			if r.info.State != StateActive {
				return fmt.Errorf("%w: primary version %d is %s, not active", ErrCorrupt, v, r.info.State)
			}
			primaryOK = true
		}
	}
	if !primaryOK {
		return fmt.Errorf("%w: primary version %d does not exist", ErrCorrupt, p.primary)
	}
	return nil
}

// marshalPayload returns the one valid encoding of p. The result holds key
// material: the caller clears it when done.
func marshalPayload(p payload) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return encodePayload(p, payloadV1)
}

// encodePayload encodes p without validating it (the test-vector generator
// uses it to build invalid payloads). Material is written for every valid
// key, whatever its state.
func encodePayload(p payload, version uint8) ([]byte, error) {
	n := 1 + 16 + 4 + 1 + 4 + len(p.roots)*(entryFixedLen+secret.KeySize)
	if p.hasFresh {
		n += 8 + 32 + 8
	}
	b := make([]byte, 0, n)
	b = append(b, version)
	b = append(b, p.repo[:]...)
	b = binary.BigEndian.AppendUint32(b, p.primary)
	if p.hasFresh {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, p.fresh.Sequence)
		b = append(b, p.fresh.Hash[:]...)
		b = appendTime(b, p.fresh.Time)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.roots)))
	for _, r := range p.roots {
		b = binary.BigEndian.AppendUint32(b, r.info.Version)
		b = append(b, byte(r.info.State))
		b = appendTime(b, r.info.Created)
		if !r.key.Valid() {
			continue
		}
		err := r.key.Use(func(kb []byte) error {
			b = append(b, kb...)
			return nil
		})
		if err != nil {
			clear(b)
			return nil, err
		}
	}
	return b, nil
}

// Times are u64 Unix nanoseconds, from 1970 to 2262 (the values below
// 2^63).
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

func timeInRange(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

func appendTime(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
}

// decoder reads big-endian fields; the first short read sets err.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: payload truncated", ErrCorrupt)
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) u8() uint8 {
	if s := d.next(1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if s := d.next(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if s := d.next(8); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}

func (d *decoder) time() time.Time {
	n := d.u64()
	if d.err == nil && n > math.MaxInt64 {
		d.err = fmt.Errorf("%w: time %d is out of range", ErrCorrupt, n)
	}
	return time.Unix(0, int64(n)).UTC()
}

// unmarshalPayload decodes the one valid encoding of a payload. It does not
// modify b; the caller clears it.
func unmarshalPayload(b []byte) (p payload, err error) {
	defer func() {
		if err != nil {
			p.wipe()
			p = payload{}
		}
	}()
	d := &decoder{b: b}
	if v := d.u8(); d.err == nil && v != payloadV1 {
		return p, fmt.Errorf("%w: payload version %d (this build reads version %d)", ErrUnsupported, v, payloadV1)
	}
	copy(p.repo[:], d.next(16))
	p.primary = d.u32()
	switch f := d.u8(); {
	case d.err != nil:
	case f == 1:
		p.hasFresh = true
		p.fresh.Sequence = d.u64()
		copy(p.fresh.Hash[:], d.next(32))
		p.fresh.Time = d.time()
	case f != 0:
		return p, fmt.Errorf("%w: freshness flag %d", ErrCorrupt, f)
	}
	count := d.u32()
	if d.err != nil {
		return p, d.err
	}
	if count == 0 || count > maxRootKeys || int(count) > len(d.b)/entryFixedLen {
		return p, fmt.Errorf("%w: %d root key versions", ErrCorrupt, count)
	}
	p.roots = make([]rootKey, 0, count)
	for range count {
		var r rootKey
		r.info.Version = d.u32()
		r.info.State = State(d.u8())
		r.info.Created = d.time()
		if d.err != nil {
			return p, d.err
		}
		switch r.info.State {
		case StateActive, StateDecryptOnly:
			m := d.next(secret.KeySize)
			if d.err != nil {
				return p, d.err
			}
			r.key, err = secret.FromBytes(bytes.Clone(m))
			if err != nil {
				return p, err
			}
		case StateDestroyed:
		default:
			return p, fmt.Errorf("%w: root key version %d has unknown state %d", ErrCorrupt, r.info.Version, uint8(r.info.State))
		}
		p.roots = append(p.roots, r)
	}
	if len(d.b) != 0 {
		return p, fmt.Errorf("%w: %d trailing bytes after the payload", ErrCorrupt, len(d.b))
	}
	return p, p.validate()
}
