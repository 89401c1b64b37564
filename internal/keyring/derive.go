package keyring

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/holdfast/holdfast/internal/secret"
)

// DeriveKey returns a key derived from root key version ver for one named
// purpose: HKDF-SHA256(ikm = the root key, salt = the repository id,
// info = "holdfast/v1/derived/" + purpose). The same keyring, version and
// purpose always give the same key, so the key is never stored: callers
// derive it again whenever they open the repository. Distinct purposes give
// independent keys, and none of them reveals the root key.
//
// The version must not be destroyed (its material is gone). A destroyed
// version makes every key derived from it underivable, which is the point
// of destroying it.
func (k *Keyring) DeriveKey(ver uint32, purpose string) (secret.Key, error) {
	if purpose == "" {
		return secret.Key{}, fmt.Errorf("keyring derive: empty purpose")
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.shut {
		return secret.Key{}, fmt.Errorf("keyring derive: %w", ErrClosed)
	}
	r, ok := k.st.find(ver)
	if !ok {
		return secret.Key{}, fmt.Errorf("keyring derive %q: no root key version %d", purpose, ver)
	}
	if r.info.State == StateDestroyed {
		return secret.Key{}, fmt.Errorf("keyring derive %q: root key version %d is destroyed", purpose, ver)
	}
	var out secret.Key
	err := r.key.Use(func(kb []byte) error {
		okm, err := hkdf.Key(sha256.New, kb, k.st.repo[:], "holdfast/v1/derived/"+purpose, secret.KeySize)
		if err != nil {
			return err
		}
		defer clear(okm)
		out, err = secret.FromBytes(okm)
		return err
	})
	if err != nil {
		return secret.Key{}, fmt.Errorf("keyring derive %q: %w", purpose, err)
	}
	return out, nil
}
