package keyring

import (
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/testutil/memscan"
)

// letters fills what it reads into with random lower-case letters.
type letters struct{}

func (letters) Read(p []byte) (int, error) {
	if _, err := rand.Read(p); err != nil {
		return 0, err
	}
	for i := range p {
		p[i] = 'a' + p[i]%26
	}
	return len(p), nil
}

// asRunes fills what it reads into (32 bytes) with the first 8 bytes of
// k as runes, little-endian: how a []rune of them lies in memory; or,
// reversed, with its last 8 bytes from the last one back.
type asRunes struct {
	k        secret.Key
	reversed bool
}

func (a asRunes) Read(p []byte) (int, error) {
	err := a.k.Use(func(kb []byte) error {
		for i := range len(p) / 4 {
			b := kb[i]
			if a.reversed {
				b = kb[len(kb)-1-i]
			}
			binary.LittleEndian.PutUint32(p[4*i:], uint32(b))
		}
		return nil
	})
	return len(p), err
}

// TestPolicyLeavesNoCopy: checking a new passphrase leaves no copy of it
// in the process's readable memory once its caller clears its own, as a
// string, or as the runes the policy compares. The passphrase (32 random
// letters, which the policy accepts after looking at every form of it)
// and the runes of its first 8 letters and of its last 8 reversed are
// held in secret.Keys, so the needles themselves are never copied onto
// the heap. Control: copies made
// on purpose the way the policy once made them (a lower-case string, its
// runes) are found by the same scan.
//
// It runs in a child process with asynchronous preemption off
// (memscan.InChild says why).
func TestPolicyLeavesNoCopy(t *testing.T) {
	if !memscan.InChild(t) {
		return
	}
	pass, err := secret.NewFrom(letters{})
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Wipe()
	runes, err := secret.NewFrom(asRunes{k: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer runes.Wipe()
	back, err := secret.NewFrom(asRunes{k: pass, reversed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Wipe()
	own := 0
	if secret.Backing() != "memfd_secret" {
		own = 1 // a key's own slot is readable
	}
	found := func() (int, int) {
		runtime.GC()
		return len(memscan.Copies(t, pass)) - own, len(memscan.Copies(t, runes)) + len(memscan.Copies(t, back)) - 2*own
	}
	if s, r := found(); s != 0 || r != 0 {
		t.Fatalf("before the check: %d copies of the passphrase, %d of its runes", s, r)
	}

	p := make([]byte, secret.KeySize)
	pass.Use(func(kb []byte) error { copy(p, kb); return nil })
	if err := CheckNewPassphrase(p); err != nil {
		t.Fatalf("32 random letters refused: %v", err)
	}
	clear(p)
	if s, r := found(); s != 0 || r != 0 {
		t.Fatalf("after the check: %d copies of the passphrase, %d of its runes", s, r)
	}

	// The control.
	pass.Use(func(kb []byte) error { copy(p, kb); return nil })
	lower := strings.ToLower(string(p))
	rs := []rune(lower)
	clear(p)
	s, r := found()
	runtime.KeepAlive(lower)
	if s < 1 || r < 1 {
		t.Fatalf("control: copies made on purpose found as %d (string) and %d (runes), want 1 or more each", s, r)
	}
	slices.Reverse(rs)
	_, r2 := found()
	clear(rs)
	if r2 < 1 {
		t.Fatal("control: the runes reversed on purpose are not found")
	}
}
