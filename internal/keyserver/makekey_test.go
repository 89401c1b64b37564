package keyserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/keyserver/api"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestMakeBucketKey: the server makes a bucket key for a client granted
// wrap on the bucket and answers with its wrap and key check only. The
// server's keyring opens the record and the key matches the check; the
// key's bytes are not in the raw answer; the client, without unwrap,
// cannot have the record opened, yet a data-only client gets data keys
// under it. The make is logged; a client without wrap, another bucket,
// another purpose and a broken log are refused, each beside its control.
func TestMakeBucketKey(t *testing.T) {
	dir, url := start(t)
	ctx := context.Background()
	bucket := keys.ID{7}
	mc := enroll(t, dir, "maker", keyserver.Grant{Buckets: []string{"07000000000000000000000000000000"}, Ops: []string{"wrap"}})
	maker, err := open(t, url, mc)
	if err != nil {
		t.Fatal(err)
	}
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: maker.Repo(), Bucket: bucket, KEKVersion: 1, KeyVersion: 1}

	// Made, through the raw API: the answer is exactly a wrap and a check.
	raw := rawPost(t, url, mc, api.PathBucketKeyMake, api.MakeBucketKeyRequest{AD: ad})
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || len(fields) != 2 || fields["wrapped"] == nil || fields["key_check"] == nil {
		t.Fatalf("the answer holds fields %v (%v), want wrapped and key_check only", fields, err)
	}
	var out api.MakeBucketKeyResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out.Wrapped.Source != keys.SourceKeyServer || out.Wrapped.KEKVersion != 1 || len(out.KeyCheck) != 32 {
		t.Fatalf("made record: source %d root v%d, %d-byte key check", out.Wrapped.Source, out.Wrapped.KEKVersion, len(out.KeyCheck))
	}
	k := openWithServerKeyring(t, dir, out.Wrapped, ad)
	defer k.Wipe()
	if kc, err := keys.KeyCheck(k); err != nil || !bytes.Equal(kc, out.KeyCheck) {
		t.Fatalf("the made key does not match its key check: %v", err)
	}
	assertKeyAbsent(t, k, raw)
	if ms := records(t, dir, "make"); len(ms) != 1 || !strings.Contains(ms[0], `client "maker"`) || !strings.Contains(ms[0], fmt.Sprintf("bucket=%x", bucket[:])) {
		t.Fatalf("the make is not logged: %q", ms)
	}

	// Through the client: a second key, another record.
	ad2 := ad
	ad2.KeyVersion = 2
	w2, kc2, err := maker.MakeBucketKey(ctx, ad2)
	if err != nil {
		t.Fatal(err)
	}
	k2 := openWithServerKeyring(t, dir, w2, ad2)
	defer k2.Wipe()
	if kc, _ := keys.KeyCheck(k2); !bytes.Equal(kc, kc2) || k2.Equal(k) {
		t.Fatal("the second make: a key check that does not match, or the same key")
	}
	// The record opens only on the server: the maker may not unwrap it,
	// a data-only client uses it there.
	if _, err := maker.Unwrap(ctx, w2, ad2); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("the made key released to a wrap-only client: %v", err)
	}
	gw, err := open(t, url, enroll(t, dir, "gw", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"data"}}))
	if err != nil {
		t.Fatal(err)
	}
	bk := remote.BucketKey{Bucket: bucket, Version: 2, Wrapped: w2, KeyCheck: kc2}
	dk, _ := secret.New()
	defer dk.Wipe()
	dad := keys.AD{Purpose: keys.PurposeDataKey, Repo: ad.Repo, Bucket: bucket, KEKVersion: 2, Object: keys.ID{1}}
	if _, data, err := gw.WrapDataKey(ctx, bk, dad, dk); err != nil {
		t.Fatalf("a data key under the made bucket key: %v", err)
	} else if got, err := keys.UnwrapSoftware(k2, dad, data); err != nil || !got.Equal(dk) {
		t.Fatalf("the server's data key wrap does not open under the made key: %v", err)
	}
	if _, _, err := gw.MakeBucketKey(ctx, ad); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "may not wrap") {
		t.Fatalf("a client without wrap: %v", err)
	}

	refused := []struct {
		name string
		ad   func(keys.AD) keys.AD
		want error
		why  string
	}{
		{"another bucket", func(a keys.AD) keys.AD { a.Bucket = keys.ID{8}; return a }, remote.ErrRefused, "may not use bucket"},
		{"a system key", func(a keys.AD) keys.AD { a.Purpose = keys.PurposeSystemKey; return a }, nil, "not a bucket key's"},
		{"no bucket", func(a keys.AD) keys.AD { a.Bucket = keys.ID{}; return a }, nil, "names no bucket"},
		{"another repository", func(a keys.AD) keys.AD { a.Repo = keys.ID{9}; return a }, nil, "another repository"},
		{"an unknown root version", func(a keys.AD) keys.AD { a.KEKVersion = 5; return a }, nil, "root key version 5"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := maker.MakeBucketKey(ctx, tc.ad(ad))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("want an error naming %q, got %v", tc.why, err)
			}
			if d := lastRefusal(t, dir); !strings.Contains(d, tc.why) || !strings.Contains(d, `client "maker"`) || !strings.Contains(d, "bucketkey-make") {
				t.Fatalf("the refusal is not logged: %q", d)
			}
		})
	}

	// A log that cannot take the record: no key is made (fail closed).
	t.Run("broken log", func(t *testing.T) {
		p := keyserver.Dir(dir).LogPath()
		whole, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(bytes.Clone(whole), `{"seq":`...), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err = maker.MakeBucketKey(ctx, ad)
		if err := os.WriteFile(p, whole, 0o600); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "cannot answer now") {
			t.Fatalf("with the log broken: want the server's unavailable, got %v", err)
		}
		if _, _, err := maker.MakeBucketKey(ctx, ad); err != nil {
			t.Fatalf("control: the log mended: %v", err)
		}
		if ms := records(t, dir, "make"); len(ms) != 3 {
			t.Fatalf("%d makes logged, want 3 (the failed one not among them)", len(ms))
		}
	})
}

// openWithServerKeyring opens a record the server made with the server's
// own keyring file, as an auditor on premises would.
func openWithServerKeyring(t *testing.T, dir string, w keys.Wrapped, ad keys.AD) secret.Key {
	t.Helper()
	kr, err := keyring.Open(filepath.Join(dir, keyserver.KeyringFile), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	w.Source = keys.SourceKeyring
	k, err := kr.Unwrap(context.Background(), w, ad)
	if err != nil {
		t.Fatalf("the made record does not open under the server's root key: %v", err)
	}
	return k
}

// assertKeyAbsent fails if k's bytes are in b, raw or in base64 (how
// encoding/json writes bytes).
func assertKeyAbsent(t *testing.T, k secret.Key, b []byte) {
	t.Helper()
	k.Use(func(kb []byte) error {
		for _, form := range [][]byte{kb, []byte(base64.StdEncoding.EncodeToString(kb)), []byte(base64.StdEncoding.EncodeToString(kb)[:40])} {
			if bytes.Contains(b, form) {
				t.Errorf("the answer holds the made key")
			}
		}
		return nil
	})
}

// rawPost sends body to path with the client bundle c and returns the
// answer's bytes, so that a test sees exactly what crossed the wire.
func rawPost(t *testing.T, url string, c remote.Config, path string, body any) []byte {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}}
	defer tr.CloseIdleConnections()
	in, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Post(url+path, "application/json", bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d %s (%v)", path, resp.StatusCode, out, err)
	}
	return out
}
