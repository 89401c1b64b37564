package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
)

// ErrRotateUnsupported: the key source cannot make a new root key version
// by itself (a PKCS#11 token's key is made by a ceremony).
var ErrRotateUnsupported = errors.New("this key source cannot rotate its root key here")

// RotateRootKey makes a new root key version primary: bucket keys made
// from now on are wrapped under it, while everything wrapped under the
// older versions (now decrypt-only) still opens. It returns the new
// version. Nothing in the store changes.
func (r *Repo) RotateRootKey() (uint32, error) {
	rot, ok := r.kr.(interface{ Rotate() (uint32, error) })
	if !ok {
		return 0, ErrRotateUnsupported
	}
	v, err := rot.Rotate()
	if err != nil {
		return 0, fmt.Errorf("rotating the root key: %w", err)
	}
	return v, nil
}

// RootAdder is a key source that takes a new root key version made
// outside it — a PKCS#11 token, whose keys are made by a ceremony in
// protected memory, split into shares, then imported (docs/keys.md).
type RootAdder interface {
	NextVersion() uint32
	AddRootKey(keyring.RootMaterial) error
}

// RootAdder returns the key source as a RootAdder, or false if it makes
// its own root key versions (the keyring: RotateRootKey).
func (r *Repo) RootAdder() (RootAdder, bool) {
	a, ok := r.kr.(RootAdder)
	return a, ok
}

// AddRootKey makes m, a new root key version made by a rotation ceremony,
// primary in a key source that cannot make one itself.
func (r *Repo) AddRootKey(m keyring.RootMaterial) error {
	a, ok := r.RootAdder()
	if !ok {
		return fmt.Errorf("this key source makes its own root key versions: %w", ErrRotateUnsupported)
	}
	if err := a.AddRootKey(m); err != nil {
		return fmt.Errorf("adding root key version %d: %w", m.Info.Version, err)
	}
	return nil
}

// RotateBucketKey makes a new key version of bucket, wrapped under the
// primary root key, with its journal entry in the store: objects written
// from now on have their data keys wrapped under it, while those written
// before keep theirs, under the older versions, and still read. It
// returns the new version.
func (r *Repo) RotateBucketKey(ctx context.Context, bucket string) (uint32, error) {
	b, err := r.cat.GetBucket(ctx, bucket)
	if errors.Is(err, catalog.ErrNotFound) {
		return 0, fmt.Errorf("bucket %q: %w", bucket, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	bks, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		return 0, err
	}
	next := uint32(1)
	for _, bk := range bks {
		next = max(next, bk.Version+1)
	}
	bk, err := r.newBucketKey(ctx, b, next)
	if err != nil {
		return 0, fmt.Errorf("bucket %q: %w", bucket, err)
	}
	if bk.Version != next {
		// Another process rotated at the same moment; its version is the
		// primary one now.
		return bk.Version, nil
	}
	return next, nil
}

// knowsRootVersion reports whether the key source, as this process read
// it, has root key version v.
func (r *Repo) knowsRootVersion(v uint32) bool {
	for _, i := range r.RootKeyVersions() {
		if i.Version == v {
			return true
		}
	}
	return false
}

// reloadRootKeys reads the key source again (versions another process
// added or destroyed since it was opened).
func (r *Repo) reloadRootKeys() error {
	r.mu.Lock()
	kr := r.kr
	r.mu.Unlock()
	return kr.Reload()
}
