package hsm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
)

// The state file keeps, next to the home's catalog, what the keyring file
// keeps for a passphrase-sealed source besides the root keys themselves:
// the repository id, the root key versions (number, state, creation time),
// which is primary, and the catalog backup's freshness record
// (docs/keys.md, "State file"). It is sealed with AES-256-GCM under a
// random state key, which is wrapped (AlgGCM) by a root key in the token,
// so that the file opens only with the token and cannot be altered
// without it.
//
//	magic "HFHSMST1" || format u8 = 1 || repo[16] || kek version u32 ||
//	wrapped state key[60] || nonce[12] || AES-256-GCM(state key, payload,
//	AD = everything before the ciphertext) + tag[16]
//
// payload: u8 1 || primary u32 || fresh flag u8 [|| seq u64 || hash[32] ||
// time u64 (Unix ns)] || count u32 || count × (version u32 || state u8 ||
// created u64).
const (
	stateMagic     = "HFHSMST1"
	stateFormat    = 1
	stateHeaderLen = len(stateMagic) + 1 + 16 + 4 + keys.WrappedLenGCM + 12
	maxStateLen    = 1 << 20
	maxVersions    = 16384
)

// state is the state file's content.
type state struct {
	repo     keys.ID
	primary  uint32
	hasFresh bool
	fresh    keyring.Freshness
	versions []keyring.RootKeyInfo
}

func (s state) find(v uint32) (keyring.RootKeyInfo, bool) {
	for _, i := range s.versions {
		if i.Version == v {
			return i, true
		}
	}
	return keyring.RootKeyInfo{}, false
}

func (s state) clone() state {
	s.versions = append([]keyring.RootKeyInfo(nil), s.versions...)
	return s
}

func (s state) validate() error {
	if len(s.versions) == 0 || len(s.versions) > maxVersions {
		return fmt.Errorf("state file: %d root key versions", len(s.versions))
	}
	var prev uint32
	ok := false
	for _, v := range s.versions {
		if v.Version <= prev {
			return fmt.Errorf("state file: version %d follows %d", v.Version, prev)
		}
		prev = v.Version
		switch v.State {
		case keyring.StateActive, keyring.StateDecryptOnly, keyring.StateDestroyed:
		default:
			return fmt.Errorf("state file: version %d has unknown state %d", v.Version, v.State)
		}
		if v.Version == s.primary {
			if v.State != keyring.StateActive {
				return fmt.Errorf("state file: primary version %d is %s", v.Version, v.State)
			}
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("state file: primary version %d does not exist", s.primary)
	}
	return nil
}

func (s state) marshal() []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint32(b, s.primary)
	if s.hasFresh {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, s.fresh.Sequence)
		b = append(b, s.fresh.Hash[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(s.fresh.Time.UnixNano()))
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.versions)))
	for _, v := range s.versions {
		b = binary.BigEndian.AppendUint32(b, v.Version)
		b = append(b, byte(v.State))
		b = binary.BigEndian.AppendUint64(b, uint64(v.Created.UnixNano()))
	}
	return b
}

var errStateCorrupt = errors.New("PKCS#11 state file is corrupt")

func unmarshalState(repo keys.ID, b []byte) (state, error) {
	s := state{repo: repo}
	r := bytes.NewReader(b)
	var hdr struct {
		V       uint8
		Primary uint32
		Fresh   uint8
	}
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil || hdr.V != 1 {
		return s, errStateCorrupt
	}
	s.primary = hdr.Primary
	switch hdr.Fresh {
	case 0:
	case 1:
		var f struct {
			Seq  uint64
			Hash [32]byte
			Time uint64
		}
		if err := binary.Read(r, binary.BigEndian, &f); err != nil || f.Time > math.MaxInt64 {
			return s, errStateCorrupt
		}
		s.hasFresh = true
		s.fresh = keyring.Freshness{Sequence: f.Seq, Hash: f.Hash, Time: time.Unix(0, int64(f.Time)).UTC()}
	default:
		return s, errStateCorrupt
	}
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil || n > maxVersions || int(n)*13 != r.Len() {
		return s, errStateCorrupt
	}
	for range n {
		var e struct {
			Ver     uint32
			State   uint8
			Created uint64
		}
		if err := binary.Read(r, binary.BigEndian, &e); err != nil || e.Created > math.MaxInt64 {
			return s, errStateCorrupt
		}
		s.versions = append(s.versions, keyring.RootKeyInfo{Version: e.Ver, State: keyring.State(e.State), Created: time.Unix(0, int64(e.Created)).UTC()})
	}
	if err := s.validate(); err != nil {
		return s, fmt.Errorf("%w: %w", errStateCorrupt, err)
	}
	return s, nil
}

// stateHeader is the parsed plaintext start of the file.
type stateHeader struct {
	repo    keys.ID
	kekVer  uint32
	wrapped []byte
	nonce   []byte
	raw     []byte // the header bytes: the payload's associated data
}

func parseStateFile(b []byte) (stateHeader, []byte, error) {
	var h stateHeader
	if len(b) < stateHeaderLen+16 || len(b) > maxStateLen || string(b[:8]) != stateMagic {
		return h, nil, fmt.Errorf("%w: not a holdfast PKCS#11 state file", errStateCorrupt)
	}
	if b[8] != stateFormat {
		return h, nil, fmt.Errorf("PKCS#11 state file format %d (this build reads %d)", b[8], stateFormat)
	}
	copy(h.repo[:], b[9:25])
	h.kekVer = binary.BigEndian.Uint32(b[25:29])
	h.wrapped = b[29 : 29+keys.WrappedLenGCM]
	h.nonce = b[29+keys.WrappedLenGCM : stateHeaderLen]
	h.raw = b[:stateHeaderLen]
	return h, b[stateHeaderLen:], nil
}

func stateHeaderBytes(repo keys.ID, kekVer uint32, wrapped, nonce []byte) []byte {
	b := make([]byte, 0, stateHeaderLen)
	b = append(b, stateMagic...)
	b = append(b, stateFormat)
	b = append(b, repo[:]...)
	b = binary.BigEndian.AppendUint32(b, kekVer)
	b = append(b, wrapped...)
	return append(b, nonce...)
}

func readStateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxStateLen+1))
}

// writeStateFile puts b at path atomically (mode 0600). With replace it
// holds path+".lock" and first checks that the file on disk hashes to
// disk (keyring.ErrModified otherwise), as the keyring does.
func writeStateFile(path string, b []byte, replace bool, disk [32]byte) error {
	if replace {
		lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer lf.Close()
		for {
			if err = unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != unix.EINTR {
				break
			}
		}
		if err != nil {
			return err
		}
		cur, err := readStateFile(path)
		if err != nil {
			return fmt.Errorf("%w: %w", keyring.ErrModified, err)
		}
		if sha256.Sum256(cur) != disk {
			return keyring.ErrModified
		}
	}
	return atomicfile.WriteFile(path, b, atomicfile.Options{Mode: 0o600, NoReplace: !replace})
}

func randomNonce() ([]byte, error) {
	n := make([]byte, 12)
	_, err := rand.Read(n)
	return n, err
}
