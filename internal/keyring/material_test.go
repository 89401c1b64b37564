package keyring

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// Export then CreateFromMaterial makes a keyring with the same versions,
// states, primary, freshness and keys, under another passphrase: a record
// wrapped by the first opens under the second.
func TestExportCreateFromMaterial(t *testing.T) {
	k, _ := newKeyring(t)
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := k.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if err := k.SetFreshness(Freshness{Sequence: 4, Hash: [32]byte{4}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dk, _ := secret.New()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: k.Repo(), KEKVersion: 2, KeyVersion: 1}
	ad3 := ad
	ad3.KEKVersion = 3
	w3, err := k.Wrap(ctx, 3, ad3, dk)
	if err != nil {
		t.Fatal(err)
	}
	m, err := k.Export()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	path := filepath.Join(t.TempDir(), "restored")
	r, err := CreateFromMaterial(path, []byte("another passphrase"), Calibrate(0), m)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// A refused second restore to the same path (positive control above).
	if _, err := CreateFromMaterial(path, []byte("x"), Calibrate(0), m); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over an existing keyring: %v", err)
	}
	r, err = Open(path, []byte("another passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Repo() != k.Repo() || r.Primary() != 3 {
		t.Fatalf("repo/primary: %x %d", r.Repo(), r.Primary())
	}
	a, b := k.Versions(), r.Versions()
	if len(a) != len(b) {
		t.Fatalf("versions %v vs %v", a, b)
	}
	for i := range a {
		if a[i].Version != b[i].Version || a[i].State != b[i].State || !a[i].Created.Equal(b[i].Created) {
			t.Fatalf("version %d: %+v vs %+v", i, a[i], b[i])
		}
	}
	if f, ok := r.Freshness(); !ok || f.Sequence != 4 || f.Hash != [32]byte{4} {
		t.Fatalf("freshness %+v %v", f, ok)
	}
	got, err := r.Unwrap(ctx, w3, ad3)
	if err != nil || !got.Equal(dk) {
		t.Fatalf("unwrap under the restored keyring: %v", err)
	}
	// The exported keys are copies: wiping them leaves the keyring whole.
	m.Wipe()
	if _, err := k.Unwrap(ctx, w3, ad3); err != nil {
		t.Fatalf("export wiped the keyring's keys: %v", err)
	}
}

// Material that breaks the keyring's rules is refused before anything is
// written.
func TestCreateFromMaterialRefusesInvalid(t *testing.T) {
	k, _ := newKeyring(t)
	m, err := k.Export()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	dir := t.TempDir()
	if _, err := CreateFromMaterial(filepath.Join(dir, "ok"), testPass, Calibrate(0), m); err != nil {
		t.Fatalf("control: %v", err)
	}
	bad := m
	bad.Primary = 9
	if _, err := CreateFromMaterial(filepath.Join(dir, "bad"), testPass, Calibrate(0), bad); err == nil {
		t.Fatal("material without its primary accepted")
	}
	if _, err := CreateFromMaterial(filepath.Join(dir, "empty"), nil, Calibrate(0), m); !errors.Is(err, ErrEmptyPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
}
