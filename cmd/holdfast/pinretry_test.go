package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/testutil/softhsm"
)

// TestReopenDoesNotRetryARefusedPIN: the unseal a sealed serve retries at
// every posture check opens the token with the PIN file; once the token
// refused that PIN, the same file is not tried again (a real token locks
// its PIN after a few wrong ones), and the refusal says so. Control: the
// file rewritten with the right PIN is tried at the next attempt and
// opens the token.
func TestReopenDoesNotRetryARefusedPIN(t *testing.T) {
	k := newKSEnv(t)
	home, h := k.tokenHome("pin-token")
	t.Setenv("SOFTHSM2_CONF", h.Conf) // this process opens the token too

	pinFile := filepath.Join(k.dir, "pin")
	if err := os.WriteFile(pinFile, []byte("wrong-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{stdin: strings.NewReader(""), stdout: os.Stderr, stderr: os.Stderr, pinFile: pinFile}
	reopen := e.reopenKeyring(home)
	_, err := reopen()
	if !errors.Is(err, hsm.ErrWrongPIN) || strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("first attempt with a wrong PIN: %v (want the token's refusal)", err)
	}
	_, err = reopen()
	if !errors.Is(err, hsm.ErrWrongPIN) || !strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("second attempt with the same file: %v (want it not tried)", err)
	}
	// The right PIN, written into the file: tried, and the token opens.
	if err := os.WriteFile(pinFile, []byte(softhsm.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second) // a change time the stamp sees even on a coarse clock
	if err := os.Chtimes(pinFile, now, now); err != nil {
		t.Fatal(err)
	}
	src, err := reopen()
	if err != nil {
		t.Fatalf("after the PIN file was corrected: %v", err)
	}
	if c, ok := src.(interface{ Close() error }); ok {
		c.Close()
	}
}
