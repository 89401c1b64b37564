package hsm

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/keyring"
)

// ErrVersion: a root key version AddRootKey or Destroy cannot take.
var ErrVersion = errors.New("root key version refused")

// NextVersion is the version AddRootKey takes next: one above every
// version the state records.
func (s *Source) NextVersion() uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := uint32(0)
	for _, i := range s.st.versions {
		v = max(v, i.Version)
	}
	return v + 1
}

// AddRootKey imports r — a new root key version made by a rotation
// ceremony (docs/keys.md: generated in protected memory, split into
// shares, then imported here non-extractable) — and makes it primary; the
// versions that were active become decrypt-only. r's version must be
// NextVersion. If the state cannot be written, the imported object is
// destroyed again. The caller wipes r.Key.
func (s *Source) AddRootKey(r keyring.RootMaterial) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return fmt.Errorf("adding root key version %d: %w", r.Info.Version, ErrClosed)
	}
	next := s.st.clone()
	for _, i := range next.versions {
		if i.Version >= r.Info.Version {
			return fmt.Errorf("%w: version %d is not above %d", ErrVersion, r.Info.Version, i.Version)
		}
	}
	if r.Info.State != keyring.StateActive {
		return fmt.Errorf("%w: a new version must be active", ErrVersion)
	}
	for i := range next.versions {
		if next.versions[i].State == keyring.StateActive {
			next.versions[i].State = keyring.StateDecryptOnly
		}
	}
	next.versions = append(next.versions, r.Info)
	next.primary = r.Info.Version
	if err := s.tok.importKey(s.uri.Object, r.Info.Version, r.Key); err != nil {
		return err
	}
	if err := s.writeState(next, true); err != nil {
		_ = s.tok.destroyKey(s.uri.Object, r.Info.Version)
		return fmt.Errorf("adding root key version %d to %q: %w", r.Info.Version, s.path, err)
	}
	s.st = next
	return nil
}

// Destroy deletes root key version v's object from the token
// (crypto-shredding) and records it destroyed. The primary version cannot
// be destroyed; destroying a destroyed version does nothing. The state is
// written first: a state that says destroyed while the object survives is
// put right by destroying again; the reverse would name a key that is gone.
func (s *Source) Destroy(v uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return fmt.Errorf("destroying root key version %d: %w", v, ErrClosed)
	}
	info, ok := s.st.find(v)
	switch {
	case !ok:
		return fmt.Errorf("destroying root key version %d: no such version", v)
	case v == s.st.primary:
		return fmt.Errorf("%w: root key version %d is the primary version; rotate first", ErrVersion, v)
	case info.State == keyring.StateDestroyed:
		return s.tok.destroyKey(s.uri.Object, v)
	}
	next := s.st.clone()
	for i := range next.versions {
		if next.versions[i].Version == v {
			next.versions[i].State = keyring.StateDestroyed
		}
	}
	if err := s.writeState(next, true); err != nil {
		return fmt.Errorf("destroying root key version %d in %q: %w", v, s.path, err)
	}
	s.st = next
	delete(s.handles, v)
	// Cached unwraps under v go too: nothing opened by it may outlive it.
	s.c.Purge()
	if err := s.tok.destroyKey(s.uri.Object, v); err != nil {
		return fmt.Errorf("destroying root key version %d in the token: %w", v, err)
	}
	return nil
}
