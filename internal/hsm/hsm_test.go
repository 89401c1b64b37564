package hsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/testutil/softhsm"
)

var testRepo = keys.ID{0xaa, 1, 2, 3}

// material makes root key version 1 (primary) for testRepo.
func material(t testing.TB) keyring.Material {
	t.Helper()
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	m := keyring.Material{Repo: testRepo, Primary: 1, Roots: []keyring.RootMaterial{{
		Info: keyring.RootKeyInfo{Version: 1, Created: time.Now().UTC().Truncate(time.Second), State: keyring.StateActive}, Key: k}}}
	t.Cleanup(m.Wipe)
	return m
}

// testSource sets up a SoftHSM token and creates a source on it.
func testSource(t testing.TB, o Options) (*Source, URI, string) {
	t.Helper()
	env := softhsm.Setup(t)
	u, err := ParseURI(env.Token(t, "hf-test", "holdfast-root"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pkcs11-state")
	s, err := Create(path, u, []byte(softhsm.PIN), material(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u, path
}

func bucketAD(ver uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeBucketKey, Repo: testRepo, Bucket: keys.ID{7}, KEKVersion: ver, KeyVersion: 1}
}

func TestWrapUnwrap(t *testing.T) {
	s, _, _ := testSource(t, Options{CacheTTL: -1})
	ctx := context.Background()
	k, _ := secret.New()
	w, err := s.Wrap(ctx, 1, bucketAD(1), k)
	if err != nil {
		t.Fatal(err)
	}
	if w.Source != keys.SourcePKCS11 || w.Alg != keys.AlgGCM || len(w.Data) != keys.WrappedLenGCM || w.KEKVersion != 1 {
		t.Fatalf("wrapped: %+v", w)
	}
	got, err := s.Unwrap(ctx, w, bucketAD(1))
	if err != nil || !got.Equal(k) {
		t.Fatalf("round trip: %v", err)
	}
	// Each wrap draws a fresh nonce.
	w2, _ := s.Wrap(ctx, 1, bucketAD(1), k)
	if string(w2.Data[:12]) == string(w.Data[:12]) {
		t.Fatal("nonce reused")
	}
	// The same record under different associated data, altered, or for
	// another source kind: ErrNotMyKey.
	other := bucketAD(1)
	other.Bucket[0] = 8
	if _, err := s.Unwrap(ctx, w, other); !errors.Is(err, keys.ErrNotMyKey) {
		t.Errorf("wrong AD: %v", err)
	}
	bad := w
	bad.Data = append([]byte(nil), w.Data...)
	bad.Data[20] ^= 1
	if _, err := s.Unwrap(ctx, bad, bucketAD(1)); !errors.Is(err, keys.ErrNotMyKey) {
		t.Errorf("altered record: %v", err)
	}
	kr := w
	kr.Source = keys.SourceKeyring
	if _, err := s.Unwrap(ctx, kr, bucketAD(1)); !errors.Is(err, keys.ErrNotMyKey) {
		t.Errorf("keyring record: %v", err)
	}
	// Wrap refuses associated data that names another version or
	// repository.
	if _, err := s.Wrap(ctx, 1, bucketAD(2), k); err == nil {
		t.Error("wrap with mismatched AD version accepted")
	}
	if _, err := s.Wrap(ctx, 2, bucketAD(2), k); err == nil {
		t.Error("wrap under unknown version accepted")
	}
	if st := s.Stats(); st.Wraps < 2 || st.Unwraps < 1 {
		t.Errorf("stats %+v", st)
	}
}

// The root key object cannot leave the token: reading CKA_VALUE and
// C_WrapKey are refused. Positive control: an extractable key on the same
// token is read and wrapped by the same calls.
func TestRootKeyNotExtractable(t *testing.T) {
	s, u, _ := testSource(t, Options{CacheTTL: -1})
	root, err := s.handle(1)
	if err != nil {
		t.Fatal(err)
	}
	err = s.tok.do(func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		aes := func(extra ...*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
			tmpl := append([]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			}, extra...)
			return ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		}
		wrapper, err := aes(pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true))
		if err != nil {
			return err
		}
		open, err := aes(pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false))
		if err != nil {
			return err
		}
		kw := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}
		value := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}
		// Positive controls.
		if a, err := ctx.GetAttributeValue(sh, open, value); err != nil || len(a[0].Value) != 32 {
			t.Errorf("control: reading an extractable key's value: %v", err)
		}
		if b, err := ctx.WrapKey(sh, kw, wrapper, open); err != nil || len(b) != 40 {
			t.Errorf("control: wrapping an extractable key: %v", err)
		}
		// The root key.
		if _, err := ctx.GetAttributeValue(sh, root, value); !isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("reading the root key's CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		if _, err := ctx.WrapKey(sh, kw, wrapper, root); !isCode(err, pkcs11.CKR_KEY_UNEXTRACTABLE) {
			t.Errorf("C_WrapKey of the root key: %v, want CKR_KEY_UNEXTRACTABLE", err)
		}
		attrs, err := ctx.GetAttributeValue(sh, root, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
		if err != nil {
			return err
		}
		if attrs[0].Value[0] != 0 || attrs[1].Value[0] != 1 || attrs[2].Value[0] != 1 {
			t.Errorf("root key attributes: extractable=%v sensitive=%v token=%v", attrs[0].Value, attrs[1].Value, attrs[2].Value)
		}
		// Making it extractable afterwards is refused too.
		if err := ctx.SetAttributeValue(sh, root, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); err == nil {
			t.Error("CKA_EXTRACTABLE could be set on the root key")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = u
}

// A wrong PIN is a clear error; the right one opens.
func TestWrongPIN(t *testing.T) {
	s, u, path := testSource(t, Options{CacheTTL: -1})
	s.Close()
	_, err := Open(path, u, []byte("9999"), Options{})
	if !errors.Is(err, ErrWrongPIN) || !strings.Contains(err.Error(), `wrong PIN for the PKCS#11 token "hf-test"`) {
		t.Fatalf("wrong PIN: %v", err)
	}
	if strings.Contains(err.Error(), "9999") {
		t.Fatal("the error shows the PIN")
	}
	s2, err := Open(path, u, []byte(softhsm.PIN), Options{})
	if err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	s2.Close()
}

// The state file keeps the freshness record across opens, refuses a
// rollback, and a second process's change is picked up by Reload.
func TestStateFile(t *testing.T) {
	s, u, path := testSource(t, Options{CacheTTL: -1})
	if _, ok := s.Freshness(); ok {
		t.Fatal("fresh source has a freshness record")
	}
	f := keyring.Freshness{Sequence: 3, Hash: [32]byte{3}, Time: time.Unix(1700000000, 0).UTC()}
	if err := s.SetFreshness(f); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFreshness(keyring.Freshness{Sequence: 2}); !errors.Is(err, keyring.ErrFreshnessRollback) {
		t.Fatalf("rollback: %v", err)
	}
	s2, err := Open(path, u, []byte(softhsm.PIN), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, ok := s2.Freshness(); !ok || got.Sequence != 3 || got.Hash != f.Hash || !got.Time.Equal(f.Time) {
		t.Fatalf("reopened freshness %+v %v", got, ok)
	}
	if s2.Repo() != testRepo || s2.Primary() != 1 || len(s2.Versions()) != 1 {
		t.Fatalf("reopened state: %x %d %v", s2.Repo(), s2.Primary(), s2.Versions())
	}
	// s2 moves on; s's write is refused until it reloads.
	if err := s2.SetFreshness(keyring.Freshness{Sequence: 4, Hash: [32]byte{4}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFreshness(keyring.Freshness{Sequence: 5}); !errors.Is(err, keyring.ErrModified) {
		t.Fatalf("stale write: %v", err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Freshness(); got.Sequence != 4 {
		t.Fatalf("after reload: %d", got.Sequence)
	}
	if err := s.SetFreshness(keyring.Freshness{Sequence: 5}); err != nil {
		t.Fatal(err)
	}
	// An altered state file does not open.
	b, _ := os.ReadFile(path)
	b[len(b)-20] ^= 1
	os.WriteFile(path, b, 0o600)
	if _, err := Open(path, u, []byte(softhsm.PIN), Options{}); err == nil || !errors.Is(err, errStateCorrupt) {
		t.Fatalf("altered state file: %v", err)
	}
}

// Create refuses a token that already holds the root key (a second
// ceremony onto the same token would otherwise shadow the first).
func TestCreateRefusesExistingKey(t *testing.T) {
	_, u, _ := testSource(t, Options{CacheTTL: -1})
	path := filepath.Join(t.TempDir(), "state2")
	_, err := Create(path, u, []byte(softhsm.PIN), material(t), Options{})
	if !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second import: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a state file was written")
	}
	// Control: another object label on the same token works.
	u.Object = "other-root"
	s, err := Create(path, u, []byte(softhsm.PIN), material(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Within the TTL a repeated unwrap is answered from the cache; after it
// the key is gone from the cache (wiped) and the token is asked again.
func TestCacheExpires(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	s, _, _ := testSource(t, Options{CacheTTL: 10 * time.Second, Now: clk.now})
	ctx := context.Background()
	k, _ := secret.New()
	w, err := s.Wrap(ctx, 1, bucketAD(1), k)
	if err != nil {
		t.Fatal(err)
	}
	base := s.Stats().Unwraps
	for range 3 {
		got, err := s.Unwrap(ctx, w, bucketAD(1))
		if err != nil || !got.Equal(k) {
			t.Fatal(err)
		}
		got.Wipe() // the caller's copy; the cached one stays
	}
	if st := s.Stats(); st.Unwraps != base+1 || st.CacheHits != 2 {
		t.Fatalf("within TTL: %+v (base %d)", st, base)
	}
	clk.add(9 * time.Second)
	s.c.Sweep()
	if s.c.Len() != 1 {
		t.Fatal("entry gone before its TTL")
	}
	clk.add(time.Second)
	s.c.Sweep()
	if s.c.Len() != 0 {
		t.Fatal("entry alive after its TTL")
	}
	if got, err := s.Unwrap(ctx, w, bucketAD(1)); err != nil || !got.Equal(k) {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Unwraps != base+2 {
		t.Fatalf("after TTL: %+v", st)
	}
	// Different associated data is a different entry, and still fails.
	if _, err := s.Unwrap(ctx, w, bucketAD(2)); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("cache answered for other AD: %v", err)
	}
}

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pkcs11:token=my%20token;object=root;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so")
	if err != nil || u.Token != "my token" || u.Object != "root" || u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" {
		t.Fatalf("%+v %v", u, err)
	}
	if v, err := ParseURI(u.String()); err != nil || v != u {
		t.Fatalf("round trip %q: %+v %v", u.String(), v, err)
	}
	for _, bad := range []string{
		"token=a;object=b?module-path=/m",
		"pkcs11:object=b?module-path=/m",
		"pkcs11:token=a?module-path=/m",
		"pkcs11:token=a;object=b",
		"pkcs11:token=a;object=b;pin-value=1234?module-path=/m",
		"pkcs11:token=a;object=b?module-path=/m&pin-value=1234",
		"pkcs11:token=a;object=b;slot=1?module-path=/m",
		"pkcs11:token=a;token=c;object=b?module-path=/m",
		"pkcs11:token=a;object=b;type=private?module-path=/m",
		// A PIN with a bad %-escape, or given without its name, is
		// refused without being shown either.
		"pkcs11:token=a;object=b;pin-value=12%7g34?module-path=/m",
		"pkcs11:token=a;object=b?module-path=/m&pin-source=%zz1234",
		"pkcs11:token=a;object=b;1234?module-path=/m",
		"pkcs11:token=a%7g1234;object=b?module-path=/m",
	} {
		if _, err := ParseURI(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), "%7g") || strings.Contains(err.Error(), "%zz") {
			t.Errorf("%q: the error shows a value: %v", bad, err)
		}
	}
}

func TestReadPIN(t *testing.T) {
	noTTY := func(string) ([]byte, error) { return nil, errNoTTY }
	env := func(v string, set bool) func(string) (string, bool) {
		return func(string) (string, bool) { return v, set }
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "pin")
	os.WriteFile(good, []byte("4321\nignored\n"), 0o600)
	if p, err := readPIN(good, "t", env("", false), noTTY); err != nil || string(p) != "4321" {
		t.Fatalf("file: %q %v", p, err)
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("4321\n"), 0o644)
	if _, err := readPIN(loose, "t", env("", false), noTTY); err == nil {
		t.Error("group-readable PIN file accepted")
	}
	if p, err := readPIN("", "t", env("5555", true), noTTY); err != nil || string(p) != "5555" {
		t.Fatalf("env: %q %v", p, err)
	}
	if _, err := readPIN("", "t", env("", false), noTTY); !errors.Is(err, ErrNoPIN) {
		t.Fatalf("nothing: %v", err)
	}
	ask := func(string) ([]byte, error) { return []byte("7777"), nil }
	if p, err := readPIN("", "t", env("", false), ask); err != nil || string(p) != "7777" {
		t.Fatalf("prompt: %q %v", p, err)
	}
}

// Many goroutines wrap and unwrap at once (more than the session pool
// holds): every round trip succeeds.
func TestConcurrentWrapUnwrap(t *testing.T) {
	s, _, _ := testSource(t, Options{CacheTTL: -1})
	ctx := context.Background()
	base := s.Stats() // Create wrapped the state key
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ad := bucketAD(1)
			ad.Bucket[1] = byte(g)
			for range 40 {
				k, _ := secret.New()
				w, err := s.Wrap(ctx, 1, ad, k)
				if err != nil {
					errs <- err
					return
				}
				got, err := s.Unwrap(ctx, w, ad)
				if err != nil || !got.Equal(k) {
					errs <- fmt.Errorf("round trip: %v", err)
					return
				}
				got.Wipe()
				k.Wipe()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Wraps-base.Wraps != 12*40 || st.Unwraps-base.Unwraps != 12*40 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAmbiguousTokenLabel: slots are chosen by token label, so two tokens
// with the URI's label leave it to the slot order which one's key is
// used; the source refuses to choose. Control: the same URI, with one
// token of that label, opens.
func TestAmbiguousTokenLabel(t *testing.T) {
	s, u, path := testSource(t, Options{CacheTTL: -1})
	s.Close()
	s2, err := Open(path, u, []byte(softhsm.PIN), Options{})
	if err != nil {
		t.Fatalf("control, one token labelled %q: %v", u.Token, err)
	}
	s2.Close()
	// A second token with the same label (another repository's, a fresh
	// one made for a restore): nothing may be chosen between them.
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", u.Token, "--so-pin", softhsm.SOPIN, "--pin", softhsm.PIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second token: %v: %s", err, out)
	}
	_, err = Open(path, u, []byte(softhsm.PIN), Options{})
	if !errors.Is(err, ErrAmbiguousToken) || !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), `"hf-test"`) {
		t.Fatalf("two tokens labelled %q: %v", u.Token, err)
	}
	if err := CheckImport(u, []byte(softhsm.PIN), material(t)); !errors.Is(err, ErrAmbiguousToken) {
		t.Fatalf("CheckImport with two tokens labelled %q: %v", u.Token, err)
	}
}

// blockedIn waits until some goroutine is blocked receiving from a
// channel inside fn (a function name as runtime.Stack prints it).
func blockedIn(fn string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if (strings.Contains(g, "[chan receive") || strings.Contains(g, "[select")) && strings.Contains(g, fn+"(") {
				return
			}
		}
		runtime.Gosched()
	}
}

// TestCloseDuringUnwrap: Close wipes the cached keys, and a key an unwrap
// in progress gets from the token is not cached after Close. The test
// holds every session of the pool, so that the unwrap waits for one
// after its checks; Close then begins (it waits for the sessions), and a
// session given back goes to the unwrap first. Control: an unwrap that
// ends before Close leaves nothing cached either.
func TestCloseDuringUnwrap(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(map[bool]string{false: "after", true: "during"}[during], func(t *testing.T) {
			s, _, _ := testSource(t, Options{CacheTTL: time.Hour, Now: time.Now})
			ctx := context.Background()
			k, _ := secret.New()
			w, err := s.Wrap(ctx, 1, bucketAD(1), k)
			if err != nil {
				t.Fatal(err)
			}
			unwrapped := make(chan error, 1)
			unwrap := func() {
				got, err := s.Unwrap(ctx, w, bucketAD(1))
				if err == nil {
					got.Wipe()
				}
				unwrapped <- err
			}
			if !during {
				unwrap()
				if err := <-unwrapped; err != nil {
					t.Fatal(err)
				}
				s.Close()
			} else {
				var held []pkcs11.SessionHandle
				for range maxSessions {
					sh, err := s.tok.session()
					if err != nil {
						t.Fatal(err)
					}
					held = append(held, sh)
				}
				go unwrap()
				blockedIn("hsm.(*Token).session")
				closed := make(chan struct{})
				go func() { s.Close(); close(closed) }()
				blockedIn("hsm.(*Token).Close")
				for _, sh := range held {
					s.tok.put(sh)
				}
				<-closed
				<-unwrapped // a key, or ErrClosed: either way not cached
			}
			if n := s.c.Len(); n != 0 {
				t.Fatalf("%d keys cached after Close", n)
			}
		})
	}
}

// TestCloseWhileWaitingForSession: an operation that found every session
// in use, and is about to wait for one when Close takes them all, gives up
// (ErrUnavailable) instead of waiting for ever. Control: one that waits
// while the token is open gets the session that comes back.
func TestCloseWhileWaitingForSession(t *testing.T) {
	s, _, _ := testSource(t, Options{})
	tok := s.tok
	var held []pkcs11.SessionHandle
	for range maxSessions {
		sh, err := tok.session()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, sh)
	}
	got := make(chan error, 1)
	go func() {
		sh, err := tok.session()
		if err == nil {
			tok.put(sh)
		}
		got <- err
	}()
	blockedIn("hsm.(*Token).session")
	tok.put(held[0])
	if err := <-got; err != nil {
		t.Fatalf("control: waiting while the token is open: %v", err)
	}
	sh, err := tok.session() // the one the waiter put back
	if err != nil {
		t.Fatal(err)
	}
	held[0] = sh

	reached, release := make(chan struct{}), make(chan struct{})
	beforeSessionWait = func() { close(reached); <-release }
	go func() {
		_, err := tok.session()
		got <- err
	}()
	<-reached
	beforeSessionWait = nil
	closed := make(chan struct{})
	go func() { tok.Close(); close(closed) }()
	blockedIn("hsm.(*Token).Close")
	for _, sh := range held {
		tok.put(sh)
	}
	<-closed
	close(release) // the operation now waits, with every session closed
	select {
	case err := <-got:
		if !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("waiting after Close: %v, want ErrUnavailable", err)
		}
	case <-time.After(time.Minute): // a hang, not a timing
		t.Fatal("an operation waiting for a session after Close waits for ever")
	}
}

// TestReloadClosedMeanwhile: a Reload whose state key the token unwrapped
// while the source was being closed does not install it in the closed
// source (where nothing would ever wipe it). Control: the same Reload
// with the source open installs the new key.
func TestReloadClosedMeanwhile(t *testing.T) {
	for _, closeMeanwhile := range []bool{false, true} {
		t.Run(map[bool]string{false: "open", true: "closed"}[closeMeanwhile], func(t *testing.T) {
			s, _, _ := testSource(t, Options{})
			// The header Reload finds on disk differs from the one the
			// source holds: it unwraps the file's state key anew.
			s.mu.Lock()
			s.hdrRaw = append([]byte(nil), s.hdrRaw...)
			s.hdrRaw[stateHeaderLen-13] ^= 1
			s.mu.Unlock()
			if closeMeanwhile {
				afterStateKeyUnwrap = func() { s.Close() }
			}
			defer func() { afterStateKeyUnwrap = nil }()
			err := s.Reload()
			s.mu.Lock()
			installed := s.skey
			s.mu.Unlock()
			if !closeMeanwhile {
				if err != nil || !installed.Valid() {
					t.Fatalf("control: reload with the source open: %v (key valid %v)", err, installed.Valid())
				}
				return
			}
			if !errors.Is(err, ErrClosed) {
				t.Errorf("reload closed meanwhile: %v, want ErrClosed", err)
			}
			if installed.Valid() {
				t.Error("a closed source holds a state key that nothing will wipe")
			}
		})
	}
}
