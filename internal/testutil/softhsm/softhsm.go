// Package softhsm sets up SoftHSM2 tokens for tests: a private token
// directory and configuration file (SOFTHSM2_CONF) per test, and tokens
// made and deleted with softhsm2-util. scripts/test.sh installs softhsm2;
// a test that finds it missing fails: it does not skip.
//
// The PINs are fixed test values; softhsm2-util takes them on its command
// line, which is acceptable only because these tokens hold test keys.
package softhsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Module is the SoftHSM2 PKCS#11 module Debian installs.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Test PINs.
const (
	PIN   = "1234"
	SOPIN = "12345678"
)

// Env is a SoftHSM2 configuration in a temporary directory.
type Env struct {
	Dir  string // holds softhsm2.conf and tokens/
	Conf string // the SOFTHSM2_CONF path
}

// Setup makes a token directory and configuration in t's temporary
// directory and points SOFTHSM2_CONF at it for the test (t.Setenv: the
// test cannot be parallel).
func Setup(t testing.TB) *Env {
	t.Helper()
	e, err := NewEnv(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", e.Conf)
	return e
}

// NewEnv makes a token directory and configuration under dir, without
// touching the process environment (script tests pass Conf to their
// commands themselves). It fails when SoftHSM2 is not installed.
func NewEnv(dir string) (*Env, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf")}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := os.WriteFile(e.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// Available reports why SoftHSM2 cannot be used, or nil.
func Available() error {
	if _, err := os.Stat(Module); err != nil {
		return fmt.Errorf("SoftHSM2 is not installed (%s missing; apt-get install softhsm2, as scripts/test.sh does): %w", Module, err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return fmt.Errorf("softhsm2-util is not installed (apt-get install softhsm2): %w", err)
	}
	return nil
}

// InitToken makes a token labelled label in a free slot, with the test
// PINs.
func (e *Env) InitToken(label string) error {
	return e.util("--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
}

// DeleteToken deletes the token labelled label and everything on it.
func (e *Env) DeleteToken(label string) error {
	return e.util("--delete-token", "--token", label)
}

func (e *Env) util(args ...string) error {
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util %s: %w: %s", args[0], err, out)
	}
	return nil
}

// Token makes a fresh token for t and returns its PKCS#11 URI for an
// object label (RFC 7512, as holdfast reads it).
func (e *Env) Token(t testing.TB, label, object string) string {
	t.Helper()
	if err := e.InitToken(label); err != nil {
		t.Fatal(err)
	}
	return URI(label, object)
}

// URI is the PKCS#11 URI of object on token label in the SoftHSM2 module.
func URI(label, object string) string {
	return "pkcs11:token=" + label + ";object=" + object + "?module-path=" + Module
}
