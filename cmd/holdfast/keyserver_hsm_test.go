package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/testutil/softhsm"
)

// TestKeyServerOnToken: a key server whose root keys are in a PKCS#11
// token (SoftHSM2), never in a file. A key ceremony makes the token's
// key; `keyserver init --from-home` takes that home's token (its sealed
// state, not the key); `serve` opens the token with its PIN. A home
// joined to it puts and gets byte-exact, and the server's audit log
// verifies — its K_0 sealed in the token. The state directory holds no
// keyring file. Refused beside the control (the right PIN): the server
// started with a wrong PIN.
func TestKeyServerOnToken(t *testing.T) {
	k := newKSEnv(t)
	onprem, _ := k.tokenHome("ks-token")

	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1", "--from-home", onprem)
	for _, f := range []string{keyserver.KeyringFile} {
		if _, err := os.Stat(filepath.Join(ks, f)); err == nil {
			t.Fatalf("the state directory of a key server on a token holds %s", f)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ks, keyserver.TokenFile)); err != nil || !strings.Contains(string(b), "ks-token") || strings.Contains(string(b), softhsm.PIN) {
		t.Fatalf("%s: %q %v", keyserver.TokenFile, b, err)
	}
	cli := filepath.Join(k.dir, "cli")
	k.ok("keyserver", "enroll", "cli", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", cli)

	// A wrong PIN: serve refuses to start (exit 5).
	bad := append(append([]string(nil), k.env...), "HOLDFAST_PKCS11_PIN=wrong-pin")
	saved := k.env
	k.env = bad
	code, _, stderr := k.run(nil, "keyserver", "serve", "--dir", ks, "--listen", "127.0.0.1:0", "--ops-listen", "")
	k.env = saved
	if code != exitKey {
		t.Fatalf("serve with a wrong PIN: exit %d, %s", code, stderr)
	}

	p := k.serve(ks, "127.0.0.1:0") // the right PIN, the control
	home := filepath.Join(k.dir, "home")
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", cli)
	data := make([]byte, 200_000)
	rand.Read(data)
	src := filepath.Join(k.dir, "data.bin")
	os.WriteFile(src, data, 0o600)
	k.ok("put", src, "bkt/on-token")
	got := filepath.Join(k.dir, "got.bin")
	k.ok("get", "bkt/on-token", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, data) {
		t.Fatal("get through a key server on a token: the bytes differ")
	}
	if _, err := os.Stat(filepath.Join(home, "keyring")); err == nil {
		t.Fatal("the joined home holds a keyring file")
	}
	// The bucket key was wrapped by the token: its record carries the
	// token's algorithm (2, AES-GCM inside the token), not the keyring's.
	cat, err := catalog.Open(context.Background(), filepath.Join(home, repo.CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	b, err := cat.GetBucket(context.Background(), "bkt")
	if err != nil {
		t.Fatal(err)
	}
	bks, err := cat.BucketKeys(context.Background(), b.ID)
	if err != nil || len(bks) == 0 {
		t.Fatalf("bucket keys: %v", err)
	}
	if w := bks[0].Wrapped; w.Alg != keys.AlgGCM || w.Source != keys.SourceKeyServer {
		t.Fatalf("the bucket key record: source %d alg %d, want the key server's, wrapped in the token", w.Source, w.Alg)
	}
	if out := k.ok("audit", "verify", "--dir", ks); !strings.Contains(out, "intact") {
		t.Fatalf("the server's audit log: %s", out)
	}
}

// tokenHome makes a SoftHSM2 token labelled token and, by a key ceremony
// (shares in k.dir/shares), the home k.dir/onprem whose root keys are in
// it. k's commands find the token and its PIN; the caller's process
// opens it with the returned configuration's SOFTHSM2_CONF.
func (k *ksEnv) tokenHome(token string) (home string, h *softhsm.Env) {
	k.t.Helper()
	if err := softhsm.Available(); err != nil {
		k.t.Fatal(err) // scripts/test.sh installs softhsm2: missing is a failure
	}
	h, err := softhsm.NewEnv(filepath.Join(k.dir, ".softhsm"))
	if err != nil {
		k.t.Fatal(err)
	}
	if err := h.InitToken(token); err != nil {
		k.t.Fatal(err)
	}
	k.env = append(k.env, "SOFTHSM2_CONF="+h.Conf, "HOLDFAST_PKCS11_PIN="+softhsm.PIN)
	home = filepath.Join(k.dir, "onprem")
	k.okIn(home, "keys", "ceremony", "--key-source", softhsm.URI(token, "holdfast-root"),
		"--shares", "3", "--threshold", "2", "--out", filepath.Join(k.dir, "shares"))
	return home, h
}
