package keyring

import (
	"crypto/rand"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/secret"
)

// Permissions of a session key: its possessor may view, read, update,
// find and time it out; nobody else may do anything, not even the same
// user from outside the session (keyctl(2), KEY_POS_* and KEY_USR_*).
const (
	keyPosView    = 0x01000000
	keyPosRead    = 0x02000000
	keyPosWrite   = 0x04000000
	keyPosSearch  = 0x08000000
	keyPosSetattr = 0x20000000
	sessionPerm   = keyPosView | keyPosRead | keyPosWrite | keyPosSearch | keyPosSetattr
)

// unavailable maps the errors of a kernel, or a seccomp filter, without
// the key retention service.
func unavailable(err error) error {
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
		return ErrSessionUnavailable
	}
	return err
}

// sessionStore puts kek into the session keyring under name for secs
// seconds. The key is created with a random placeholder and restricted to
// its possessor before the real key is written into it, so that the file
// key is never readable with the kernel's default permissions; the timeout
// follows at once (an update resets it), and if it cannot be set the key
// is destroyed.
func sessionStore(name string, kek secret.Key, secs int) error {
	var ph [secret.KeySize]byte
	if _, err := rand.Read(ph[:]); err != nil {
		return err
	}
	ring, err := sessionKeyring()
	if err != nil {
		return unavailable(err)
	}
	id, err := unix.AddKey("user", name, ph[:], ring)
	if err != nil {
		return unavailable(err)
	}
	fail := func(err error) error {
		_, _ = unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0)
		return unavailable(err)
	}
	if err := unix.KeyctlSetperm(id, sessionPerm); err != nil {
		return fail(err)
	}
	err = kek.Use(func(b []byte) error {
		_, err := unix.KeyctlBuffer(unix.KEYCTL_UPDATE, id, b, 0)
		return err
	})
	if err != nil {
		return fail(err)
	}
	// After the update, which resets a user key's expiry.
	if _, err := unix.KeyctlInt(unix.KEYCTL_SET_TIMEOUT, id, secs, 0, 0); err != nil {
		return fail(err)
	}
	return nil
}

// sessionKeyring returns the id of this process's session keyring. A
// process outside a login session (no keyring from pam_keyinit) gets its
// user's session keyring, shared by all such processes of the user: asking
// for the session keyring without "create" installs it, where add_key
// alone would start an anonymous session keyring that dies with the
// process.
func sessionKeyring() (int, error) {
	return unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
}

// sessionLoad returns the file key stored under name, or ErrNoSession.
func sessionLoad(name string) (secret.Key, error) {
	id, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", name, 0)
	if err != nil {
		// ENOKEY, EKEYEXPIRED, EKEYREVOKED, or no key service at all.
		return secret.Key{}, ErrNoSession
	}
	var buf [secret.KeySize + 1]byte
	n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf[:], 0)
	if err != nil || n != secret.KeySize {
		clear(buf[:])
		return secret.Key{}, ErrNoSession
	}
	return secret.FromBytes(buf[:secret.KeySize])
}

// sessionForget destroys the key stored under name, if any.
func sessionForget(name string) (bool, error) {
	id, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", name, 0)
	if err != nil {
		if errors.Is(err, unix.ENOKEY) || errors.Is(err, unix.EKEYEXPIRED) || errors.Is(err, unix.EKEYREVOKED) {
			return false, nil
		}
		return false, unavailable(err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0); err != nil {
		return false, unavailable(err)
	}
	return true, nil
}
