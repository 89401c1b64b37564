// Package keyshare is the k-of-n backup of a repository's root keys
// (docs/keys.md, "Share format"): the root key material, with its version
// records and the freshness record, is encoded (the backup payload), split
// with Shamir's scheme (internal/shamir), and each share is written as a
// printable text file with a checksum that names it when it is damaged.
// Any threshold of the shares of one set rebuild the material; fewer
// reveal nothing about it.
//
// Shares are secrets: this package never logs or prints them and puts
// their bytes nowhere but into the text it returns. Callers write that text
// only to the files the operator asked for and clear it afterwards.
package keyshare

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/shamir"
)

var (
	// ErrTooFewShares: fewer distinct shares of the set than its threshold.
	ErrTooFewShares = errors.New("not enough shares")
	// ErrMixedShares: the shares belong to different sets (or different
	// repositories); shares of two sets never combine.
	ErrMixedShares = errors.New("shares of different backups")
	// ErrCorruptShare: a share file does not parse or its checksum does not
	// match its content. The error names the file and its checksum.
	ErrCorruptShare = errors.New("corrupt share")
	// ErrBadCombination: the shares parse and belong to one set, but what
	// they combine to is not the backup (a share was altered together with
	// its checksum, or made by something else).
	ErrBadCombination = errors.New("the shares do not combine to a valid key backup")
)

// Payload encoding (docs/keys.md, "Backup payload").
const (
	payloadMagic   = "HFKS"
	payloadVersion = 1
	maxPayload     = 64 << 10
)

// EncodePayload returns the backup payload of m for a source of kind src.
// It holds key material: the caller clears it.
func EncodePayload(src keys.SourceKind, m keyring.Material) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 128+len(m.Roots)*(4+1+8+secret.KeySize))
	b = append(b, payloadMagic...)
	b = append(b, payloadVersion, byte(src))
	b = append(b, m.Repo[:]...)
	b = binary.BigEndian.AppendUint32(b, m.Primary)
	if m.HasFresh {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, m.Fresh.Sequence)
		b = append(b, m.Fresh.Hash[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(m.Fresh.Time.UnixNano()))
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Roots)))
	for _, r := range m.Roots {
		b = binary.BigEndian.AppendUint32(b, r.Info.Version)
		b = append(b, byte(r.Info.State))
		b = binary.BigEndian.AppendUint64(b, uint64(r.Info.Created.UnixNano()))
		if r.Info.State == keyring.StateDestroyed {
			continue
		}
		err := r.Key.Use(func(kb []byte) error {
			b = append(b, kb...)
			return nil
		})
		if err != nil {
			clear(b)
			return nil, err
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// DecodePayload reads a backup payload; the trailing SHA-256 must match.
// It does not modify b. The caller wipes the returned material.
func DecodePayload(b []byte) (src keys.SourceKind, m keyring.Material, err error) {
	defer func() {
		if err != nil {
			m.Wipe()
			m = keyring.Material{}
		}
	}()
	if len(b) < len(payloadMagic)+2+sha256.Size || len(b) > maxPayload {
		return 0, m, ErrBadCombination
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	want := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(sum, want[:]) != 1 || string(body[:4]) != payloadMagic {
		return 0, m, ErrBadCombination
	}
	d := &reader{b: body[4:]}
	if v := d.u8(); v != payloadVersion {
		return 0, m, fmt.Errorf("key backup payload version %d (this build reads %d)", v, payloadVersion)
	}
	src = keys.SourceKind(d.u8())
	copy(m.Repo[:], d.next(16))
	m.Primary = d.u32()
	switch d.u8() {
	case 0:
	case 1:
		m.HasFresh = true
		m.Fresh.Sequence = d.u64()
		copy(m.Fresh.Hash[:], d.next(32))
		m.Fresh.Time = d.time()
	default:
		return 0, m, fmt.Errorf("%w: bad freshness flag", ErrBadCombination)
	}
	n := d.u32()
	if d.bad || n == 0 || int(n) > len(d.b)/13 {
		return 0, m, fmt.Errorf("%w: bad version count", ErrBadCombination)
	}
	for range n {
		var r keyring.RootMaterial
		r.Info.Version = d.u32()
		r.Info.State = keyring.State(d.u8())
		r.Info.Created = d.time()
		if r.Info.State != keyring.StateDestroyed {
			kb := d.next(secret.KeySize)
			if d.bad {
				break
			}
			if r.Key, err = secret.FromBytes(bytes.Clone(kb)); err != nil {
				return 0, m, err
			}
		}
		m.Roots = append(m.Roots, r)
	}
	if d.bad || len(d.b) != 0 {
		return 0, m, fmt.Errorf("%w: truncated or trailing bytes", ErrBadCombination)
	}
	if err := m.Validate(); err != nil {
		return 0, m, fmt.Errorf("%w: %w", ErrBadCombination, err)
	}
	return src, m, nil
}

// reader reads big-endian fields; a short read sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) next(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) u8() uint8   { return r.next(1)[0] }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.next(8)) }

func (r *reader) time() time.Time {
	n := r.u64()
	if n > math.MaxInt64 {
		r.bad = true
	}
	return time.Unix(0, int64(n)).UTC()
}

// Share is one parsed share file.
type Share struct {
	Repo      keys.ID
	Set       [8]byte // random per backup: shares of two backups never mix
	Source    keys.SourceKind
	Index     int // 1..Count: the Shamir x coordinate
	Count     int
	Threshold int
	Created   time.Time
	Y         []byte // the share's values; secret
	Checksum  string // as printed in the file
}

// Split makes a backup of m: count shares, any threshold of which rebuild
// it. It returns the shares and their files' texts, in index order. Both
// are secret: the caller writes each text to its own file and clears the
// texts and the shares' Y.
func Split(src keys.SourceKind, m keyring.Material, count, threshold int, now time.Time) ([]Share, [][]byte, error) {
	return split(src, m, count, threshold, now, rand.Reader)
}

func split(src keys.SourceKind, m keyring.Material, count, threshold int, now time.Time, rnd io.Reader) ([]Share, [][]byte, error) {
	if threshold < 2 || threshold > count || count > shamir.MaxShares {
		return nil, nil, fmt.Errorf("a backup needs 2 <= threshold <= shares <= %d, not threshold %d of %d shares", shamir.MaxShares, threshold, count)
	}
	pl, err := EncodePayload(src, m)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pl)
	parts, err := shamir.Split(pl, count, threshold, rnd)
	if err != nil {
		return nil, nil, err
	}
	var set [8]byte
	if _, err := io.ReadFull(rnd, set[:]); err != nil {
		return nil, nil, err
	}
	shares := make([]Share, count)
	texts := make([][]byte, count)
	for i, p := range parts {
		shares[i] = Share{Repo: m.Repo, Set: set, Source: src, Index: int(p.X), Count: count, Threshold: threshold,
			Created: now.UTC().Truncate(time.Second), Y: p.Y}
		texts[i] = shares[i].Marshal()
		shares[i].Checksum = checksum(shares[i])
	}
	return shares, texts, nil
}

// Combine rebuilds the material from shares of one set. It refuses shares
// of different sets or repositories (ErrMixedShares), a share given twice,
// and fewer than the set's threshold (ErrTooFewShares, saying how many are
// needed); what the shares combine to must be a valid backup
// (ErrBadCombination). The caller wipes the material.
func Combine(shares []Share) (keys.SourceKind, keyring.Material, error) {
	if len(shares) == 0 {
		return 0, keyring.Material{}, fmt.Errorf("%w: none given", ErrTooFewShares)
	}
	first := shares[0]
	parts := make([]shamir.Share, 0, len(shares))
	seen := map[int]bool{}
	for _, s := range shares {
		if s.Set != first.Set || s.Repo != first.Repo || s.Threshold != first.Threshold || s.Count != first.Count || s.Source != first.Source {
			return 0, keyring.Material{}, fmt.Errorf("%w: share %d of set %x and share %d of set %x (repository %x / %x); use shares of one backup only",
				ErrMixedShares, first.Index, first.Set, s.Index, s.Set, first.Repo[:4], s.Repo[:4])
		}
		if seen[s.Index] {
			return 0, keyring.Material{}, fmt.Errorf("share %d of set %x is given twice", s.Index, s.Set)
		}
		seen[s.Index] = true
		parts = append(parts, shamir.Share{X: byte(s.Index), Y: s.Y})
	}
	if len(shares) < first.Threshold {
		return 0, keyring.Material{}, fmt.Errorf("%w: set %x needs %d of its %d shares, got %d", ErrTooFewShares, first.Set, first.Threshold, first.Count, len(shares))
	}
	pl, err := shamir.Combine(parts)
	if err != nil {
		return 0, keyring.Material{}, err
	}
	defer clear(pl)
	src, m, err := DecodePayload(pl)
	if err != nil {
		return 0, keyring.Material{}, err
	}
	if m.Repo != first.Repo || src != first.Source {
		m.Wipe()
		return 0, keyring.Material{}, fmt.Errorf("%w: the payload names another repository or source", ErrBadCombination)
	}
	return src, m, nil
}
