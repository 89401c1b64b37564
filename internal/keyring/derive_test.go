package keyring

import (
	"testing"
)

// TestDeriveKey: the same version and purpose give the same key, after
// the keyring is opened again too; another purpose or version gives
// another; a destroyed version and a closed keyring give none.
func TestDeriveKey(t *testing.T) {
	k, path := newKeyring(t)
	a, err := k.DeriveKey(1, "spread-store")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Wipe()
	k2, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	again, err := k2.DeriveKey(1, "spread-store")
	if err != nil || !again.Equal(a) {
		t.Fatalf("derived again after reopening: equal=%v, %v", again.Equal(a), err)
	}
	other, err := k.DeriveKey(1, "another-purpose")
	if err != nil || other.Equal(a) {
		t.Fatalf("another purpose: equal=%v, %v", other.Equal(a), err)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	v2, err := k.DeriveKey(2, "spread-store")
	if err != nil || v2.Equal(a) {
		t.Fatalf("version 2: equal=%v, %v", v2.Equal(a), err)
	}
	// Version 1 still derives after the rotation, until it is destroyed.
	if v1, err := k.DeriveKey(1, "spread-store"); err != nil || !v1.Equal(a) {
		t.Fatalf("version 1 after rotation: %v", err)
	}
	if err := k.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.DeriveKey(1, "spread-store"); err == nil {
		t.Fatal("a destroyed version derived a key")
	}
	if _, err := k.DeriveKey(3, "spread-store"); err == nil {
		t.Fatal("a version that does not exist derived a key")
	}
	if _, err := k.DeriveKey(2, ""); err == nil {
		t.Fatal("an empty purpose derived a key")
	}
	k.Close()
	if _, err := k.DeriveKey(2, "spread-store"); err == nil {
		t.Fatal("a closed keyring derived a key")
	}
}
