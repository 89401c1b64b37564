package keyring

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// env returns a lookup function over a fixed environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// answers returns a prompter that gives the answers in order and records
// the prompts.
func answers(prompts *[]string, as ...string) prompter {
	return func(p string) ([]byte, error) {
		*prompts = append(*prompts, p)
		if len(as) == 0 {
			return nil, errors.New("unexpected prompt")
		}
		a := as[0]
		as = as[1:]
		return []byte(a), nil
	}
}

func noTerminal(string) ([]byte, error) { return nil, errNoTerminal }

func writePassFile(t *testing.T, content string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPassphraseFile(t *testing.T) {
	for _, c := range []struct {
		name    string
		content string
		mode    fs.FileMode
		want    string // passphrase, or "" for an error
		errHas  string
	}{
		{"control: 0600 with newline", "hunter2\n", 0o600, "hunter2", ""},
		{"0400", "hunter2\n", 0o400, "hunter2", ""},
		{"readable by group", "hunter2\n", 0o640, "", "readable by group or other"},
		{"readable by other", "hunter2\n", 0o604, "", "readable by group or other"},
		{"writable by group only", "hunter2\n", 0o620, "hunter2", ""},
		{"no trailing newline", "hunter2", 0o600, "hunter2", ""},
		{"crlf", "hunter2\r\n", 0o600, "hunter2", ""},
		{"only the first line", "hunter2\nsecond line\n", 0o600, "hunter2", ""},
		{"spaces kept", "  two words  \n", 0o600, "  two words  ", ""},
		{"empty file", "", 0o600, "", "empty"},
		{"empty first line", "\nhunter2\n", 0o600, "", "empty"},
		{"too long", strings.Repeat("x", maxPassphraseLen+1), 0o600, "", "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writePassFile(t, c.content, c.mode)
			// The file wins over the environment and the terminal.
			got, err := readPassphrase(PassphraseOptions{File: path},
				env(map[string]string{PassphraseEnv: "from env"}), noTerminal)
			if c.want != "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != c.want {
					t.Fatalf("got %q, want %q", got, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("got %v, want an error containing %q", err, c.errHas)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q shows the passphrase", err)
			}
		})
	}
	if _, err := readPassphrase(PassphraseOptions{File: filepath.Join(t.TempDir(), "missing")}, env(nil), noTerminal); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestPassphraseSources(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    PassphraseOptions
		env     map[string]string
		answers []string // nil: no terminal
		want    string
		wantErr error
		prompts int
	}{
		{"environment", PassphraseOptions{}, map[string]string{PassphraseEnv: "env pass"}, []string{"tty pass"}, "env pass", nil, 0},
		{"environment set but empty", PassphraseOptions{}, map[string]string{PassphraseEnv: ""}, []string{"tty pass"}, "", ErrEmptyPassphrase, 0},
		{"terminal", PassphraseOptions{}, nil, []string{"tty pass"}, "tty pass", nil, 1},
		{"terminal, confirmed", PassphraseOptions{New: true}, nil, []string{"tty pass of good length", "tty pass of good length"}, "tty pass of good length", nil, 2},
		{"terminal, confirmation differs", PassphraseOptions{New: true}, nil, []string{"tty pass of good length", "tty pasz of good length"}, "", errors.New("do not match"), 2},
		{"terminal, empty", PassphraseOptions{New: true}, nil, []string{""}, "", ErrEmptyPassphrase, 1},
		{"no source at all", PassphraseOptions{}, nil, nil, "", ErrNoPassphrase, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var prompts []string
			ask := noTerminal
			if c.answers != nil {
				ask = answers(&prompts, c.answers...)
			}
			got, err := readPassphrase(c.opts, env(c.env), ask)
			if len(prompts) != c.prompts {
				t.Fatalf("%d prompts %q, want %d", len(prompts), prompts, c.prompts)
			}
			if c.wantErr == nil {
				if err != nil || string(got) != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || (!errors.Is(err, c.wantErr) && !strings.Contains(err.Error(), c.wantErr.Error())) {
				t.Fatalf("got %v, want %v", err, c.wantErr)
			}
			if strings.Contains(err.Error(), "tty pas") {
				t.Fatalf("error %q shows the passphrase", err)
			}
		})
	}
}

func TestNoPassphraseSourceSaysHow(t *testing.T) {
	_, err := readPassphrase(PassphraseOptions{}, env(nil), noTerminal)
	if !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("got %v", err)
	}
	for _, hint := range []string{"--passphrase-file", PassphraseEnv} {
		if !strings.Contains(err.Error(), hint) {
			t.Fatalf("error %q does not mention %s", err, hint)
		}
	}
}
