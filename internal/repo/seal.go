package repo

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/keyring"
)

// ErrKeysSealed: the repository's keys were wiped by SealKeys and have
// not been given back (UnsealKeys). Operations that need a key fail with
// it; the catalog and the store stay open.
var ErrKeysSealed = errors.New("the repository's keys are sealed")

// SealKeys wipes every key the repository holds — the cached bucket keys
// and the keyring's root keys — while leaving the catalog and the store
// open, so that a long-running process (holdfast serve) can give up its
// keys when the host's posture fails and take them back later with
// UnsealKeys. The caller makes sure no operation is using the repository
// (posture.Guard does: seal waits for every permission to be released).
// Operations that need a key fail until UnsealKeys.
func (r *Repo) SealKeys() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.bkeys {
		v.Wipe()
		delete(r.bkeys, k)
	}
	if r.kr != nil {
		r.kr.Close()
	}
	r.sealed = true
}

// UnsealKeys gives a sealed repository its keys back: kr is the
// repository's key source opened anew (its keyring from a session or a
// passphrase file; its PKCS#11 token with the PIN from a file). kr
// belongs to the repository afterwards; on error it is closed.
func (r *Repo) UnsealKeys(kr RootKeys) error {
	if kr.Repo() != r.id {
		kr.Close()
		return fmt.Errorf("unsealing: the key source is not this repository's")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.sealed {
		kr.Close()
		return errors.New("unsealing: the repository's keys are not sealed")
	}
	r.kr, r.src, r.sealed = kr, kr, false
	return nil
}

// KeysSealed reports whether SealKeys wiped the keys and UnsealKeys has
// not yet given them back.
func (r *Repo) KeysSealed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sealed
}

// RootKeyVersions lists the root key versions the key source holds, with
// their state and creation time (holdfast keys list).
func (r *Repo) RootKeyVersions() []keyring.RootKeyInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kr.Versions()
}
