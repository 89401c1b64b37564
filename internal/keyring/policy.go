package keyring

import (
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"
)

// The policy for a passphrase being chosen (a new keyring, a passphrase
// change, a restore), after NIST SP 800-63B: a minimum length, no
// composition rules, and a refusal of what guessers try first. The
// keyring file is attacked offline once a copy of it is taken — no rate
// limit, only Argon2id's cost per guess — so the floor is the one SP
// 800-63B-4 sets for a password that is the only factor: 15 characters.
// Four or five unrelated words clear it easily. An existing keyring opens
// whatever its passphrase: the policy applies when one is chosen.

// MinPassphraseChars is the fewest characters (Unicode code points; bytes
// if the passphrase is not UTF-8) a new passphrase may have.
const MinPassphraseChars = 15

// minDistinctChars is the fewest different characters a new passphrase
// may use ("aaaaaaaaaaaaaab" is long but not strong).
const minDistinctChars = 5

// ErrWeakPassphrase: a passphrase being chosen was refused by the policy
// (CheckNewPassphrase); the error is a *WeakPassphraseError.
var ErrWeakPassphrase = errors.New("passphrase too weak")

// WeakPassphraseError says why a new passphrase was refused, in terms of
// length and shape only: it never holds the passphrase or a part of it.
type WeakPassphraseError struct {
	Reason string // "it has 6 characters; …"
	From   string // where it came from ("HOLDFAST_PASSPHRASE"), or ""
}

func (e *WeakPassphraseError) Error() string {
	if e.From == "" {
		return "passphrase too weak: " + e.Reason
	}
	return "the new passphrase from " + e.From + " is too weak: " + e.Reason
}

func (e *WeakPassphraseError) Is(target error) bool { return target == ErrWeakPassphrase }

func weak(f string, a ...any) error { return &WeakPassphraseError{Reason: fmt.Sprintf(f, a...)} }

// commonWords are what common passwords are built from (lists of breached
// passwords are dominated by them), the product's own name among them:
// a new passphrase made only of these, with digits or symbols around
// them, is refused. They are compared with letters only, lower case.
var commonWords = []string{
	"password", "passwort", "passwd", "passphrase", "pass", "word", "motdepasse", "contrasena", "senha", "wachtwoord",
	"holdfast", "keyring", "secret", "private", "admin", "administrator", "root", "login", "user", "default", "changeme",
	"welcome", "letmein", "iloveyou", "love", "trustno", "hello", "test", "testing", "qwerty", "qwertz", "azerty", "asdf",
	"zxcv", "abc", "dragon", "monkey", "master", "shadow", "sunshine", "princess", "football", "baseball", "soccer",
	"superman", "batman", "starwars", "freedom", "whatever", "michael", "jordan", "computer", "internet", "secure",
	"security", "backup", "storage", "cloud", "correcthorsebatterystaple", "thequickbrownfoxjumpsoverthelazydog",
}

// walks are keyboard rows and sequences: a new passphrase that is a run
// along one (either way) is refused.
var walks = []string{
	"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
	"01234567890123456789012345678901234567890123456789",
	"qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
	"qwertzuiopasdfghjklyxcvbnmqwertzuiopasdfghjklyxcvbnm",
	"azertyuiopqsdfghjklmwxcvbnazertyuiopqsdfghjklmwxcvbn",
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
	"1q2w3e4r5t6y7u8i9o0p",
	"q1w2e3r4t5y6u7i8o9p0",
	"zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p;/-[",
	"qazwsxedcrfvtgbyhnujmikolp",
	"!@#$%^&*()_+!@#$%^&*()_+",
}

// leet maps the symbols that stand for letters in "p@ssw0rd".
var leet = map[rune]rune{'@': 'a', '4': 'a', '8': 'b', '3': 'e', '6': 'g', '1': 'i', '!': 'i', '0': 'o', '$': 's', '5': 's', '7': 't', '+': 't'}

// CheckNewPassphrase returns nil if p may be chosen as a keyring
// passphrase, else a *WeakPassphraseError (errors.Is ErrWeakPassphrase)
// that says why in terms of length and shape only: it never contains p or
// any part of it.
//
// It refuses a passphrase that
//   - has fewer than MinPassphraseChars characters;
//   - uses fewer than 5 different characters, or repeats one shorter part;
//   - is a run along the alphabet, the digits or a keyboard row;
//   - once digits and symbols are set aside (and those standing for
//     letters read as letters), is made only of common password words
//     ("Password2026!!!", "p@ssw0rdp@ssw0rd", "holdfast-holdfast").
//
// Every form of p it looks at (lower case, without separators, letters
// only, reversed) is a rune slice of its own, cleared before it returns:
// no string copy of the passphrase is left for the collector, which never
// clears what it frees (TestPolicyLeavesNoCopy).
func CheckNewPassphrase(p []byte) error {
	var made [][]rune
	keep := func(rs []rune) []rune { made = append(made, rs); return rs }
	defer func() {
		for _, rs := range made {
			clear(rs)
		}
	}()
	n := len(p)
	if utf8.Valid(p) {
		n = utf8.RuneCount(p)
	}
	if n < MinPassphraseChars {
		return weak("it has %d %s; a keyring passphrase needs at least %d", n, plural(n, "character"), MinPassphraseChars)
	}
	// The characters of p in lower case; an invalid UTF-8 byte reads as
	// U+FFFD, as ranging over a string does.
	lower := make([]rune, 0, len(p)) // never grown: no more runes than bytes
	for b := p; len(b) > 0; {
		r, size := utf8.DecodeRune(b)
		lower = append(lower, unicode.ToLower(r))
		b = b[size:]
	}
	keep(lower)
	if d := distinct(keep(slices.Clone(lower))); d < minDistinctChars {
		return weak("it uses only %d different %s; a keyring passphrase needs at least %d", d, plural(d, "character"), minDistinctChars)
	}
	// Repeats and runs count with separators left out; runs also with
	// every symbol left out ("123456789012345!!").
	bare := keep(filter(lower, func(r rune) bool { return !unicode.IsSpace(r) && r != '-' && r != '_' && r != '.' }))
	alnum := keep(filter(lower, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }))
	if repeats(lower) || repeats(bare) {
		return weak("it is one shorter part repeated")
	}
	for _, run := range [][]rune{bare, alnum} {
		if len(run) < 4 {
			continue
		}
		back := keep(slices.Clone(run))
		slices.Reverse(back)
		for _, w := range walkRunes {
			if contains(w, run) || contains(w, back) {
				return weak("it is a run along the alphabet, the digits or a keyboard row")
			}
		}
	}
	for deleet := range 3 {
		if letters := keep(lettersOnly(lower, deleet)); len(letters) > 0 && onlyCommonWords(letters) {
			return weak("it is made of common password words, digits and symbols, which are guessed first")
		}
	}
	return nil
}

func plural(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}

// distinct counts the different runes of rs, which it sorts.
func distinct(rs []rune) int {
	slices.Sort(rs)
	return len(slices.Compact(rs))
}

// filter returns the runes of rs that keep accepts, in a new slice.
func filter(rs []rune, keep func(rune) bool) []rune {
	out := make([]rune, 0, len(rs))
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// repeats reports whether rs is a shorter run repeated ("abcabcabc…").
func repeats(rs []rune) bool {
	for unit := 1; unit <= len(rs)/2; unit++ {
		if len(rs)%unit != 0 {
			continue
		}
		same := true
		for i := unit; i < len(rs) && same; i++ {
			same = rs[i] == rs[i-unit]
		}
		if same {
			return true
		}
	}
	return false
}

// walkRunes are the walks as runes, and commonRunes the common words.
var walkRunes, commonRunes = runesOf(walks), runesOf(commonWords)

func runesOf(ss []string) [][]rune {
	out := make([][]rune, len(ss))
	for i, s := range ss {
		out[i] = []rune(s)
	}
	return out
}

// contains reports whether run occurs in w.
func contains(w, run []rune) bool {
	for i := 0; i+len(run) <= len(w); i++ {
		if slices.Equal(w[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// lettersOnly keeps the letters of rs, in a new slice; a symbol that
// stands for a letter counts as that letter when at least deleet (1 or 2)
// of its neighbours are letters (0: never).
func lettersOnly(rs []rune, deleet int) []rune {
	isLetter := func(i int) int {
		if i >= 0 && i < len(rs) && unicode.IsLetter(rs[i]) {
			return 1
		}
		return 0
	}
	out := make([]rune, 0, len(rs))
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r):
			out = append(out, r)
		case deleet > 0 && leet[r] != 0 && isLetter(i-1)+isLetter(i+1) >= deleet:
			out = append(out, leet[r])
		}
	}
	return out
}

// onlyCommonWords reports whether rs is a concatenation of commonWords.
func onlyCommonWords(rs []rune) bool {
	ok := make([]bool, len(rs)+1) // ok[i]: rs[:i] is made of common words
	ok[0] = true
	for i := 1; i <= len(rs); i++ {
		for _, w := range commonRunes {
			if len(w) <= i && ok[i-len(w)] && slices.Equal(rs[i-len(w):i], w) {
				ok[i] = true
				break
			}
		}
	}
	return ok[len(rs)]
}
