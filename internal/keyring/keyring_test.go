package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// cheap turns on the test hook for the rest of t.
func cheap(t testing.TB) {
	t.Helper()
	t.Cleanup(SetInsecureTestParamsForTesting())
}

var testPass = []byte("test passphrase")

func newRepo(t testing.TB) keys.ID {
	t.Helper()
	var id keys.ID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

// newKeyring creates a keyring with cheap parameters in a fresh directory.
func newKeyring(t testing.TB) (*Keyring, string) {
	t.Helper()
	cheap(t)
	path := filepath.Join(t.TempDir(), "keyring")
	k, err := Create(path, testPass, newRepo(t), Calibrate(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, path
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// wantOnly fails unless dir holds exactly the keyring file and, once the
// file has been replaced, its lock file (no temp files).
func wantOnly(t testing.TB, path string) {
	t.Helper()
	got := slices.DeleteFunc(dirNames(t, filepath.Dir(path)), func(n string) bool { return n == filepath.Base(path)+".lock" })
	if !slices.Equal(got, []string{filepath.Base(path)}) {
		t.Fatalf("directory holds %q, want only %q (and its lock)", got, filepath.Base(path))
	}
}

func newKey(t testing.TB) secret.Key {
	t.Helper()
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testAD(repo keys.ID, ver uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeBucketKey, Repo: repo, Bucket: keys.ID{1}, KEKVersion: ver, KeyVersion: 1}
}

func TestCreateOpenRoundTrip(t *testing.T) {
	k, path := newKeyring(t)
	repo := k.Repo()
	if k.Kind() != keys.SourceKeyring || k.Primary() != 1 {
		t.Fatalf("kind %d primary %d", k.Kind(), k.Primary())
	}
	vs := k.Versions()
	if len(vs) != 1 || vs[0].Version != 1 || vs[0].State != StateActive || time.Since(vs[0].Created) > time.Minute {
		t.Fatalf("versions %+v", vs)
	}
	if _, ok := k.Freshness(); ok {
		t.Fatal("new keyring has a freshness record")
	}
	if k.Params() != insecureTestParams {
		t.Fatalf("params %v", k.Params())
	}

	k2, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if k2.Repo() != repo || k2.Primary() != 1 || !slices.Equal(k2.Versions(), vs) || k2.Params() != k.Params() {
		t.Fatalf("reopened keyring differs: %v %d %+v", k2.Repo(), k2.Primary(), k2.Versions())
	}
	if !k2.st.roots[0].key.Equal(k.st.roots[0].key) {
		t.Fatal("reopened root key differs")
	}
	wantOnly(t, path)
}

func TestOpenFailuresLeaveFileUnchanged(t *testing.T) {
	_, path := newKeyring(t)
	good := mustRead(t, path)
	for _, c := range []struct {
		name   string
		edit   func([]byte) []byte
		pass   []byte
		want   error // nil: the positive control
		wantIn string
	}{
		{name: "control", edit: bytes.Clone, pass: testPass},
		{name: "wrong passphrase", edit: bytes.Clone, pass: []byte("test passphrasf"), want: ErrWrongPassphrase},
		{name: "empty passphrase", edit: bytes.Clone, pass: nil, want: ErrEmptyPassphrase},
		{name: "flipped ciphertext bit", edit: func(b []byte) []byte { return flip(b, headerLen+3) }, pass: testPass, want: ErrCorrupt, wantIn: "checksum"},
		{name: "flipped salt bit", edit: func(b []byte) []byte { return flip(b, offSalt+1) }, pass: testPass, want: ErrCorrupt, wantIn: "checksum"},
		{name: "flipped checksum bit", edit: func(b []byte) []byte { return flip(b, len(b)-1) }, pass: testPass, want: ErrCorrupt, wantIn: "checksum"},
		{name: "flipped ciphertext bit, checksum recomputed", edit: func(b []byte) []byte { return rechecksum(flip(b, headerLen+3)) }, pass: testPass, want: ErrWrongPassphrase},
		{name: "truncated by one byte", edit: func(b []byte) []byte { return bytes.Clone(b[:len(b)-1]) }, pass: testPass, want: ErrCorrupt},
		{name: "truncated to the header", edit: func(b []byte) []byte { return bytes.Clone(b[:headerLen]) }, pass: testPass, want: ErrCorrupt},
		{name: "truncated to the magic", edit: func(b []byte) []byte { return bytes.Clone(b[:5]) }, pass: testPass, want: ErrCorrupt},
		{name: "empty file", edit: func([]byte) []byte { return []byte{} }, pass: testPass, want: ErrCorrupt},
		{name: "trailing garbage", edit: func(b []byte) []byte { return append(bytes.Clone(b), 0) }, pass: testPass, want: ErrCorrupt},
		{name: "bad magic", edit: func(b []byte) []byte { return rechecksum(flip(b, 0)) }, pass: testPass, want: ErrCorrupt, wantIn: "magic"},
		{name: "unknown format version", edit: func(b []byte) []byte { return rechecksum(setByte(b, offVersion, 2)) }, pass: testPass, want: ErrUnsupported},
		{name: "unknown kdf", edit: func(b []byte) []byte { return rechecksum(setByte(b, offKDF, 2)) }, pass: testPass, want: ErrUnsupported},
		{name: "too large", edit: func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, maxFileLen)...) }, pass: testPass, want: ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := c.edit(good)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := Open(path, c.pass)
			if c.want == nil {
				if err != nil {
					t.Fatalf("control failed: %v", err)
				}
				k.Close()
			} else if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.wantIn) {
				t.Fatalf("got %v, want %v (containing %q)", err, c.want, c.wantIn)
			} else if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			if !bytes.Equal(mustRead(t, path), data) {
				t.Fatal("open changed the file")
			}
			wantOnly(t, path)
		})
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	cheap(t)
	dir := t.TempDir()
	// Control: a free name is created.
	free := filepath.Join(dir, "free")
	k, err := Create(free, testPass, newRepo(t), Calibrate(0))
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	before := mustRead(t, free)
	for _, c := range []struct {
		name  string
		setup func(path string)
	}{
		{"existing keyring", func(string) {}},
		{"other file", func(p string) { os.WriteFile(p, []byte("precious"), 0o600) }},
		{"empty file", func(p string) { os.WriteFile(p, nil, 0o600) }},
		{"dangling symlink", func(p string) { os.Symlink(filepath.Join(dir, "nowhere"), p) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := free
			if c.name != "existing keyring" {
				path = filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
				c.setup(path)
			}
			was, _ := os.Readlink(path)
			wasData, _ := os.ReadFile(path)
			_, err := Create(path, testPass, newRepo(t), Calibrate(0))
			if !errors.Is(err, ErrExists) {
				t.Fatalf("got %v, want ErrExists", err)
			}
			now, _ := os.Readlink(path)
			nowData, _ := os.ReadFile(path)
			if was != now || !bytes.Equal(wasData, nowData) {
				t.Fatal("create changed the existing file")
			}
		})
	}
	if !bytes.Equal(mustRead(t, free), before) {
		t.Fatal("existing keyring changed")
	}
	for _, n := range dirNames(t, dir) {
		if strings.Contains(n, ".tmp-") {
			t.Fatalf("temporary file %q left behind", n)
		}
	}
}

// TestCreateLinkRefusesExisting covers Create's final no-replace link, which
// matters when the file appears after Create's early check.
func TestCreateLinkRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	if err := writeFileAtomic(path, []byte("first"), false); err != nil {
		t.Fatal(err) // control
	}
	if err := writeFileAtomic(path, []byte("second"), false); !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if got := mustRead(t, path); string(got) != "first" {
		t.Fatalf("file holds %q", got)
	}
	wantOnly(t, path)
}

func TestCreateRefusesBadInput(t *testing.T) {
	cheap(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		pass []byte
		repo keys.ID
		want error
	}{
		{"control", testPass, keys.ID{9}, nil},
		{"empty passphrase", []byte{}, keys.ID{9}, ErrEmptyPassphrase},
		{"zero repository", testPass, keys.ID{}, errors.New("")},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			k, err := Create(path, c.pass, c.repo, Calibrate(0))
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				k.Close()
				return
			}
			if err == nil || (c.want.Error() != "" && !errors.Is(err, c.want)) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("a refused create left a file")
			}
		})
	}
}

func TestFileMode0600(t *testing.T) {
	k, path := newKeyring(t)
	check := func(when string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want 0600", when, fi.Mode().Perm())
		}
	}
	check("after create")
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	check("after rotate")
}

func TestWrapUnwrap(t *testing.T) {
	k, _ := newKeyring(t)
	other, _ := newKeyring(t)
	// A second keyring for the same repository: same versions, other keys.
	same := filepath.Join(t.TempDir(), "same-repo")
	sameRepo, err := Create(same, testPass, k.Repo(), Calibrate(0))
	if err != nil {
		t.Fatal(err)
	}
	defer sameRepo.Close()
	ctx := context.Background()
	dk := newKey(t)
	ad := testAD(k.Repo(), 1)
	w, err := k.Wrap(ctx, 1, ad, dk)
	if err != nil {
		t.Fatal(err)
	}
	if w.Source != keys.SourceKeyring || w.Alg != keys.AlgHKDFGCMCommit || w.KEKVersion != 1 || len(w.Data) != keys.WrappedLenHKDFGCMCommit {
		t.Fatalf("wrapped record %+v", w)
	}
	edit := func(f func(*keys.Wrapped, *keys.AD)) (keys.Wrapped, keys.AD) {
		w2, ad2 := w, ad
		w2.Data = bytes.Clone(w.Data)
		f(&w2, &ad2)
		return w2, ad2
	}
	for _, c := range []struct {
		name string
		src  keys.Source
		edit func(*keys.Wrapped, *keys.AD)
	}{
		{"control", k, func(*keys.Wrapped, *keys.AD) {}},
		{"another keyring", other, func(w *keys.Wrapped, a *keys.AD) { a.Repo = other.Repo() }},
		{"another keyring, same repository", sameRepo, func(*keys.Wrapped, *keys.AD) {}},
		{"ad purpose", k, func(_ *keys.Wrapped, a *keys.AD) { a.Purpose = keys.PurposeDataKey }},
		{"ad repository", k, func(_ *keys.Wrapped, a *keys.AD) { a.Repo[0] ^= 1 }},
		{"ad bucket", k, func(_ *keys.Wrapped, a *keys.AD) { a.Bucket[15] ^= 1 }},
		{"ad key version", k, func(_ *keys.Wrapped, a *keys.AD) { a.KeyVersion++ }},
		{"ad object", k, func(_ *keys.Wrapped, a *keys.AD) { a.Object[0] = 1 }},
		{"ad kek version", k, func(_ *keys.Wrapped, a *keys.AD) { a.KEKVersion = 2 }},
		{"record kek version", k, func(w *keys.Wrapped, a *keys.AD) { w.KEKVersion, a.KEKVersion = 2, 2 }},
		{"record source kind", k, func(w *keys.Wrapped, _ *keys.AD) { w.Source = keys.SourcePKCS11 }},
		{"record algorithm", k, func(w *keys.Wrapped, _ *keys.AD) { w.Alg = keys.AlgGCM }},
		{"flipped salt bit", k, func(w *keys.Wrapped, _ *keys.AD) { w.Data[0] ^= 1 }},
		{"flipped commitment bit", k, func(w *keys.Wrapped, _ *keys.AD) { w.Data[40] ^= 1 }},
		{"flipped ciphertext bit", k, func(w *keys.Wrapped, _ *keys.AD) { w.Data[70] ^= 1 }},
		{"short record", k, func(w *keys.Wrapped, _ *keys.AD) { w.Data = w.Data[:100] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w2, ad2 := edit(c.edit)
			got, err := c.src.Unwrap(ctx, w2, ad2)
			if strings.HasPrefix(c.name, "control") {
				if err != nil {
					t.Fatal(err)
				}
				if !got.Equal(dk) {
					t.Fatal("unwrapped key differs")
				}
				return
			}
			if !errors.Is(err, keys.ErrNotMyKey) {
				t.Fatalf("got %v, want ErrNotMyKey", err)
			}
		})
	}
}

func TestWrapRefusesMisuse(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	if _, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk); err != nil {
		t.Fatalf("control: %v", err)
	}
	if _, err := k.Wrap(ctx, 2, testAD(k.Repo(), 2), dk); err == nil {
		t.Fatal("wrap under a missing version")
	}
	if _, err := k.Wrap(ctx, 1, testAD(k.Repo(), 2), dk); err == nil {
		t.Fatal("wrap with associated data naming another version")
	}
	if _, err := k.Wrap(ctx, 1, testAD(keys.ID{1}, 1), dk); err == nil {
		t.Fatal("wrap with associated data naming another repository")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.Wrap(canceled, 1, testAD(k.Repo(), 1), dk); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wrap: %v", err)
	}
}

func TestRotate(t *testing.T) {
	k, path := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	w1, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := k.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if ver != 2 || k.Primary() != 2 {
		t.Fatalf("rotate gave %d, primary %d", ver, k.Primary())
	}
	states := func(k *Keyring) []State {
		var s []State
		for _, v := range k.Versions() {
			s = append(s, v.State)
		}
		return s
	}
	if got := states(k); !slices.Equal(got, []State{StateDecryptOnly, StateActive}) {
		t.Fatalf("states %v", got)
	}
	if _, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk); err == nil {
		t.Fatal("wrap under a decrypt-only version")
	}
	w2, err := k.Wrap(ctx, 2, testAD(k.Repo(), 2), dk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	k2, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if got := states(k2); k2.Primary() != 3 || !slices.Equal(got, []State{StateDecryptOnly, StateDecryptOnly, StateActive}) {
		t.Fatalf("reopened: primary %d states %v", k2.Primary(), got)
	}
	for _, c := range []struct {
		w  keys.Wrapped
		ad keys.AD
	}{{w1, testAD(k.Repo(), 1)}, {w2, testAD(k.Repo(), 2)}} {
		for _, src := range []*Keyring{k, k2} {
			got, err := src.Unwrap(ctx, c.w, c.ad)
			if err != nil || !got.Equal(dk) {
				t.Fatalf("old record under version %d: %v", c.w.KEKVersion, err)
			}
		}
	}
	wantOnly(t, path)
}

func TestDestroy(t *testing.T) {
	k, path := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	w1, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Destroy(1); err == nil {
		t.Fatal("destroyed the primary version")
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	// Control: the record opens before the version is destroyed.
	if _, err := k.Unwrap(ctx, w1, testAD(k.Repo(), 1)); err != nil {
		t.Fatal(err)
	}
	held := k.st.roots[0].key
	if err := k.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if held.Valid() {
		t.Fatal("destroyed key still held in memory")
	}
	if err := k.Destroy(1); err != nil {
		t.Fatalf("destroying again: %v", err)
	}
	if err := k.Destroy(7); err == nil {
		t.Fatal("destroyed a missing version")
	}
	k2, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	for _, src := range []*Keyring{k, k2} {
		if v := src.Versions(); v[0].State != StateDestroyed || v[0].Version != 1 {
			t.Fatalf("versions %+v", v)
		}
		if _, err := src.Unwrap(ctx, w1, testAD(k.Repo(), 1)); !errors.Is(err, keys.ErrNotMyKey) {
			t.Fatalf("record under a destroyed version: %v", err)
		}
	}
	// Versions are never reused.
	if v, err := k.Rotate(); err != nil || v != 3 {
		t.Fatalf("rotate after destroy: %d %v", v, err)
	}
}

func TestFreshness(t *testing.T) {
	k, path := newKeyring(t)
	h := func(b byte) (x [32]byte) { x[0] = b; return }
	when := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	if err := k.SetFreshness(Freshness{Sequence: 10, Hash: h(1), Time: when}); err != nil {
		t.Fatal(err)
	}
	k2, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := k2.Freshness()
	k2.Close()
	if !ok || f.Sequence != 10 || f.Hash != h(1) || !f.Time.Equal(when) {
		t.Fatalf("reopened freshness %+v %v", f, ok)
	}
	for _, c := range []struct {
		name string
		f    Freshness
		ok   bool
	}{
		{"same record again", Freshness{Sequence: 10, Hash: h(1), Time: when.Add(time.Hour)}, true},
		{"older sequence", Freshness{Sequence: 9, Hash: h(1), Time: when}, false},
		{"same sequence, other hash", Freshness{Sequence: 10, Hash: h(2), Time: when}, false},
		{"newer sequence", Freshness{Sequence: 11, Hash: h(3), Time: when}, true},
		{"back to the first", Freshness{Sequence: 10, Hash: h(1), Time: when}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := mustRead(t, path)
			prev, _ := k.Freshness()
			err := k.SetFreshness(c.f)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := k.Freshness(); got.Sequence != c.f.Sequence || got.Hash != c.f.Hash {
					t.Fatalf("freshness %+v", got)
				}
				return
			}
			if !errors.Is(err, ErrFreshnessRollback) {
				t.Fatalf("got %v, want ErrFreshnessRollback", err)
			}
			if !bytes.Equal(mustRead(t, path), before) {
				t.Fatal("refused update changed the file")
			}
			if got, _ := k.Freshness(); got != prev {
				t.Fatal("refused update changed memory")
			}
		})
	}
	// Times: zero means now; before 1970 cannot be encoded.
	before := mustRead(t, path)
	if err := k.SetFreshness(Freshness{Sequence: 12, Hash: h(4), Time: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("time before 1970 accepted")
	}
	if !bytes.Equal(mustRead(t, path), before) {
		t.Fatal("refused update changed the file")
	}
	if err := k.SetFreshness(Freshness{Sequence: 12, Hash: h(4)}); err != nil {
		t.Fatal(err)
	}
	if f, _ := k.Freshness(); time.Since(f.Time) > time.Minute {
		t.Fatalf("zero time stored as %v", f.Time)
	}
	k3, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k3.Close()
	if f, _ := k3.Freshness(); f.Sequence != 12 || f.Hash != h(4) {
		t.Fatalf("final freshness %+v", f)
	}
	wantOnly(t, path)
}

func TestRewriteKeepsSaltDrawsNonce(t *testing.T) {
	k, path := newKeyring(t)
	hdr := func() header {
		h, _, err := parseFile(mustRead(t, path))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h1 := hdr()
	if err := k.SetFreshness(Freshness{Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	h2 := hdr()
	if h1.salt != h2.salt || h1.params != h2.params {
		t.Fatal("rewrite changed the salt or parameters")
	}
	if h1.nonce == h2.nonce {
		t.Fatal("rewrite reused the nonce")
	}
	if err := k.ChangePassphrase([]byte("new"), Calibrate(0)); err != nil {
		t.Fatal(err)
	}
	if h3 := hdr(); h3.salt == h2.salt || h3.nonce == h2.nonce {
		t.Fatal("passphrase change kept the salt or nonce")
	}
}

func TestChangePassphrase(t *testing.T) {
	k, path := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	w, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk)
	if err != nil {
		t.Fatal(err)
	}
	newPass := []byte("a new passphrase")
	if err := k.ChangePassphrase(nil, Calibrate(0)); !errors.Is(err, ErrEmptyPassphrase) {
		t.Fatalf("empty new passphrase: %v", err)
	}
	if err := k.ChangePassphrase(newPass, Params{Time: 1, MemoryKiB: 32, Threads: 1}); !errors.Is(err, ErrKDFTooWeak) {
		t.Fatalf("weak parameters: %v", err)
	}
	if err := k.ChangePassphrase(newPass, Calibrate(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, testPass); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("old passphrase: %v", err)
	}
	k2, err := Open(path, newPass)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if got, err := k2.Unwrap(ctx, w, testAD(k.Repo(), 1)); err != nil || !got.Equal(dk) {
		t.Fatalf("record after passphrase change: %v", err)
	}
	// The handle that changed it keeps working with the new key.
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	k3, err := Open(path, newPass)
	if err != nil {
		t.Fatal(err)
	}
	k3.Close()
	wantOnly(t, path)
}

func TestConcurrentModificationRefused(t *testing.T) {
	a, path := newKeyring(t)
	b, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Rotate(); err != nil {
		t.Fatal(err) // control: a knows the file
	}
	after := mustRead(t, path)
	if _, err := b.Rotate(); !errors.Is(err, ErrModified) {
		t.Fatalf("stale handle rotated: %v", err)
	}
	if err := b.SetFreshness(Freshness{Sequence: 1}); !errors.Is(err, ErrModified) {
		t.Fatalf("stale handle set freshness: %v", err)
	}
	if !bytes.Equal(mustRead(t, path), after) {
		t.Fatal("stale handle changed the file")
	}
	if b.Primary() != 1 {
		t.Fatal("refused rotate changed memory")
	}
	wantOnly(t, path)
}

func TestAtomicWritesLeaveNoTempFiles(t *testing.T) {
	k, path := newKeyring(t)
	wantOnly(t, path)
	steps := []struct {
		name string
		do   func() error
	}{
		{"rotate", func() error { _, err := k.Rotate(); return err }},
		{"freshness", func() error { return k.SetFreshness(Freshness{Sequence: 5}) }},
		{"destroy", func() error { return k.Destroy(1) }},
		{"passphrase", func() error { return k.ChangePassphrase([]byte("x"), Calibrate(0)) }},
		{"refused create", func() error {
			if _, err := Create(path, testPass, keys.ID{1}, Calibrate(0)); !errors.Is(err, ErrExists) {
				return errors.New("create did not refuse")
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		wantOnly(t, path)
	}
}

func TestClose(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	w, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk)
	if err != nil {
		t.Fatal(err)
	}
	root, kek := k.st.roots[0].key, k.kek
	if !root.Valid() || !kek.Valid() {
		t.Fatal("keys not held before close")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if root.Valid() || kek.Valid() {
		t.Fatal("close left keys in memory")
	}
	if _, err := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk); !errors.Is(err, ErrClosed) {
		t.Fatalf("wrap after close: %v", err)
	}
	if _, err := k.Unwrap(ctx, w, testAD(k.Repo(), 1)); !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("unwrap after close: %v", err)
	}
	if _, err := k.Rotate(); !errors.Is(err, ErrClosed) {
		t.Fatalf("rotate after close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if !dk.Valid() {
		t.Fatal("close wiped a caller's key")
	}
}

// TestErrorsNeverShowSecrets collects the errors of every failure path and
// checks that none contains a key or the passphrase.
func TestErrorsNeverShowSecrets(t *testing.T) {
	k, path := newKeyring(t)
	ctx := context.Background()
	var secrets []string
	grab := func(key secret.Key) {
		key.Use(func(b []byte) error {
			secrets = append(secrets, hex.EncodeToString(b), string(b), strings.Trim(fmt.Sprint(b), "[]"))
			return nil
		})
	}
	grab(k.kek)
	grab(k.st.roots[0].key)
	secrets = append(secrets, string(testPass))
	dk := newKey(t)
	grab(dk)
	w, _ := k.Wrap(ctx, 1, testAD(k.Repo(), 1), dk)
	bad := w
	bad.Data = flip(w.Data, 70)
	var errs []error
	add := func(_ any, err error) { errs = append(errs, err) }
	add(Open(path, []byte("wrong")))
	add(k.Unwrap(ctx, bad, testAD(k.Repo(), 1)))
	add(k.Unwrap(ctx, w, testAD(k.Repo(), 2)))
	add(k.Wrap(ctx, 3, testAD(k.Repo(), 3), dk))
	add(Create(path, testPass, k.Repo(), Calibrate(0)))
	add(nil, k.SetFreshness(Freshness{}))
	add(nil, k.SetFreshness(Freshness{}))
	os.WriteFile(path, flip(mustRead(t, path), 80), 0o600)
	add(Open(path, testPass))
	for _, err := range errs {
		if err == nil {
			continue
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q shows a secret", err)
			}
		}
	}
	if len(errs) < 6 {
		t.Fatal("too few errors collected")
	}
}

// TestSizes ties the sizes in docs/format-keyring.md to the code.
func TestSizes(t *testing.T) {
	k, path := newKeyring(t)
	size := func() int { return len(mustRead(t, path)) }
	if got := size(); got != 182 {
		t.Fatalf("new keyring is %d bytes, want 182", got)
	}
	if err := k.SetFreshness(Freshness{Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != 182+48 {
		t.Fatalf("with freshness %d bytes, want %d", got, 182+48)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != 182+48+45 {
		t.Fatalf("after rotate %d bytes, want %d", got, 182+48+45)
	}
	if err := k.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != 182+48+13 {
		t.Fatalf("after destroy %d bytes, want %d", got, 182+48+13)
	}
	if headerLen != 63 || minFileLen != 111 {
		t.Fatalf("header %d, minimum file %d", headerLen, minFileLen)
	}
}

// TestConcurrentUse unwraps from several goroutines while the keyring is
// rotated and updated (run with -race).
func TestConcurrentUse(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	dk := newKey(t)
	ad := testAD(k.Repo(), 1)
	w, err := k.Wrap(ctx, 1, ad, dk)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 50 {
				got, err := k.Unwrap(ctx, w, ad)
				if err == nil && !got.Equal(dk) {
					err = errors.New("unwrapped key differs")
				}
				if err != nil {
					errs <- err
					return
				}
				_ = k.Versions()
			}
			errs <- nil
		}()
	}
	for i := range 5 {
		if _, err := k.Rotate(); err != nil {
			t.Fatal(err)
		}
		if err := k.SetFreshness(Freshness{Sequence: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestReload: a handle whose write was refused because another process
// changed the file reloads it without the passphrase and then writes; a
// reload after a passphrase change, or one that would move freshness
// backwards, is refused and changes nothing. Each refusal follows a
// control that differs only in the change made.
func TestReload(t *testing.T) {
	a, path := newKeyring(t)
	b, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := func(x byte) (v [32]byte) { v[0] = x; return }
	if err := a.SetFreshness(Freshness{Sequence: 1, Hash: h(1)}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetFreshness(Freshness{Sequence: 2, Hash: h(2)}); !errors.Is(err, ErrModified) {
		t.Fatalf("write over another handle's change: %v", err)
	}
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if f, ok := b.Freshness(); !ok || f.Sequence != 1 || f.Hash != h(1) {
		t.Fatalf("reloaded freshness %+v %v", f, ok)
	}
	if err := b.SetFreshness(Freshness{Sequence: 2, Hash: h(2)}); err != nil {
		t.Fatalf("write after reload: %v", err)
	}
	// The reloaded keys still work: b wraps, a (reloaded) unwraps.
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	dk, _ := secret.New()
	ad := keys.AD{Purpose: keys.PurposeSystemKey, Repo: a.Repo(), KEKVersion: 1}
	w, err := b.Wrap(context.Background(), 1, ad, dk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unwrap(context.Background(), w, ad); err != nil {
		t.Fatalf("unwrap after reload: %v", err)
	}

	// A file whose freshness is older than what the handle read: refused.
	older := mustRead(t, path) // sequence 2
	if err := a.SetFreshness(Freshness{Sequence: 3, Hash: h(3)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil { // control: moving forward reloads
		t.Fatal(err)
	}
	if err := os.WriteFile(path, older, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); !errors.Is(err, ErrFreshnessRollback) {
		t.Fatalf("reload of an older file: %v", err)
	}
	if f, _ := b.Freshness(); f.Sequence != 3 {
		t.Fatalf("refused reload changed memory: %+v", f)
	}

	// After a passphrase change the cached key cannot read the file.
	c, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ChangePassphrase([]byte("another passphrase"), Calibrate(0)); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); !errors.Is(err, ErrModified) {
		t.Fatalf("reload after a passphrase change: %v", err)
	}
}

// TestConcurrentWritersLoseNothing: two handles on one file, as two
// processes would have, record freshness and rotate concurrently, each
// reloading and retrying when the other changed the file. Every change a
// writer was told succeeded is in the final file: the newest freshness
// record and the rotated root key version.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	a, path := newKeyring(t)
	b, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var next, best atomic.Uint64
	rotated := make(chan uint32, 1)
	retry := func(k *Keyring, op func() error) error {
		for {
			err := op()
			if !errors.Is(err, ErrModified) {
				return err
			}
			if err := k.Reload(); err != nil {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	for w, k := range []*Keyring{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				if w == 0 && i == 20 {
					var v uint32
					if err := retry(k, func() (err error) { v, err = k.Rotate(); return }); err != nil {
						t.Error(err)
						return
					}
					rotated <- v
				}
				seq := next.Add(1)
				f := Freshness{Sequence: seq, Hash: [32]byte{byte(seq), byte(seq >> 8)}}
				err := retry(k, func() error { return k.SetFreshness(f) })
				switch {
				case err == nil:
					for {
						cur := best.Load()
						if seq <= cur || best.CompareAndSwap(cur, seq) {
							break
						}
					}
				case errors.Is(err, ErrFreshnessRollback):
					// The other writer already recorded a newer one.
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	c, err := Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if f, ok := c.Freshness(); !ok || f.Sequence != best.Load() {
		t.Fatalf("file records sequence %d, but %d was recorded successfully", f.Sequence, best.Load())
	}
	v := <-rotated
	found := false
	for _, info := range c.Versions() {
		found = found || info.Version == v
	}
	if !found {
		t.Fatalf("rotated root key version %d lost: %+v", v, c.Versions())
	}
}
