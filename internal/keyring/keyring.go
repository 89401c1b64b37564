package keyring

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

var (
	// ErrClosed: the keyring was closed and its keys wiped.
	ErrClosed = errors.New("keyring is closed")
	// ErrModified: the file on disk is no longer the one this Keyring read
	// or last wrote (another process changed it); the rewrite was refused
	// so that its change is not lost. Open the keyring again.
	ErrModified = errors.New("keyring file changed on disk since it was opened")
	// ErrFreshnessRollback: SetFreshness was given an older catalog backup
	// than the keyring records, or a different one with the same sequence.
	ErrFreshnessRollback = errors.New("freshness record would move backwards")
	// ErrEmptyPassphrase: an empty passphrase was given.
	ErrEmptyPassphrase = errors.New("empty passphrase")
)

// Keyring is an open keyring file. It holds the repository's root keys in
// memory and implements keys.Source with them. Every change (Rotate,
// Destroy, SetFreshness, ChangePassphrase) rewrites the file atomically
// before it takes effect in memory. A Keyring is safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	path string
	hdr  header     // KDF parameters and salt; the nonce is redrawn per write
	kek  secret.Key // Argon2id(passphrase, salt), cached for rewrites
	st   payload
	disk [sha256.Size]byte // SHA-256 of the file as last read or written
	shut bool
}

var (
	_ keys.Source = (*Keyring)(nil)
	_ io.Closer   = (*Keyring)(nil)
)

// Create makes a new keyring at path for repository repo, sealed under
// passphrase with Argon2id parameters p (see Calibrate), holding one fresh
// root key, version 1, which is primary. It refuses if anything exists at
// path (ErrExists) and checks p against the bounds before deriving. The
// file is written atomically with mode 0600. Create neither keeps nor
// modifies passphrase.
func Create(path string, passphrase []byte, repo keys.ID, p Params) (*Keyring, error) {
	k, err := create(path, passphrase, repo, p, time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating keyring %q: %w", path, err)
	}
	return k, nil
}

func create(path string, passphrase []byte, repo keys.ID, p Params, now time.Time) (*Keyring, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if repo == (keys.ID{}) {
		return nil, errors.New("repository id is zero")
	}
	h, err := prepareNew(path, passphrase, p)
	if err != nil {
		return nil, err
	}
	root, err := secret.New()
	if err != nil {
		return nil, err
	}
	st := payload{
		repo:    repo,
		primary: 1,
		roots:   []rootKey{{info: RootKeyInfo{Version: 1, Created: stamp(now), State: StateActive}, key: root}},
	}
	k, err := writeNew(path, passphrase, h, st)
	if err != nil {
		st.wipe()
		return nil, err
	}
	return k, nil
}

// prepareNew checks what every new keyring file needs before its key is
// derived — a passphrase, parameters within bounds, nothing at path — and
// returns its header with a fresh salt.
func prepareNew(path string, passphrase []byte, p Params) (header, error) {
	h := header{params: p}
	if len(passphrase) == 0 {
		return h, ErrEmptyPassphrase
	}
	if err := currentLimits().check(p); err != nil {
		return h, err
	}
	// Fail early, before the derivation; the final link still refuses a
	// file that appears meanwhile.
	if _, err := os.Lstat(path); err == nil {
		return h, ErrExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return h, err
	}
	_, err := rand.Read(h.salt[:])
	return h, err
}

// writeNew derives the file key for h from passphrase and writes st as a
// new keyring file at path. On failure st is still the caller's to wipe.
func writeNew(path string, passphrase []byte, h header, st payload) (*Keyring, error) {
	kek, err := deriveKEK(passphrase, h.salt[:], h.params)
	if err != nil {
		return nil, err
	}
	k := &Keyring{path: path, hdr: h, kek: kek}
	if err := k.write(st, h, kek, false); err != nil {
		kek.Wipe()
		return nil, err
	}
	k.st = st
	return k, nil
}

// stamp drops the monotonic reading and the location, so that a time in
// memory equals the same time read back from the file.
func stamp(t time.Time) time.Time { return t.Round(0).UTC() }

// Open reads and decrypts the keyring at path. Failures, checked in this
// order and before anything is derived where possible: ErrCorrupt (bad
// magic, length or checksum), ErrUnsupported (format version or KDF),
// ErrKDFTooWeak / ErrKDFTooCostly (parameters out of bounds), then, after
// the derivation, ErrWrongPassphrase, and ErrCorrupt or ErrUnsupported for
// a payload that is not valid. Open never changes the file. It neither
// keeps nor modifies passphrase.
func Open(path string, passphrase []byte) (*Keyring, error) {
	k, err := open(path, passphrase)
	if err != nil {
		return nil, fmt.Errorf("opening keyring %q: %w", path, err)
	}
	return k, nil
}

func open(path string, passphrase []byte) (*Keyring, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	h, kek, st, err := decodeFile(b, passphrase, currentLimits())
	if err != nil {
		return nil, err
	}
	return &Keyring{path: path, hdr: h, kek: kek, st: st, disk: sha256.Sum256(b)}, nil
}

// decodeFile is the whole read path on bytes: structure and checksum, KDF
// bounds, derivation, decryption, payload. On success the caller owns kek
// and the keys in st.
func decodeFile(b, passphrase []byte, l limits) (header, secret.Key, payload, error) {
	return decodeFileWith(b, l, func(h header) (secret.Key, error) {
		return deriveKEK(passphrase, h.salt[:], h.params)
	})
}

// decodeFileWith is decodeFile with the file key from kekFor (a derivation,
// or a session's cached key), called once the header checks out.
func decodeFileWith(b []byte, l limits, kekFor func(header) (secret.Key, error)) (header, secret.Key, payload, error) {
	h, ct, err := parseFile(b)
	if err != nil {
		return header{}, secret.Key{}, payload{}, err
	}
	if err := l.check(h.params); err != nil {
		return header{}, secret.Key{}, payload{}, err
	}
	kek, err := kekFor(h)
	if err != nil {
		return header{}, secret.Key{}, payload{}, err
	}
	pt, err := openCiphertext(kek, h, ct)
	if err != nil {
		kek.Wipe()
		return header{}, secret.Key{}, payload{}, err
	}
	defer clear(pt)
	st, err := unmarshalPayload(pt)
	if err != nil {
		kek.Wipe()
		return header{}, secret.Key{}, payload{}, err
	}
	return h, kek, st, nil
}

// write seals st under kek with header h and a fresh nonce and puts it at
// k.path. With replace it first checks that the file on disk is the one
// this Keyring knows (ErrModified otherwise). On success it records the
// new file's hash and header; the caller commits st.
func (k *Keyring) write(st payload, h header, kek secret.Key, replace bool) error {
	if _, err := rand.Read(h.nonce[:]); err != nil {
		return err
	}
	pt, err := marshalPayload(st)
	if err != nil {
		return err
	}
	file, err := sealFile(kek, h, pt)
	clear(pt)
	if err != nil {
		return err
	}
	if replace {
		// Check and replace under the lock, so that of two processes that
		// read the same file only the first replaces it; the other finds
		// the file changed (ErrModified) instead of undoing the first's
		// change (a root key version, a newer freshness record).
		unlock, err := lockKeyring(k.path)
		if err != nil {
			return err
		}
		defer unlock()
		cur, err := readFile(k.path)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrModified, err)
		}
		if sum := sha256.Sum256(cur); sum != k.disk {
			return ErrModified
		}
	}
	if err := writeFileAtomic(k.path, file, replace); err != nil {
		return err
	}
	k.disk = sha256.Sum256(file)
	k.hdr = h
	return nil
}

// Kind reports keys.SourceKeyring.
func (k *Keyring) Kind() keys.SourceKind { return keys.SourceKeyring }

// Primary returns the root key version used for new wraps.
func (k *Keyring) Primary() uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.primary
}

// Repo returns the repository id the keyring belongs to.
func (k *Keyring) Repo() keys.ID {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.repo
}

// Path returns the keyring file's path.
func (k *Keyring) Path() string { return k.path }

// Params returns the Argon2id parameters the file is sealed with.
func (k *Keyring) Params() Params {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.hdr.params
}

// Versions lists every root key version, oldest first, without material.
func (k *Keyring) Versions() []RootKeyInfo {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]RootKeyInfo, len(k.st.roots))
	for i, r := range k.st.roots {
		out[i] = r.info
	}
	return out
}

// Freshness returns the freshness record, and false if none was ever set.
func (k *Keyring) Freshness() (Freshness, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.fresh, k.st.hasFresh
}

// Wrap seals dk under root key version ver, which must be active, binding
// ad. ad must name this keyring's repository and ver as its KEK version.
func (k *Keyring) Wrap(ctx context.Context, ver uint32, ad keys.AD, dk secret.Key) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.shut {
		return keys.Wrapped{}, fmt.Errorf("keyring wrap: %w", ErrClosed)
	}
	if ad.KEKVersion != ver {
		return keys.Wrapped{}, fmt.Errorf("keyring wrap: associated data names root key version %d, not %d", ad.KEKVersion, ver)
	}
	if ad.Repo != k.st.repo {
		return keys.Wrapped{}, errors.New("keyring wrap: associated data names another repository")
	}
	r, ok := k.st.find(ver)
	if !ok {
		return keys.Wrapped{}, fmt.Errorf("keyring wrap: no root key version %d", ver)
	}
	if r.info.State != StateActive {
		return keys.Wrapped{}, fmt.Errorf("keyring wrap: root key version %d is %s", ver, r.info.State)
	}
	data, err := keys.WrapSoftware(r.key, ad, dk, rand.Reader)
	if err != nil {
		return keys.Wrapped{}, fmt.Errorf("keyring wrap: %w", err)
	}
	return keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: ver, Data: data}, nil
}

// Unwrap opens w under the root key version it names, binding ad. Every
// reason it cannot — another source kind or algorithm, an unknown or
// destroyed version, associated data that does not match, a record sealed
// under another key or altered — is keys.ErrNotMyKey. A closed keyring
// answers keys.ErrUnavailable.
func (k *Keyring) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	if err := ctx.Err(); err != nil {
		return secret.Key{}, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.shut {
		return secret.Key{}, fmt.Errorf("keyring unwrap: %w: %w", ErrClosed, keys.ErrUnavailable)
	}
	notMine := func(why string, args ...any) error {
		return fmt.Errorf("keyring unwrap: %s: %w", fmt.Sprintf(why, args...), keys.ErrNotMyKey)
	}
	switch {
	case w.Source != keys.SourceKeyring:
		return secret.Key{}, notMine("record is for key source kind %d", w.Source)
	case w.Alg != keys.AlgHKDFGCMCommit:
		return secret.Key{}, notMine("record uses wrap algorithm %d", w.Alg)
	case ad.KEKVersion != w.KEKVersion:
		return secret.Key{}, notMine("associated data names root key version %d, record %d", ad.KEKVersion, w.KEKVersion)
	case ad.Repo != k.st.repo:
		return secret.Key{}, notMine("associated data names another repository")
	}
	r, ok := k.st.find(w.KEKVersion)
	if !ok {
		return secret.Key{}, notMine("no root key version %d", w.KEKVersion)
	}
	if r.info.State == StateDestroyed {
		return secret.Key{}, notMine("root key version %d is destroyed", w.KEKVersion)
	}
	dk, err := keys.UnwrapSoftware(r.key, ad, w.Data)
	if err != nil {
		return secret.Key{}, fmt.Errorf("keyring unwrap: %w", err)
	}
	return dk, nil
}

// Rotate adds a fresh root key version, makes it primary, and turns every
// other active version decrypt-only: records wrapped under them still
// unwrap, new wraps use the new version. It returns the new version.
func (k *Keyring) Rotate() (uint32, error) {
	return k.rotate(time.Now())
}

func (k *Keyring) rotate(now time.Time) (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return 0, fmt.Errorf("rotating keyring: %w", ErrClosed)
	}
	last := k.st.roots[len(k.st.roots)-1].info.Version
	if last == math.MaxUint32 || len(k.st.roots) >= maxRootKeys {
		return 0, fmt.Errorf("rotating keyring %q: no root key versions left", k.path)
	}
	root, err := secret.New()
	if err != nil {
		return 0, fmt.Errorf("rotating keyring %q: %w", k.path, err)
	}
	next := k.st.clone()
	for i := range next.roots {
		if next.roots[i].info.State == StateActive {
			next.roots[i].info.State = StateDecryptOnly
		}
	}
	ver := last + 1
	next.roots = append(next.roots, rootKey{info: RootKeyInfo{Version: ver, Created: stamp(now), State: StateActive}, key: root})
	next.primary = ver
	if err := k.write(next, k.hdr, k.kek, true); err != nil {
		root.Wipe()
		return 0, fmt.Errorf("rotating keyring %q: %w", k.path, err)
	}
	k.st = next
	return ver, nil
}

// Destroy removes the material of root key version ver (crypto-shredding):
// records wrapped under it can no longer be opened. The version number
// stays, marked destroyed. The primary version cannot be destroyed; rotate
// first. Destroying a destroyed version does nothing.
//
// The old file is replaced, not overwritten in place: on file systems and
// media that keep old blocks, copies of the previous file may survive until
// they are reused.
func (k *Keyring) Destroy(ver uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return fmt.Errorf("destroying root key version %d: %w", ver, ErrClosed)
	}
	i := -1
	for j, r := range k.st.roots {
		if r.info.Version == ver {
			i = j
		}
	}
	switch {
	case i < 0:
		return fmt.Errorf("destroying root key version %d: no such version", ver)
	case ver == k.st.primary:
		return fmt.Errorf("destroying root key version %d: it is the primary version; rotate first", ver)
	case k.st.roots[i].info.State == StateDestroyed:
		return nil
	}
	old := k.st.roots[i].key
	next := k.st.clone()
	next.roots[i] = rootKey{info: RootKeyInfo{Version: ver, Created: next.roots[i].info.Created, State: StateDestroyed}}
	if err := k.write(next, k.hdr, k.kek, true); err != nil {
		return fmt.Errorf("destroying root key version %d in %q: %w", ver, k.path, err)
	}
	k.st = next
	old.Wipe()
	return nil
}

// SetFreshness records the latest catalog backup. A zero f.Time means now;
// other times must lie between 1970 and 2262. It refuses
// (ErrFreshnessRollback) a sequence lower than the recorded one, or the
// same sequence with a different hash; the same record again only updates
// the time.
func (k *Keyring) SetFreshness(f Freshness) error {
	return k.setFreshness(f, time.Now())
}

func (k *Keyring) setFreshness(f Freshness, now time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return fmt.Errorf("setting freshness: %w", ErrClosed)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	if !timeInRange(f.Time) {
		return fmt.Errorf("setting freshness: time %v is out of range", f.Time)
	}
	if k.st.hasFresh {
		cur := k.st.fresh
		if f.Sequence < cur.Sequence {
			return fmt.Errorf("setting freshness: %w: sequence %d is older than the recorded %d", ErrFreshnessRollback, f.Sequence, cur.Sequence)
		}
		if f.Sequence == cur.Sequence && f.Hash != cur.Hash {
			return fmt.Errorf("setting freshness: %w: sequence %d is recorded with a different hash", ErrFreshnessRollback, f.Sequence)
		}
	}
	f.Time = stamp(f.Time)
	next := k.st.clone()
	next.hasFresh, next.fresh = true, f
	if err := k.write(next, k.hdr, k.kek, true); err != nil {
		return fmt.Errorf("setting freshness in %q: %w", k.path, err)
	}
	k.st = next
	return nil
}

// Reload reads the keyring file again after another process changed it
// (a write failed with ErrModified), using the key this Keyring derived
// from the passphrase, so no passphrase is needed: it works while the file
// is sealed under the same salt and parameters (another process rotated a
// key or recorded freshness) and fails with ErrModified if the passphrase
// was changed meanwhile (open the keyring again). It refuses a file of
// another repository and one whose freshness record is older than the one
// in memory (ErrFreshnessRollback), and changes nothing when it fails.
func (k *Keyring) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return fmt.Errorf("reloading keyring: %w", ErrClosed)
	}
	b, err := readFile(k.path)
	if err != nil {
		return fmt.Errorf("reloading keyring %q: %w", k.path, err)
	}
	h, ct, err := parseFile(b)
	if err != nil {
		return fmt.Errorf("reloading keyring %q: %w", k.path, err)
	}
	if h.params != k.hdr.params || h.salt != k.hdr.salt {
		return fmt.Errorf("reloading keyring %q: %w: its passphrase was changed", k.path, ErrModified)
	}
	pt, err := openCiphertext(k.kek, h, ct)
	if err != nil {
		return fmt.Errorf("reloading keyring %q: %w", k.path, err)
	}
	st, err := unmarshalPayload(pt)
	clear(pt)
	if err != nil {
		return fmt.Errorf("reloading keyring %q: %w", k.path, err)
	}
	switch {
	case st.repo != k.st.repo:
		err = errors.New("it now belongs to another repository")
	case k.st.hasFresh && (!st.hasFresh || st.fresh.Sequence < k.st.fresh.Sequence ||
		st.fresh.Sequence == k.st.fresh.Sequence && st.fresh.Hash != k.st.fresh.Hash):
		err = fmt.Errorf("%w: the file's freshness record is older than the one read before", ErrFreshnessRollback)
	}
	if err != nil {
		st.wipe()
		return fmt.Errorf("reloading keyring %q: %w", k.path, err)
	}
	k.st.wipe()
	k.st, k.hdr, k.disk = st, h, sha256.Sum256(b)
	return nil
}

// ChangePassphrase reseals the keyring under newPass with parameters p (see
// Calibrate) and a fresh salt. The root keys do not change. It neither
// keeps nor modifies newPass.
func (k *Keyring) ChangePassphrase(newPass []byte, p Params) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return fmt.Errorf("changing passphrase: %w", ErrClosed)
	}
	if len(newPass) == 0 {
		return fmt.Errorf("changing passphrase: %w", ErrEmptyPassphrase)
	}
	if err := currentLimits().check(p); err != nil {
		return fmt.Errorf("changing passphrase: %w", err)
	}
	h := header{params: p}
	if _, err := rand.Read(h.salt[:]); err != nil {
		return fmt.Errorf("changing passphrase: %w", err)
	}
	kek, err := deriveKEK(newPass, h.salt[:], p)
	if err != nil {
		return fmt.Errorf("changing passphrase: %w", err)
	}
	if err := k.write(k.st, h, kek, true); err != nil {
		kek.Wipe()
		return fmt.Errorf("changing passphrase of %q: %w", k.path, err)
	}
	k.kek.Wipe()
	k.kek = kek
	return nil
}

// Close wipes every key the Keyring holds: the root keys and the derived
// file key. Later calls fail with ErrClosed (keys.ErrUnavailable for
// Unwrap). Keys returned by Unwrap belong to the caller and are not wiped.
// Close always returns nil.
func (k *Keyring) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shut {
		return nil
	}
	k.shut = true
	k.kek.Wipe()
	k.st.wipe()
	return nil
}
