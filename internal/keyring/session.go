package keyring

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/secret"
)

// An unlocked session keeps a keyring's file key — the Argon2id output,
// not the passphrase and not the root keys — in the kernel's key retention
// service for a limited time, so that the commands of a working session
// pay for the derivation once (`holdfast unlock`), not once each. The key
// lives in kernel memory (never swapped, never in a core dump of holdfast),
// readable only by processes that possess the session keyring, and the
// kernel destroys it when its timeout passes; `holdfast lock` destroys it
// at once. It opens only the keyring file it was derived for: its name is
// bound to that file's salt and parameters, so a passphrase change (new
// salt) leaves a stale session unused.

var (
	// ErrNoSession: no live session for this keyring file (none was
	// unlocked, it expired or was locked, or this system has no kernel
	// key retention service).
	ErrNoSession = errors.New("no unlocked session for this keyring")
	// ErrSessionUnavailable: the kernel's key retention service cannot be
	// used here (not built into the kernel, or blocked by a seccomp
	// filter, as in many containers).
	ErrSessionUnavailable = errors.New("the kernel key retention service is not available (keyctl)")
)

// MaxSession is the longest a session may last.
const MaxSession = 24 * time.Hour

// sessionName is the kernel key's description for the keyring file with
// header h: a hash of the KDF parameters and salt, which determine the file
// key. The nonce is left out: it changes on every rewrite of the file.
func sessionName(h header) string {
	b := h.bytes()[:offNonce]
	sum := sha256.Sum256(append([]byte("holdfast keyring session v1\x00"), b...))
	return "holdfast:" + hex.EncodeToString(sum[:20])
}

// readHeader reads and checks the keyring file at path and returns its
// bytes and header.
func readHeader(path string) ([]byte, header, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, header{}, err
	}
	h, _, err := parseFile(b)
	if err != nil {
		return nil, header{}, err
	}
	return b, h, nil
}

// Unlock starts a session for k's file that lasts ttl (at most MaxSession,
// rounded up to a second): until then, OpenSession opens the file without
// the passphrase. A new Unlock of the same file replaces the session.
func (k *Keyring) Unlock(ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxSession {
		return fmt.Errorf("a session lasts between 1s and %s, not %s", MaxSession, ttl)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.shut {
		return fmt.Errorf("unlocking: %w", ErrClosed)
	}
	secs := int((ttl + time.Second - 1) / time.Second)
	if err := sessionStore(sessionName(k.hdr), k.kek, secs); err != nil {
		return fmt.Errorf("unlocking %q: %w", k.path, err)
	}
	return nil
}

// OpenSession opens the keyring at path with the file key of a live
// session, without a derivation. It returns ErrNoSession (wrapped) when
// there is none, and then leaves the file and the kernel unchanged, except
// that a session whose key does not open the file is destroyed. Other
// errors are those of Open for a file that cannot be read.
func OpenSession(path string) (*Keyring, error) {
	b, h, err := readHeader(path)
	if err != nil {
		return nil, fmt.Errorf("opening keyring %q: %w", path, err)
	}
	name := sessionName(h)
	kek, err := sessionLoad(name)
	if err != nil {
		return nil, err
	}
	h, kek, st, err := decodeFileWith(b, currentLimits(), func(header) (secret.Key, error) { return kek, nil })
	if errors.Is(err, ErrWrongPassphrase) {
		// Not this file's key: someone else's key under our name.
		_, _ = sessionForget(name)
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("opening keyring %q: %w", path, err)
	}
	return &Keyring{path: path, hdr: h, kek: kek, st: st, disk: sha256.Sum256(b)}, nil
}

// Lock ends the session for the keyring file at path, if there is one,
// and reports whether there was.
func Lock(path string) (bool, error) {
	_, h, err := readHeader(path)
	if err != nil {
		return false, fmt.Errorf("locking keyring %q: %w", path, err)
	}
	return sessionForget(sessionName(h))
}
