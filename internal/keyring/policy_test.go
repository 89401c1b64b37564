package keyring

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckNewPassphrase(t *testing.T) {
	for _, c := range []struct {
		pass   string
		reason string // "" accepted, else what the refusal says
	}{
		// Length, in characters: each refusal has a control beside it that
		// differs only in what is refused.
		{"a", "has 1 character;"},
		{"quiet-ferns-ra", "has 14 characters"},
		{"quiet-ferns-ran", ""},
		{"żółw-źdźbło-łą", "has 14 characters"}, // 23 bytes, 14 characters
		{"żółw-źdźbło-łąk", ""},
		// Not UTF-8: counted in bytes, each invalid byte one character
		// (U+FFFD), so 15 of them are one character used 15 times.
		{strings.Repeat("\xff", 15), "only 1 different"},
		{"\xffquiet-ferns-r", "has 14 characters"},
		{"\xffquiet-ferns-ra", ""},
		// Few different characters, or one part repeated.
		{"aaaaaaaaaaaaaaa", "only 1 different"},
		{"abababababababab", "only 2 different"},
		{"lanternlanternlantern", "repeated"},
		{"lantern lantern lantern", "repeated"},
		{"lantern meadow lantern", ""},
		// Runs along the alphabet, the digits, a keyboard row.
		{"abcdefghijklmnop", "run along"},
		{"123456789012345", "run along"},
		{"1234-5678-9012-345!!", "run along"},
		{"543210987654321", "run along"},
		{"qwertyuiopasdfgh", "run along"},
		{"1q2w3e4r5t6y7u8i", "run along"},
		{"184-9302-7716-55!", ""}, // digits, but not a run
		// Common password words with digits and symbols around them.
		{"Password2026!!!", "common password words"},
		{"p@ssw0rd-2026-0601", "common password words"},
		{"P@ssw0rdP@ssw0rd!", "common password words"},
		{"holdfast holdfast 2026", "common password words"},
		{"correct horse battery staple", "common password words"},
		{"Password2026 heron!", ""},
		{"correct horse battery stable", ""},
		// Ordinary strong ones.
		{"tidal ochre lantern vote", ""},
		{"Meine Katze schläft gern am Ofen", ""},
	} {
		t.Run(c.pass, func(t *testing.T) {
			err := CheckNewPassphrase([]byte(c.pass))
			if c.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrWeakPassphrase) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("got %v, want a refusal saying %q", err, c.reason)
			}
			for _, part := range strings.FieldsFunc(c.pass, func(r rune) bool { return r == ' ' || r == '-' }) {
				if utf8.RuneCountInString(part) >= 3 && strings.Contains(err.Error(), part) {
					t.Fatalf("error %q shows part of the passphrase (%q)", err, part)
				}
			}
		})
	}
}

// A new passphrase is held to the policy from every source; one being
// typed is refused before it is asked again. An existing passphrase (not
// New) is read as it is, however weak: keyrings made before the policy
// still open.
func TestNewPassphrasePolicySources(t *testing.T) {
	const weakPass, strongPass = "hunter2", "tidal ochre lantern vote"
	for _, c := range []struct {
		name    string
		opts    func(t *testing.T) PassphraseOptions
		env     map[string]string
		answers []string
		wantErr bool
		from    string // where the refusal says it came from
		prompts int
	}{
		{"environment, weak", func(*testing.T) PassphraseOptions { return PassphraseOptions{New: true} },
			map[string]string{PassphraseEnv: weakPass}, nil, true, PassphraseEnv, 0},
		{"environment, strong", func(*testing.T) PassphraseOptions { return PassphraseOptions{New: true} },
			map[string]string{PassphraseEnv: strongPass}, nil, false, "", 0},
		{"environment, weak, not new", func(*testing.T) PassphraseOptions { return PassphraseOptions{} },
			map[string]string{PassphraseEnv: weakPass}, nil, false, "", 0},
		{"file, weak", func(t *testing.T) PassphraseOptions {
			return PassphraseOptions{New: true, File: writePassFile(t, weakPass+"\n", 0o600)}
		}, nil, nil, true, "passphrase file", 0},
		{"file, strong", func(t *testing.T) PassphraseOptions {
			return PassphraseOptions{New: true, File: writePassFile(t, strongPass+"\n", 0o600)}
		}, nil, nil, false, "", 0},
		{"terminal, weak: not asked twice", func(*testing.T) PassphraseOptions { return PassphraseOptions{New: true} },
			nil, []string{weakPass, weakPass}, true, "the terminal", 1},
		{"terminal, strong", func(*testing.T) PassphraseOptions { return PassphraseOptions{New: true} },
			nil, []string{strongPass, strongPass}, false, "", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var prompts []string
			ask := noTerminal
			if c.answers != nil {
				ask = answers(&prompts, c.answers...)
			}
			got, err := readPassphrase(c.opts(t), env(c.env), ask)
			if len(prompts) != c.prompts {
				t.Fatalf("%d prompts %q, want %d", len(prompts), prompts, c.prompts)
			}
			if !c.wantErr {
				if err != nil || len(got) == 0 {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrWeakPassphrase) || got != nil {
				t.Fatalf("got %q, %v; want a refusal", got, err)
			}
			if !strings.Contains(err.Error(), c.from) || !strings.Contains(err.Error(), "at least 15") {
				t.Fatalf("refusal %q does not say where the passphrase came from (%s) and what is needed", err, c.from)
			}
			if strings.Contains(err.Error(), weakPass) {
				t.Fatalf("refusal %q shows the passphrase", err)
			}
		})
	}
}
