package secret

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestKeyIsNeverPrinted(t *testing.T) {
	b := bytes.Repeat([]byte{0xAB}, KeySize)
	k, err := FromBytes(bytes.Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	type holder struct{ K Key }
	for _, s := range []string{
		fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k),
		fmt.Sprint(k), fmt.Sprintf("%v", holder{k}), fmt.Sprintf("%#v", holder{k}),
	} {
		if strings.Contains(strings.ToLower(s), "abab") || strings.Contains(s, "171, 171") || strings.Contains(s, "0xab") {
			t.Fatalf("key bytes visible in %q", s)
		}
	}
	// Positive control: the material is really there.
	if err := k.Use(func(got []byte) error {
		if !bytes.Equal(got, b) {
			return fmt.Errorf("material differs")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestFromBytesWipesInput(t *testing.T) {
	b := bytes.Repeat([]byte{7}, KeySize)
	if _, err := FromBytes(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, KeySize)) {
		t.Fatal("input not wiped")
	}
	if _, err := FromBytes(make([]byte, 31)); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestWipeAndEqual(t *testing.T) {
	a, _ := New()
	b, _ := New()
	c := a
	if !a.Equal(c) || a.Equal(b) {
		t.Fatal("Equal wrong")
	}
	a.Wipe()
	if c.Valid() || c.Equal(c) {
		t.Fatal("wiped key still usable through a copy")
	}
	if err := c.Use(func([]byte) error { return nil }); err != ErrWiped {
		t.Fatalf("Use after wipe: %v", err)
	}
	var zero Key
	if zero.Valid() || zero.Use(func([]byte) error { return nil }) != ErrWiped {
		t.Fatal("zero key usable")
	}
}
