package hsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestAddAndDestroyRootKey: a rotation ceremony's key becomes version 2,
// primary, while version 1 still unwraps what it wrapped; destroying
// version 1 removes its object from the token (a reopened source cannot
// unwrap under it, the control being version 2's record), and the primary
// cannot be destroyed.
func TestAddAndDestroyRootKey(t *testing.T) {
	s, u, path := testSource(t, Options{CacheTTL: time.Minute})
	ctx := context.Background()
	dk, _ := secret.New()
	w1, err := s.Wrap(ctx, 1, bucketAD(1), dk)
	if err != nil {
		t.Fatal(err)
	}
	if s.NextVersion() != 2 {
		t.Fatalf("next version %d", s.NextVersion())
	}
	k2, _ := secret.New()
	defer k2.Wipe()
	r2 := keyring.RootMaterial{Info: keyring.RootKeyInfo{Version: 2, Created: time.Now().UTC().Truncate(time.Second), State: keyring.StateActive}, Key: k2}
	if err := s.AddRootKey(r2); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRootKey(r2); !errors.Is(err, ErrVersion) {
		t.Fatalf("adding version 2 twice: %v", err)
	}
	if s.Primary() != 2 {
		t.Fatalf("primary %d after adding version 2", s.Primary())
	}
	w2, err := s.Wrap(ctx, 2, bucketAD(2), dk)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		w  keys.Wrapped
		ad keys.AD
	}{{w1, bucketAD(1)}, {w2, bucketAD(2)}} {
		if got, err := s.Unwrap(ctx, c.w, c.ad); err != nil || !got.Equal(dk) {
			t.Fatalf("v%d unwrap after the rotation: %v", c.w.KEKVersion, err)
		}
	}
	if err := s.Destroy(2); !errors.Is(err, ErrVersion) {
		t.Fatalf("destroying the primary: %v", err)
	}
	if err := s.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unwrap(ctx, w1, bucketAD(1)); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("v1 unwrap after destroy (cache purged): %v", err)
	}
	if err := s.Destroy(1); err != nil {
		t.Fatalf("destroying again: %v", err)
	}
	s.Close()

	// A new process: the state says v1 destroyed, and the token has no
	// object for it; v2 opens.
	s2, err := Open(path, u, []byte("1234"), Options{CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Unwrap(ctx, w1, bucketAD(1)); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("v1 unwrap in a new process: %v", err)
	}
	if got, err := s2.Unwrap(ctx, w2, bucketAD(2)); err != nil || !got.Equal(dk) {
		t.Fatalf("v2 unwrap in a new process: %v", err)
	}
	if _, err := s2.tok.findKey(u.Object, 1); !errors.Is(err, ErrNoKey) {
		t.Fatalf("v1's object is still in the token: %v", err)
	}
}
