package keyring

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/term"

	"github.com/holdfast/holdfast/internal/secret"
)

// PassphraseEnv is the environment variable ReadPassphrase consults when no
// passphrase file is given.
const PassphraseEnv = "HOLDFAST_PASSPHRASE"

// maxPassphraseLen bounds what is read from a passphrase file.
const maxPassphraseLen = 64 << 10

// ErrNoPassphrase: no passphrase source is available (no file, no
// environment variable, no terminal).
var ErrNoPassphrase = errors.New("no passphrase available")

// errNoTerminal is what a prompter returns when there is no terminal.
var errNoTerminal = errors.New("no terminal")

// PassphraseOptions says where ReadPassphrase may look.
type PassphraseOptions struct {
	// File is the --passphrase-file path, or "" for none. Its first line
	// is the passphrase.
	File string
	// New says the passphrase is being chosen (a new keyring, a restore,
	// a passphrase change): from every source it must pass
	// CheckNewPassphrase, and on a terminal it is asked twice (the
	// second time only once the first passed).
	New bool
	// Prompt is shown on the terminal; "" means "Keyring passphrase: ".
	Prompt string
}

// ReadPassphrase returns the passphrase from, in order of priority:
//
//  1. opts.File: its first line, without the trailing "\n" (or "\r\n").
//     A file readable by group or other is refused.
//  2. the HOLDFAST_PASSPHRASE environment variable.
//  3. a prompt on the controlling terminal (/dev/tty) without echo, asked
//     twice when opts.New is set.
//
// With none of them it fails with ErrNoPassphrase, saying how to provide
// one. An empty passphrase is refused (ErrEmptyPassphrase), and with
// opts.New one that CheckNewPassphrase refuses (ErrWeakPassphrase, naming
// where it came from). The caller
// clears the returned slice when done. Nothing here prints or logs the
// passphrase; the prompt goes to the terminal only.
func ReadPassphrase(opts PassphraseOptions) ([]byte, error) {
	return readPassphrase(opts, secret.LookupEnv, promptTerminal)
}

type prompter func(prompt string) ([]byte, error)

func readPassphrase(opts PassphraseOptions, lookupEnv func(string) (string, bool), ask prompter) ([]byte, error) {
	if opts.File != "" {
		p, err := readPassphraseFile(opts.File)
		if err == nil && opts.New {
			if err = CheckNew(p, fmt.Sprintf("the passphrase file %q", opts.File)); err != nil {
				clear(p)
				return nil, err
			}
		}
		return p, err
	}
	if v, ok := lookupEnv(PassphraseEnv); ok {
		if v == "" {
			return nil, fmt.Errorf("%w: %s is set but empty", ErrEmptyPassphrase, PassphraseEnv)
		}
		p := []byte(v)
		if opts.New {
			if err := CheckNew(p, PassphraseEnv); err != nil {
				clear(p)
				return nil, err
			}
		}
		return p, nil
	}
	prompt := opts.Prompt
	if prompt == "" {
		prompt = "Keyring passphrase: "
	}
	p, err := askOnce(ask, prompt)
	if err != nil || !opts.New {
		return p, err
	}
	// Refused before it is asked again: nothing is typed twice in vain.
	if err := CheckNew(p, "the terminal"); err != nil {
		clear(p)
		return nil, err
	}
	q, err := askOnce(ask, "Confirm passphrase: ")
	if err != nil {
		clear(p)
		return nil, err
	}
	defer clear(q)
	if subtle.ConstantTimeCompare(p, q) != 1 {
		clear(p)
		return nil, errors.New("the passphrases do not match")
	}
	return p, nil
}

func askOnce(ask prompter, prompt string) ([]byte, error) {
	p, err := ask(prompt)
	if errors.Is(err, errNoTerminal) {
		return nil, fmt.Errorf("%w: no terminal to ask on; use --passphrase-file FILE (mode 0600, passphrase on the first line) or set %s", ErrNoPassphrase, PassphraseEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("reading passphrase from the terminal: %w", err)
	}
	if len(p) == 0 {
		return nil, ErrEmptyPassphrase
	}
	return p, nil
}

// promptTerminal asks on /dev/tty, so that the prompt and the answer never
// pass through stdin, stdout or stderr.
func promptTerminal(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoTerminal
	}
	defer tty.Close()
	fd := int(tty.Fd())
	if !term.IsTerminal(fd) {
		return nil, errNoTerminal
	}
	if _, err := io.WriteString(tty, prompt); err != nil {
		return nil, err
	}
	p, err := term.ReadPassword(fd)
	io.WriteString(tty, "\n")
	if err != nil {
		clear(p)
		return nil, err
	}
	return p, nil
}

// readPassphraseFile returns the first line of path.
func readPassphraseFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading passphrase file: %w", err)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o044 != 0 {
		return nil, fmt.Errorf("passphrase file %q is readable by group or other (mode %04o); restrict it with: chmod 600 %q", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPassphraseLen+1))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase file %q: %w", path, err)
	}
	line, _, found := bytes.Cut(b, []byte("\n"))
	if !found && len(b) > maxPassphraseLen {
		return nil, fmt.Errorf("passphrase file %q: first line is longer than %d bytes", path, maxPassphraseLen)
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: first line of passphrase file %q is empty", ErrEmptyPassphrase, path)
	}
	return bytes.Clone(line), nil
}

// CheckNew is CheckNewPassphrase with where the passphrase came from
// (a file, an environment variable, the terminal) in the error. On
// refusal the caller still owns, and clears, p.
func CheckNew(p []byte, from string) error {
	err := CheckNewPassphrase(p)
	var we *WeakPassphraseError
	if errors.As(err, &we) {
		we.From = from
	}
	return err
}
