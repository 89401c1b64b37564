package keyserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestHandshakeFlood: 200 handshakes without a certificate, from one
// peer (127.0.0.2), write a bounded number of log lines that still
// account for every connection; an authorized client (127.0.0.1) gets
// a release during the flood, logged before its answer.
func TestHandshakeFlood(t *testing.T) {
	dir, url, srv := startWith(t, keyserver.Options{})
	c := enroll(t, dir, "admin", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}})
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	addr := strings.TrimPrefix(url, "https://")
	before := len(records(t, dir, "refuse"))

	const n, workers = 200, 16
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second},
					Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					continue // closed at accept
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Read(make([]byte, 1)) // the refusal's alert
				conn.Close()
			}
		}()
	}
	released := make(chan error, 1)
	for i := range n {
		next <- i
		if i == n/2 {
			go func() {
				s, err := open(t, url, c) // a new connection, during the flood
				if err != nil {
					released <- err
					return
				}
				k, _ := secret.New()
				defer k.Wipe()
				ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{3}, KEKVersion: 1, KeyVersion: 1}
				w, err := s.Wrap(context.Background(), 1, ad, k)
				if err == nil {
					var got secret.Key
					if got, err = s.Unwrap(context.Background(), w, ad); err == nil && !got.Equal(k) {
						err = errors.New("wrong key")
					}
				}
				released <- err
			}()
		}
	}
	close(next)
	wg.Wait()
	if err := <-released; err != nil {
		t.Fatalf("control: an authorized release during the flood: %v", err)
	}
	rel := records(t, dir, "release")
	if len(rel) == 0 || !strings.Contains(rel[len(rel)-1], `client "admin"`) {
		t.Fatalf("the release during the flood is not logged: %q", rel)
	}
	// At most one record per reason and peer so far (no-certificate,
	// rate-limited, too-many-handshakes, incomplete-handshake).
	if got := len(records(t, dir, "refuse")) - before; got < 1 || got > 4 {
		t.Fatalf("%d refusal records during a flood of %d handshakes; want 1…4", got, n)
	}
	// Close writes what is left: still bounded, and every connection is
	// counted, most not as handshakes (the peer's budget was spent).
	srv.Close()
	rs := records(t, dir, "refuse")[before:]
	if len(rs) > 8 {
		t.Fatalf("%d refusal records after the flood, want at most 8: %q", len(rs), rs)
	}
	count := regexp.MustCompile(`^([a-z-]+): (\d+) connection\(s\) from 127\.0\.0\.2 refused`)
	total, byReason := 0, map[string]int{}
	for _, r := range rs {
		m := count.FindStringSubmatch(r)
		if m == nil {
			t.Fatalf("refusal record not a summary for 127.0.0.2: %q", r)
		}
		k, _ := strconv.Atoi(m[2])
		total += k
		byReason[m[1]] += k
	}
	t.Logf("summaries: %q", rs)
	if total != n || byReason["no-certificate"] < 2 || byReason["rate-limited"] < 1 {
		t.Fatalf("the summaries count %d connections (%v), want %d, several no-certificate and some rate-limited", total, byReason, n)
	}
}

// TestDestroyedRootVersion: after a root key version is destroyed and the
// server reloads, a data key under a bucket key it wrapped is refused at
// once, though the bucket key was cached; before, it opens.
func TestDestroyedRootVersion(t *testing.T) {
	dir, url, srv := startWith(t, keyserver.Options{})
	admin, err := open(t, url, enroll(t, dir, "admin", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}}))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := open(t, url, enroll(t, dir, "gw", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"data"}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := keys.ID{5}
	bkKey, _ := secret.New()
	defer bkKey.Wipe()
	w, err := admin.Wrap(ctx, 1, keys.AD{Purpose: keys.PurposeBucketKey, Repo: admin.Repo(), Bucket: b, KEKVersion: 1, KeyVersion: 1}, bkKey)
	if err != nil {
		t.Fatal(err)
	}
	kc, _ := keys.KeyCheck(bkKey)
	bk := remote.BucketKey{Bucket: b, Version: 1, Wrapped: w, KeyCheck: kc}
	dk, _ := secret.New()
	defer dk.Wipe()
	dad := keys.AD{Purpose: keys.PurposeDataKey, Repo: admin.Repo(), Bucket: b, KEKVersion: 1, Object: keys.ID{1}}
	alg, data, err := gw.WrapDataKey(ctx, bk, dad, dk)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := gw.UnwrapDataKey(ctx, bk, dad, alg, data); err != nil || !got.Equal(dk) {
		t.Fatalf("control: before the destroy: %v", err)
	}
	kr, err := keyring.Open(filepath.Join(dir, keyserver.KeyringFile), pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := kr.Destroy(1); err != nil {
		t.Fatal(err)
	}
	kr.Close()
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.UnwrapDataKey(ctx, bk, dad, alg, data); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("a data key under a destroyed root version's bucket key: want not-my-key, got %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "not-my-key:") || !strings.Contains(d, `client "gw"`) {
		t.Fatalf("the refusal is not logged: %q", d)
	}
}

// TestAuditKeyGrant: '*' with unwrap does not open the audit log's K_0
// without the "audit" operation; with it, it does; another system key
// opens either way.
func TestAuditKeyGrant(t *testing.T) {
	dir, url := start(t)
	plain, err := open(t, url, enroll(t, dir, "cli", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}}))
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := open(t, url, enroll(t, dir, "auditor", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap", "audit"}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k0, _ := secret.New()
	defer k0.Wipe()
	ad := keys.AD{Purpose: keys.PurposeSystemKey, Repo: plain.Repo(), KEKVersion: 1, Object: audit.ObjectID(plain.Repo())}
	w, err := plain.Wrap(ctx, 1, ad, k0)
	if err != nil {
		t.Fatal(err)
	}
	other := ad
	other.Object = keys.ID{0x42}
	wo, err := plain.Wrap(ctx, 1, other, k0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := plain.Unwrap(ctx, wo, other); err != nil || !got.Equal(k0) {
		t.Fatalf("control: another system key: %v", err)
	}
	if _, err := plain.Unwrap(ctx, w, ad); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("the audit key for a '*' client without \"audit\": %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "not-authorized:") || !strings.Contains(d, `client "cli"`) {
		t.Fatalf("not logged: %q", d)
	}
	if got, err := auditor.Unwrap(ctx, w, ad); err != nil || !got.Equal(k0) {
		t.Fatalf("control: with \"audit\": %v", err)
	}
}

// TestRequestRefusalsLogged: data-key requests whose parts disagree (400)
// or do not open (422), a freshness rollback (409) are logged as
// refusals; a freshness change is logged; each beside its control.
func TestRequestRefusalsLogged(t *testing.T) {
	dir, url := start(t)
	admin, err := open(t, url, enroll(t, dir, "admin", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap", "data"}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := keys.ID{6}
	bkKey, _ := secret.New()
	defer bkKey.Wipe()
	w, err := admin.Wrap(ctx, 1, keys.AD{Purpose: keys.PurposeBucketKey, Repo: admin.Repo(), Bucket: b, KEKVersion: 1, KeyVersion: 1}, bkKey)
	if err != nil {
		t.Fatal(err)
	}
	kc, _ := keys.KeyCheck(bkKey)
	bk := remote.BucketKey{Bucket: b, Version: 1, Wrapped: w, KeyCheck: kc}
	dk, _ := secret.New()
	defer dk.Wipe()
	dad := keys.AD{Purpose: keys.PurposeDataKey, Repo: admin.Repo(), Bucket: b, KEKVersion: 1, Object: keys.ID{1}}
	alg, data, err := admin.WrapDataKey(ctx, bk, dad, dk)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	mismatch := dad
	mismatch.KEKVersion = 2
	if _, err := admin.UnwrapDataKey(ctx, bk, mismatch, alg, data); err == nil || !strings.Contains(err.Error(), "names bucket") {
		t.Fatalf("mismatched AD: %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "bad-request:") || !strings.Contains(d, `client "admin"`) {
		t.Fatalf("the mismatch is not logged: %q", d)
	}
	bad := bk
	bad.KeyCheck = make([]byte, len(kc))
	if _, err := admin.UnwrapDataKey(ctx, bad, dad, alg, data); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("wrong key check: %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "not-my-key:") {
		t.Fatalf("the failed open is not logged: %q", d)
	}
	if got, err := admin.UnwrapDataKey(ctx, bk, dad, alg, data); err != nil || !got.Equal(dk) {
		t.Fatalf("control: %v", err)
	}
	// Freshness: a change is logged; a rollback is refused and logged.
	if err := admin.SetFreshness(keyring.Freshness{Sequence: 5, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if fs := records(t, dir, "freshness"); len(fs) != 1 || !strings.Contains(fs[0], "sequence 5") || !strings.Contains(fs[0], `client "admin"`) {
		t.Fatalf("the freshness change is not logged: %q", fs)
	}
	if err := admin.SetFreshness(keyring.Freshness{Sequence: 4, Time: time.Now()}); !errors.Is(err, keyring.ErrFreshnessRollback) {
		t.Fatalf("rollback: %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "rollback:") {
		t.Fatalf("the rollback is not logged: %q", d)
	}
	if fs := records(t, dir, "freshness"); len(fs) != 1 {
		t.Fatalf("a refused rollback was logged as a change: %q", fs)
	}
}

// TestUpperCaseGrant: a bucket id enrolled in upper case is stored in
// lower case and matches; another bucket stays refused.
func TestUpperCaseGrant(t *testing.T) {
	dir, url := start(t)
	s, err := open(t, url, enroll(t, dir, "gw", keyserver.Grant{Buckets: []string{"0A000000000000000000000000000000"}, Ops: []string{"wrap"}}))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{0x0a}, KEKVersion: 1, KeyVersion: 1}
	if _, err := s.Wrap(context.Background(), 1, ad, k); err != nil {
		t.Fatalf("the granted bucket, enrolled in upper case: %v", err)
	}
	ad.Bucket = keys.ID{0x0b}
	if _, err := s.Wrap(context.Background(), 1, ad, k); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("another bucket: %v", err)
	}
	cls, err := keyserver.Dir(dir).Clients()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(cls[0].Grant.Buckets); string(b) != `["0a000000000000000000000000000000"]` {
		t.Fatalf("clients.json holds %s", b)
	}
}

// TestClientListUnreadable: while clients.json cannot be read, every
// connection is refused (fail closed) as a transient failure the client
// retries, not as a refusal of its certificate; once it is back, the
// same bundle opens.
func TestClientListUnreadable(t *testing.T) {
	dir, url := start(t)
	c := enroll(t, dir, "cli", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"unwrap"}})
	if _, err := open(t, url, c); err != nil {
		t.Fatalf("control: %v", err)
	}
	p := filepath.Join(dir, keyserver.ClientsFile)
	if err := os.Rename(p, p+".away"); err != nil {
		t.Fatal(err)
	}
	_, err := open(t, url, c)
	if !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, remote.ErrRefused) {
		t.Fatalf("with clients.json unreadable: want unavailable, got %v", err)
	}
	if err := os.Rename(p+".away", p); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, url, c); err != nil {
		t.Fatalf("clients.json back: %v", err)
	}
}

// TestServerAuditKeyNotServed: the key server's own audit key K_0 is
// sealed under an object id of its own, which the server wraps and opens
// for no client: the auditor (granted '*' with unwrap and audit), handed
// the server's sealed record, is refused; the same client opening a
// home's audit key (audit.ObjectID), the control, is served.
func TestServerAuditKeyNotServed(t *testing.T) {
	dir, url := start(t)
	auditor, err := open(t, url, enroll(t, dir, "auditor", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap", "audit"}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	repo := auditor.Repo()
	rec, err := audit.ReadRecord(keyserver.Dir(dir).AuditDir())
	if err != nil {
		t.Fatal(err)
	}
	sealed := keys.Wrapped{Source: keys.SourceKeyServer, Alg: keys.Alg(rec.Alg), KEKVersion: rec.KEKVersion, Data: rec.Wrapped}
	ad := keys.AD{Purpose: keys.PurposeSystemKey, Repo: repo, KEKVersion: rec.KEKVersion, Object: keyserver.ServerAuditObjectID(repo)}
	if _, err := auditor.Unwrap(ctx, sealed, ad); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "own audit key") {
		t.Fatalf("the server's audit key asked for by a client: %v", err)
	}
	if _, err := auditor.Wrap(ctx, 1, ad, mustKey(t)); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("a wrap under the server's audit key's AD: %v", err)
	}
	// Control: a home's audit key AD, same client.
	k0 := mustKey(t)
	home := ad
	home.Object = audit.ObjectID(repo)
	w, err := auditor.Wrap(ctx, 1, home, k0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := auditor.Unwrap(ctx, w, home); err != nil || !got.Equal(k0) {
		t.Fatalf("control: a home's audit key: %v", err)
	}
}

func mustKey(t *testing.T) secret.Key {
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}
