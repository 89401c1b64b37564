package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/testutil/softhsm"
)

// A representative part of the foundation's tests — put and get across
// sizes, reopen, verify, tamper detection, recover — run with each key
// source: the keyring file and a PKCS#11 token (SoftHSM2).

// srcEnv is an env whose repository's root keys come from kind.
type srcEnv struct {
	*env
	kind keys.SourceKind
	uri  hsm.URI
}

func sourceKinds() []keys.SourceKind { return []keys.SourceKind{keys.SourceKeyring, keys.SourcePKCS11} }

func kindName(k keys.SourceKind) string {
	if k == keys.SourcePKCS11 {
		return "pkcs11"
	}
	return "keyring"
}

// newSrcEnv makes a repository with root keys from kind. For PKCS#11 it
// does what `holdfast keys ceremony` does: a root key made in protected
// memory, imported into a fresh token as non-extractable, the home's
// keysource.json and state file written.
func newSrcEnv(t *testing.T, kind keys.SourceKind) *srcEnv {
	t.Helper()
	if kind == keys.SourceKeyring {
		return &srcEnv{env: newEnv(t), kind: kind}
	}
	hsmEnv := softhsm.Setup(t)
	u, err := hsm.ParseURI(hsmEnv.Token(t, "repo-test", "holdfast-root"))
	if err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	e := &env{t: t, home: filepath.Join(d, "home"), store: filepath.Join(d, "store")}
	os.MkdirAll(e.home, 0o700)
	m := newMaterial(t)
	src, err := hsm.Create(PKCS11StatePath(e.home), u, []byte(softhsm.PIN), m, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveKeySource(e.home, KeySourceConfig{Version: 1, Type: "pkcs11", URI: u.String()}); err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), InitOptions{Home: e.home, StorePath: e.store, Keys: src})
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	e.r = r
	t.Cleanup(func() { e.r.Close() })
	return &srcEnv{env: e, kind: kind, uri: u}
}

// newMaterial is a fresh root key version 1 for a new repository id.
func newMaterial(t *testing.T) keyring.Material {
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	m := keyring.Material{Repo: id, Primary: 1, Roots: []keyring.RootMaterial{{
		Info: keyring.RootKeyInfo{Version: 1, Created: time.Now().UTC(), State: keyring.StateActive}, Key: k}}}
	t.Cleanup(m.Wipe)
	return m
}

// keys opens the home's key source as a new process would.
func (e *srcEnv) keys() RootKeys {
	e.t.Helper()
	if e.kind == keys.SourceKeyring {
		kr, err := keyring.Open(KeyringPath(e.home), pass)
		if err != nil {
			e.t.Fatal(err)
		}
		return kr
	}
	s, err := hsm.Open(PKCS11StatePath(e.home), e.uri, []byte(softhsm.PIN), hsm.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *srcEnv) reopen() {
	e.t.Helper()
	e.r.Close()
	r, err := Open(context.Background(), OpenOptions{Home: e.home, Keys: e.keys(), Hooks: e.hooks})
	if err != nil {
		e.t.Fatal(err)
	}
	e.r = r
}

func TestKeySourcePutGetVerify(t *testing.T) {
	for _, kind := range sourceKinds() {
		t.Run(kindName(kind), func(t *testing.T) {
			e := newSrcEnv(t, kind)
			objs := map[string][]byte{}
			for i, n := range []int{0, 1, 65536, 70000, 1 << 20} {
				k := fmt.Sprintf("o%d", i)
				objs[k] = random(n)
				e.put("alpha", k, objs[k])
				e.put("beta", k, objs[k])
			}
			e.reopen()
			for k, v := range objs {
				e.mustGet("alpha", k, v)
				e.mustGet("beta", k, v)
			}
			e.mustVerifyClean()
			// The bucket keys are wrapped by the source in use.
			ctx := context.Background()
			b, err := e.r.Catalog().GetBucket(ctx, "alpha")
			if err != nil {
				t.Fatal(err)
			}
			bks, err := e.r.Catalog().BucketKeys(ctx, b.ID)
			if err != nil || len(bks) == 0 {
				t.Fatal(err)
			}
			if bks[0].Wrapped.Source != kind {
				t.Fatalf("bucket key wrapped by source kind %d, want %d", bks[0].Wrapped.Source, kind)
			}
			if e.r.RootKeys().Kind() != kind {
				t.Fatal("RootKeys kind")
			}
		})
	}
}

// A flipped byte in a stored object is detected on read and by verify;
// the other object reads (positive control in the same repository).
func TestKeySourceTamperDetected(t *testing.T) {
	for _, kind := range sourceKinds() {
		t.Run(kindName(kind), func(t *testing.T) {
			e := newSrcEnv(t, kind)
			good, bad := random(100000), random(100000)
			e.put("bkt", "good", good)
			e.put("bkt", "bad", bad)
			p := e.storePath(e.nameOf("bkt", "bad"))
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 0x40
			if err := os.WriteFile(p, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			e.mustGet("bkt", "good", good)
			if got, err := e.get("bkt", "bad"); err == nil || bytes.Equal(got, bad) {
				t.Fatalf("tampered object read without error (%d bytes)", len(got))
			}
			sum, fs := e.verify()
			if !sum.Damaged() || len(fs) != 1 || fs[0].Key != "bad" {
				t.Fatalf("verify: %+v", fs)
			}
		})
	}
}

// The catalog is lost; the key source (keyring file, or token and state
// file) is not: recover rebuilds the catalog, trusting the store's
// catalog backups through the source's freshness record.
func TestKeySourceRecover(t *testing.T) {
	for _, kind := range sourceKinds() {
		t.Run(kindName(kind), func(t *testing.T) {
			ctx := context.Background()
			e := newSrcEnv(t, kind)
			objs := map[string][]byte{"x": random(10), "y": random(200000), "z": nil}
			for k, v := range objs {
				e.put("alpha", k, v)
			}
			if _, err := e.r.Backup(ctx); err != nil {
				t.Fatal(err)
			}
			e.put("alpha", "after-backup", []byte("late"))
			objs["after-backup"] = []byte("late")
			e.r.Close()
			for _, f := range []string{CatalogFile, CatalogFile + "-wal", CatalogFile + "-shm"} {
				os.Remove(filepath.Join(e.home, f))
			}
			r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, Keys: e.keys()})
			if err != nil {
				t.Fatal(err)
			}
			e.r = r
			if rep.Keyring == nil || rep.Freshness != FreshnessVerified {
				t.Fatalf("recover did not start from a backup vouched for by the source: %+v", rep)
			}
			for k, v := range objs {
				e.mustGet("alpha", k, v)
			}
			e.mustVerifyClean()
		})
	}
}

// A home whose root key is in a token does not open with a passphrase;
// given the opened source it does.
func TestKeySourceNeeded(t *testing.T) {
	e := newSrcEnv(t, keys.SourcePKCS11)
	e.r.Close()
	_, err := Open(context.Background(), OpenOptions{Home: e.home, Passphrase: pass})
	if !errors.Is(err, ErrKeySourceNeeded) {
		t.Fatalf("open with a passphrase: %v", err)
	}
	e.reopen()
	e.put("bkt", "k", []byte("v"))
	e.mustGet("bkt", "k", []byte("v"))
}

// init (a keyring repository) refuses a home that names a PKCS#11 key
// source; the same init in an empty home works.
func TestInitRefusesHomeWithKeySource(t *testing.T) {
	d := t.TempDir()
	home := filepath.Join(d, "home")
	if err := SaveKeySource(home, KeySourceConfig{Version: 1, Type: "pkcs11", URI: "pkcs11:token=t;object=o?module-path=/m"}); err != nil {
		t.Fatal(err)
	}
	_, err := Init(context.Background(), InitOptions{Home: home, StorePath: filepath.Join(d, "s1"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("init over a key source: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, KeyringFile)); !os.IsNotExist(err) {
		t.Fatal("a keyring was created")
	}
	r, err := Init(context.Background(), InitOptions{Home: filepath.Join(d, "other"), StorePath: filepath.Join(d, "s2"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
