package keyshare

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// testMaterial: three versions (1 destroyed, 2 decrypt-only, 3 primary)
// and a freshness record.
func testMaterial(t testing.TB) keyring.Material {
	t.Helper()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := keyring.Material{Repo: keys.ID{1, 2, 3, 4, 5}, Primary: 3, HasFresh: true,
		Fresh: keyring.Freshness{Sequence: 7, Hash: [32]byte{9, 9}, Time: now}}
	m.Roots = append(m.Roots, keyring.RootMaterial{Info: keyring.RootKeyInfo{Version: 1, Created: now, State: keyring.StateDestroyed}})
	for _, v := range []struct {
		ver uint32
		st  keyring.State
	}{{2, keyring.StateDecryptOnly}, {3, keyring.StateActive}} {
		k, err := secret.New()
		if err != nil {
			t.Fatal(err)
		}
		m.Roots = append(m.Roots, keyring.RootMaterial{Info: keyring.RootKeyInfo{Version: v.ver, Created: now, State: v.st}, Key: k})
	}
	t.Cleanup(m.Wipe)
	return m
}

func sameMaterial(t *testing.T, a, b keyring.Material) {
	t.Helper()
	if a.Repo != b.Repo || a.Primary != b.Primary || a.HasFresh != b.HasFresh || a.Fresh.Sequence != b.Fresh.Sequence ||
		a.Fresh.Hash != b.Fresh.Hash || !a.Fresh.Time.Equal(b.Fresh.Time) || len(a.Roots) != len(b.Roots) {
		t.Fatalf("material differs: %+v vs %+v", a, b)
	}
	for i := range a.Roots {
		ra, rb := a.Roots[i], b.Roots[i]
		if ra.Info.Version != rb.Info.Version || ra.Info.State != rb.Info.State || !ra.Info.Created.Equal(rb.Info.Created) {
			t.Fatalf("version %d differs", ra.Info.Version)
		}
		if ra.Key.Valid() != rb.Key.Valid() || ra.Key.Valid() && !ra.Key.Equal(rb.Key) {
			t.Fatalf("version %d: material differs", ra.Info.Version)
		}
	}
}

func parseAll(t *testing.T, texts [][]byte) []Share {
	t.Helper()
	var out []Share
	for i, tx := range texts {
		s, err := Parse("share"+string(rune('1'+i)), tx)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// Backup 5/3: every 3-subset restores the material; every 2-subset fails
// with a clear error.
func TestBackupFiveThree(t *testing.T) {
	m := testMaterial(t)
	_, texts, err := Split(keys.SourceKeyring, m, 5, 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	shares := parseAll(t, texts)
	subsets3, subsets2 := 0, 0
	for a := range 5 {
		for b := a + 1; b < 5; b++ {
			_, _, err := Combine([]Share{shares[a], shares[b]})
			if !errors.Is(err, ErrTooFewShares) || !strings.Contains(err.Error(), "needs 3 of its 5 shares, got 2") {
				t.Errorf("shares %d,%d: %v", a+1, b+1, err)
			}
			subsets2++
			for c := b + 1; c < 5; c++ {
				src, got, err := Combine([]Share{shares[b], shares[c], shares[a]})
				if err != nil {
					t.Fatalf("shares %d,%d,%d: %v", a+1, b+1, c+1, err)
				}
				if src != keys.SourceKeyring {
					t.Errorf("source %d", src)
				}
				sameMaterial(t, m, got)
				got.Wipe()
				subsets3++
			}
		}
	}
	if subsets3 != 10 || subsets2 != 10 {
		t.Fatalf("%d and %d subsets", subsets3, subsets2)
	}
	// All five work too.
	if _, got, err := Combine(shares); err != nil {
		t.Fatal(err)
	} else {
		got.Wipe()
	}
}

// A changed digit anywhere in a share is caught by its checksum, and the
// error names the file and the checksum the file shows.
func TestCorruptShareNamed(t *testing.T) {
	m := testMaterial(t)
	sh, texts, err := Split(keys.SourceKeyring, m, 5, 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Positive control: the untouched file parses.
	if _, err := Parse("share-2.txt", texts[1]); err != nil {
		t.Fatal(err)
	}
	sum := sh[1].Checksum
	i := bytes.Index(texts[1], []byte("data:\n  ")) + len("data:\n  ") + 3
	bad := bytes.Clone(texts[1])
	if bad[i] == 'a' {
		bad[i] = 'b'
	} else {
		bad[i] = 'a'
	}
	_, err = Parse("share-2.txt", bad)
	if !errors.Is(err, ErrCorruptShare) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), "share-2.txt") {
		t.Fatalf("corrupt share: %v (want it named by checksum %s)", err, sum)
	}
	// A changed metadata field is caught as well.
	bad = bytes.Replace(bytes.Clone(texts[1]), []byte("threshold: 3"), []byte("threshold: 2"), 1)
	if _, err := Parse("share-2.txt", bad); !errors.Is(err, ErrCorruptShare) || !strings.Contains(err.Error(), sum) {
		t.Fatalf("changed threshold: %v", err)
	}
}

// Shares of two backups of the same material never mix.
func TestMixedSetsRefused(t *testing.T) {
	m := testMaterial(t)
	_, t1, _ := Split(keys.SourceKeyring, m, 5, 3, time.Now())
	_, t2, _ := Split(keys.SourceKeyring, m, 5, 3, time.Now())
	a, b := parseAll(t, t1), parseAll(t, t2)
	// Positive control: three of one set.
	if _, got, err := Combine([]Share{a[0], a[1], a[2]}); err != nil {
		t.Fatal(err)
	} else {
		got.Wipe()
	}
	if _, _, err := Combine([]Share{a[0], a[1], b[2]}); !errors.Is(err, ErrMixedShares) {
		t.Fatalf("mixed sets: %v", err)
	}
	if _, _, err := Combine([]Share{a[0], a[1], a[1]}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
}

// A share altered together with a recomputed checksum (made by someone
// who knows the format) combines to garbage, which the payload hash
// catches.
func TestForgedShareCaught(t *testing.T) {
	m := testMaterial(t)
	sh, _, _ := Split(keys.SourceKeyring, m, 5, 3, time.Now())
	forged := sh[2]
	forged.Y = bytes.Clone(forged.Y)
	forged.Y[5] ^= 1
	forged, err := Parse("forged", forged.Marshal())
	if err != nil {
		t.Fatal(err) // its checksum is right
	}
	if _, got, err := Combine([]Share{sh[0], sh[1], sh[2]}); err != nil {
		t.Fatal(err)
	} else {
		got.Wipe()
	}
	if _, _, err := Combine([]Share{sh[0], sh[1], forged}); !errors.Is(err, ErrBadCombination) {
		t.Fatalf("forged share: %v", err)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	m := testMaterial(t)
	b, err := EncodePayload(keys.SourcePKCS11, m)
	if err != nil {
		t.Fatal(err)
	}
	src, got, err := DecodePayload(b)
	if err != nil || src != keys.SourcePKCS11 {
		t.Fatal(src, err)
	}
	sameMaterial(t, m, got)
	got.Wipe()
	b[10] ^= 1
	if _, _, err := DecodePayload(b); !errors.Is(err, ErrBadCombination) {
		t.Fatalf("altered payload: %v", err)
	}
}

func TestSplitRefusesBadCounts(t *testing.T) {
	m := testMaterial(t)
	if _, _, err := Split(keys.SourceKeyring, m, 2, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]int{{5, 1}, {3, 4}, {256, 3}} {
		if _, _, err := Split(keys.SourceKeyring, m, c[0], c[1], time.Now()); err == nil {
			t.Errorf("%d shares, threshold %d accepted", c[0], c[1])
		}
	}
}

// FuzzParseShare: Parse never panics, and what it accepts marshals back to
// a file that parses to the same share.
func FuzzParseShare(f *testing.F) {
	m := testMaterial(f)
	_, texts, err := Split(keys.SourceKeyring, m, 3, 2, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(texts[0])
	f.Add([]byte("format: 1\nchecksum: 00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse("f", b)
		if err != nil {
			return
		}
		s2, err := Parse("f", s.Marshal())
		if err != nil || s2.Checksum != s.Checksum || !bytes.Equal(s2.Y, s.Y) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzDecodePayload: the payload decoder never panics and accepts only
// what re-encodes to the same bytes.
func FuzzDecodePayload(f *testing.F) {
	m := testMaterial(f)
	b, err := EncodePayload(keys.SourceKeyring, m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		src, m, err := DecodePayload(b)
		if err != nil {
			return
		}
		defer m.Wipe()
		again, err := EncodePayload(src, m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

// A file that is not a share — a passphrase file given by mistake, or a
// share whose data lines lost their indentation — is refused without a
// word of what it holds: errors name lines and fields, not their text.
// Control: the same share, indented, parses.
func TestParseErrorsTellNoContent(t *testing.T) {
	m := testMaterial(t)
	_, texts, err := Split(keys.SourceKeyring, m, 3, 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("share-1.txt", texts[0]); err != nil {
		t.Fatalf("control: %v", err)
	}
	i := bytes.Index(texts[0], []byte("data:\n")) + len("data:\n")
	dataLine := string(bytes.TrimSpace(texts[0][i : i+bytes.IndexByte(texts[0][i:], '\n')]))
	flat := bytes.ReplaceAll(texts[0], []byte("\n  "), []byte("\n"))
	for name, text := range map[string][]byte{
		"passphrase":          []byte("correct horse battery staple\n"),
		"passphrase, colon":   []byte("my:secret passphrase\nmy:secret passphrase\n"),
		"share, not indented": flat,
		"bad fields":          []byte("format: s3cr3t-format\nsource: s3cr3t-source\nchecksum: x\n"),
	} {
		_, err := Parse("file", text)
		if err == nil {
			t.Fatalf("%s: parsed", name)
		}
		for _, secret := range []string{"correct horse", "secret passphrase", "my", dataLine[:16], "s3cr3t"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error tells %q: %v", name, secret, err)
			}
		}
	}
}
