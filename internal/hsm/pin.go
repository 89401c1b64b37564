package hsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/holdfast/holdfast/internal/secret"
)

// PINEnv is the environment variable ReadPIN consults when no PIN file is
// given.
const PINEnv = "HOLDFAST_PKCS11_PIN"

// ErrNoPIN: no PIN source is available (no file, no environment
// variable, no terminal).
var ErrNoPIN = errors.New("no PKCS#11 PIN available")

// ReadPIN returns the token's user PIN from, in order: file (its first
// line; a file readable by group or other is refused), the
// HOLDFAST_PKCS11_PIN environment variable, or a prompt on /dev/tty
// without echo. Never from argv. The caller clears the result.
func ReadPIN(file, token string) ([]byte, error) {
	return readPIN(file, token, secret.LookupEnv, promptTTY)
}

func readPIN(file, token string, lookupEnv func(string) (string, bool), ask func(string) ([]byte, error)) ([]byte, error) {
	if file != "" {
		return readPINFile(file)
	}
	if v, ok := lookupEnv(PINEnv); ok {
		if v == "" {
			return nil, fmt.Errorf("%s is set but empty", PINEnv)
		}
		return []byte(v), nil
	}
	p, err := ask(fmt.Sprintf("PIN for PKCS#11 token %q: ", token))
	if errors.Is(err, errNoTTY) {
		return nil, fmt.Errorf("%w: no terminal to ask on; use --pin-file FILE (mode 0600, PIN on the first line) or set %s", ErrNoPIN, PINEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the PIN from the terminal: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty PIN")
	}
	return p, nil
}

var errNoTTY = errors.New("no terminal")

func promptTTY(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoTTY
	}
	defer tty.Close()
	fd := int(tty.Fd())
	if !term.IsTerminal(fd) {
		return nil, errNoTTY
	}
	if _, err := io.WriteString(tty, prompt); err != nil {
		return nil, err
	}
	p, err := term.ReadPassword(fd)
	io.WriteString(tty, "\n")
	return p, err
}

func readPINFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading PIN file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading PIN file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		return nil, fmt.Errorf("PIN file %q is readable by group or other (mode %04o); restrict it with: chmod 600 %q", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("reading PIN file %q: %w", path, err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("first line of PIN file %q is empty", path)
	}
	return bytes.Clone(line), nil
}
