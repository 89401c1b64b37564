package keyserver_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/secret"
)

var pass = []byte("unit test passphrase")

// start makes a state directory and serves it in-process on 127.0.0.1.
func start(t testing.TB) (dir, url string) {
	dir, url, _ = startWith(t, keyserver.Options{})
	return dir, url
}

// startWith is start with options, returning the server too; it is
// served on its Listener, as `keyserver serve` does.
func startWith(t testing.TB, o keyserver.Options) (dir, url string, srv *keyserver.Server) {
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	dir = filepath.Join(t.TempDir(), "ks")
	if _, err := keyserver.Init(dir, keyserver.InitOptions{Hosts: []string{"127.0.0.1"}, Passphrase: pass, KDF: keyring.Calibrate(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	srv, err := keyserver.Open(dir, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, url, err := keyserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), TLSConfig: srv.TLSConfig(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refusals are the server's to log
	go hs.ServeTLS(srv.Listener(ln), "", "")
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return dir, url, srv
}

func enroll(t testing.TB, dir, name string, g keyserver.Grant) remote.Config {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if _, err := keyserver.Dir(dir).Enroll(name, g, out); err != nil {
		t.Fatal(err)
	}
	return remote.Config{CertFile: filepath.Join(out, keyserver.BundleCert), KeyFile: filepath.Join(out, keyserver.BundleKey),
		CAFile: filepath.Join(out, keyserver.BundleCA), Attempts: 1, CacheTTL: -1}
}

func open(t testing.TB, url string, c remote.Config) (*remote.Source, error) {
	c.URL = url
	s, err := remote.Open(context.Background(), c)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func records(t *testing.T, dir, op string) []string {
	t.Helper()
	ch, err := oplog.Read(keyserver.Dir(dir).LogPath())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range ch.Records {
		if r.Op == op {
			out = append(out, r.Detail)
		}
	}
	return out
}

func lastRefusal(t *testing.T, dir string) string {
	t.Helper()
	rs := records(t, dir, "refuse")
	if len(rs) == 0 {
		return ""
	}
	return rs[len(rs)-1]
}

// waitRefusal waits for a refusal record with prefix (handshake refusals
// are written by the server's summary goroutine, off the handshake).
func waitRefusal(t *testing.T, dir, prefix string) string {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); ; <-tick.C {
		if d := lastRefusal(t, dir); strings.HasPrefix(d, prefix) || time.Now().After(deadline) {
			return d
		}
	}
}

// TestAuthorization: each grant dimension refuses what it does not
// cover, logged, beside a control that differs only in that dimension.
func TestAuthorization(t *testing.T) {
	dir, url := start(t)
	b1, b2 := keys.ID{1}, keys.ID{2}
	c := enroll(t, dir, "one-bucket", keyserver.Grant{Buckets: []string{"01000000000000000000000000000000"}, Ops: []string{"wrap", "unwrap"}, Versions: []uint32{1}})
	s, err := open(t, url, c)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ctx := context.Background()
	ad := func(p keys.Purpose, b keys.ID, v uint32) keys.AD {
		return keys.AD{Purpose: p, Repo: s.Repo(), Bucket: b, KEKVersion: v, KeyVersion: 1}
	}
	cases := []struct {
		name    string
		ok, bad keys.AD
		why     string
	}{
		{"bucket", ad(keys.PurposeBucketKey, b1, 1), ad(keys.PurposeBucketKey, b2, 1), "may not use bucket"},
		{"system keys", ad(keys.PurposeBucketKey, b1, 1), ad(keys.PurposeSystemKey, keys.ID{}, 1), "system keys"},
		{"purpose", ad(keys.PurposeBucketKey, b1, 1), ad(keys.PurposeDataKey, b1, 1), "not served at the root level"},
		{"version", ad(keys.PurposeBucketKey, b1, 1), ad(keys.PurposeBucketKey, b1, 2), "root key version 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.Wrap(ctx, tc.ok.KEKVersion, tc.ok, k)
			if err != nil {
				t.Fatalf("control: %v", err)
			}
			if got, err := s.Unwrap(ctx, w, tc.ok); err != nil || !got.Equal(k) {
				t.Fatalf("control unwrap: %v", err)
			}
			_, err = s.Wrap(ctx, tc.bad.KEKVersion, tc.bad, k)
			if !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("want a refusal naming %q, got %v", tc.why, err)
			}
			if d := lastRefusal(t, dir); !strings.Contains(d, tc.why) || !strings.Contains(d, `client "one-bucket"`) {
				t.Fatalf("refusal not logged: %q", d)
			}
			if e := lastAudit(t, dir, audit.KindRefusal); e.Actor != "one-bucket" || e.Status != "not-authorized" || !strings.Contains(e.Detail, tc.why) {
				t.Fatalf("refusal not in the audit log: %+v", e)
			}
		})
	}
	// The operation: a data-only client may not unwrap at the root.
	w, err := s.Wrap(ctx, 1, cases[0].ok, k)
	if err != nil {
		t.Fatal(err)
	}
	dc := enroll(t, dir, "data-only", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"data"}})
	d, err := open(t, url, dc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Unwrap(ctx, w, cases[0].ok); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "may not unwrap") {
		t.Fatalf("data-only client at the root: %v", err)
	}
	// A record altered in transit or storage: not-my-key, not a refusal.
	w.Data[70] ^= 1
	if _, err := s.Unwrap(ctx, w, cases[0].ok); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("altered record: %v", err)
	}
}

// TestRevocation: a revoked certificate is refused at its next
// connection, and logged; the control is the same bundle before.
func TestRevocation(t *testing.T) {
	dir, url := start(t)
	c := enroll(t, dir, "laptop", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}})
	if _, err := open(t, url, c); err != nil {
		t.Fatalf("control: %v", err)
	}
	if _, err := keyserver.Dir(dir).Revoke("laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, url, c); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("revoked: %v", err)
	}
	if d := waitRefusal(t, dir, "revoked:"); !strings.HasPrefix(d, "revoked:") {
		t.Fatalf("not logged: %q", d)
	}
	e := waitAudit(t, dir, audit.KindRefusal, func(e audit.Entry) bool { return e.Status == "revoked" })
	if e.Op != "handshake" || !strings.Contains(e.Detail, `client "laptop"`) {
		t.Fatalf("the revoked handshake's audit entry: %+v", e)
	}
	if e := lastAudit(t, dir, audit.KindKey); e.Op != "revoke" || e.Actor != "cli" {
		t.Fatalf("the revocation's audit entry: %+v", e)
	}
	// Re-enrolled under the same name: a new serial, accepted.
	c2 := enroll(t, dir, "laptop", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"unwrap"}})
	if _, err := open(t, url, c2); err != nil {
		t.Fatalf("re-enrolled: %v", err)
	}
}

// TestDataKeys: a data-only client gets data keys wrapped and unwrapped
// under a bucket key record it cannot open itself, for its bucket only.
func TestDataKeys(t *testing.T) {
	dir, url := start(t)
	full, err := open(t, url, enroll(t, dir, "admin", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := keys.ID{7}
	bkKey, _ := secret.New()
	defer bkKey.Wipe()
	bad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: full.Repo(), Bucket: b, KEKVersion: 1, KeyVersion: 1}
	w, err := full.Wrap(ctx, 1, bad, bkKey)
	if err != nil {
		t.Fatal(err)
	}
	kc, _ := keys.KeyCheck(bkKey)
	bk := remote.BucketKey{Bucket: b, Version: 1, Wrapped: w, KeyCheck: kc}
	gw, err := open(t, url, enroll(t, dir, "gateway", keyserver.Grant{Buckets: []string{"07000000000000000000000000000000"}, Ops: []string{"data"}}))
	if err != nil {
		t.Fatal(err)
	}
	dk, _ := secret.New()
	defer dk.Wipe()
	dad := keys.AD{Purpose: keys.PurposeDataKey, Repo: full.Repo(), Bucket: b, KEKVersion: 1, Object: keys.ID{9}}
	alg, data, err := gw.WrapDataKey(ctx, bk, dad, dk)
	if err != nil {
		t.Fatal(err)
	}
	// It is an ordinary software wrap under the bucket key.
	if got, err := keys.UnwrapSoftware(bkKey, dad, data); err != nil || !got.Equal(dk) || alg != keys.AlgHKDFGCMCommit {
		t.Fatalf("the server's wrap does not open under the bucket key: %v", err)
	}
	if got, err := gw.UnwrapDataKey(ctx, bk, dad, alg, data); err != nil || !got.Equal(dk) {
		t.Fatalf("data key unwrap: %v", err)
	}
	// The bucket key itself is not released to it.
	if _, err := gw.Unwrap(ctx, w, bad); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("bucket key released to a data-only client: %v", err)
	}
	// Another bucket's record: refused.
	bk2, dad2 := bk, dad
	bk2.Bucket, dad2.Bucket = keys.ID{8}, keys.ID{8}
	if _, _, err := gw.WrapDataKey(ctx, bk2, dad2, dk); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("another bucket: %v", err)
	}
	// A wrong key check: not-my-key.
	bk3 := bk
	bk3.KeyCheck = make([]byte, 32)
	if _, err := gw.UnwrapDataKey(ctx, bk3, dad, alg, data); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("wrong key check: %v", err)
	}
}
