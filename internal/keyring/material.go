package keyring

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// Material is everything a backup of a repository's root keys holds
// (docs/keys.md, "What a share set holds"): the repository, every root key
// version with its state and creation time — and its material unless it is
// destroyed — which version is primary, and the freshness record. The key
// share backup (internal/keys/keyshare) splits its encoding into shares;
// the keyring and the PKCS#11 source are made again from it.
type Material struct {
	Repo     keys.ID
	Primary  uint32
	HasFresh bool
	Fresh    Freshness
	Roots    []RootMaterial // strictly increasing versions
}

// RootMaterial is one root key version. Key is invalid (zero) for a
// destroyed version.
type RootMaterial struct {
	Info RootKeyInfo
	Key  secret.Key
}

// Wipe zeroes every key the material holds.
func (m Material) Wipe() {
	for _, r := range m.Roots {
		r.Key.Wipe()
	}
}

// Validate applies the keyring file's own rules (one primary, active;
// versions strictly increasing; material exactly for the versions that
// are not destroyed; times in range).
func (m Material) Validate() error {
	if m.Repo == (keys.ID{}) {
		return errors.New("key material: repository id is zero")
	}
	return m.payload().validate()
}

// payload shares the keys with m (no copy).
func (m Material) payload() payload {
	p := payload{repo: m.Repo, primary: m.Primary, hasFresh: m.HasFresh, fresh: m.Fresh}
	for _, r := range m.Roots {
		p.roots = append(p.roots, rootKey{info: r.Info, key: r.Key})
	}
	return p
}

// Export returns copies of the keyring's root keys and records, for a
// backup. The caller wipes the result.
func (k *Keyring) Export() (Material, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.shut {
		return Material{}, fmt.Errorf("exporting keyring: %w", ErrClosed)
	}
	m := Material{Repo: k.st.repo, Primary: k.st.primary, HasFresh: k.st.hasFresh, Fresh: k.st.fresh}
	for _, r := range k.st.roots {
		rm := RootMaterial{Info: r.info}
		if r.key.Valid() {
			c, err := CopyKey(r.key)
			if err != nil {
				m.Wipe()
				return Material{}, fmt.Errorf("exporting keyring: %w", err)
			}
			rm.Key = c
		}
		m.Roots = append(m.Roots, rm)
	}
	return m, nil
}

// CopyKey returns a new Key with k's material (its own slot, so that
// wiping one leaves the other).
func CopyKey(k secret.Key) (secret.Key, error) {
	var out secret.Key
	err := k.Use(func(b []byte) error {
		c := make([]byte, len(b))
		copy(c, b)
		var err error
		out, err = secret.FromBytes(c) // wipes c
		return err
	})
	return out, err
}

// CreateFromMaterial makes a new keyring at path holding m (a restored
// backup), sealed under passphrase with parameters p. Like Create it
// refuses an existing file and an empty passphrase. The keyring takes
// copies of m's keys; the caller still wipes m.
func CreateFromMaterial(path string, passphrase []byte, p Params, m Material) (*Keyring, error) {
	k, err := createFromMaterial(path, passphrase, p, m)
	if err != nil {
		return nil, fmt.Errorf("creating keyring %q from a backup: %w", path, err)
	}
	return k, nil
}

func createFromMaterial(path string, passphrase []byte, p Params, m Material) (*Keyring, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	h, err := prepareNew(path, passphrase, p)
	if err != nil {
		return nil, err
	}
	st := payload{repo: m.Repo, primary: m.Primary, hasFresh: m.HasFresh, fresh: m.Fresh}
	if st.hasFresh {
		st.fresh.Time = stamp(st.fresh.Time)
	}
	for _, r := range m.Roots {
		rk := rootKey{info: r.Info}
		rk.info.Created = stamp(rk.info.Created)
		if r.Key.Valid() {
			c, err := CopyKey(r.Key)
			if err != nil {
				st.wipe()
				return nil, err
			}
			rk.key = c
		}
		st.roots = append(st.roots, rk)
	}
	k, err := writeNew(path, passphrase, h, st)
	if err != nil {
		st.wipe()
		return nil, err
	}
	return k, nil
}
