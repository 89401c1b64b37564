package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
)

// hostileProvider stands between a repository and a real S3 server
// (versitygw) and answers as a malicious provider would: a rule sees
// every request and either answers it itself or lets it through.
type hostileProvider struct {
	URL      string
	upstream *url.URL
	tr       *http.Transport
	srv      *httptest.Server

	mu   sync.Mutex
	rule func(w http.ResponseWriter, r *http.Request, pass func() (*http.Response, error)) bool
}

func startHostile(t *testing.T, upstream string) *hostileProvider {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileProvider{upstream: u, tr: &http.Transport{DisableCompression: true}}
	h.srv = httptest.NewUnstartedServer(h)
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.srv.Start()
	h.URL = h.srv.URL
	t.Cleanup(func() { h.srv.Close(); h.tr.CloseIdleConnections() })
	return h
}

// set replaces the rule; nil passes everything through.
func (h *hostileProvider) set(rule func(w http.ResponseWriter, r *http.Request, pass func() (*http.Response, error)) bool) {
	h.mu.Lock()
	h.rule = rule
	h.mu.Unlock()
}

func (h *hostileProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	rule := h.rule
	h.mu.Unlock()
	pass := func() (*http.Response, error) { return h.forward(r) }
	if rule != nil && rule(w, r, pass) {
		return
	}
	resp, err := pass()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	relay(w, resp)
}

// relay copies an upstream answer to w.
func relay(w http.ResponseWriter, resp *http.Response) {
	for k, vs := range resp.Header {
		switch k {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Trailer", "Upgrade":
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// forward passes r on to the server, Host kept (SigV4 signed it).
func (h *hostileProvider) forward(r *http.Request) (*http.Response, error) {
	var body io.Reader = r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, h.upstream.Scheme+"://"+h.upstream.Host+r.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Expect":
			continue
		}
		out.Header[k] = vs
	}
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	return h.tr.RoundTrip(out)
}

// storeKey is the object name a request is for ("" for a listing).
func storeKey(r *http.Request, prefix string) string {
	_, after, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok {
		return ""
	}
	return strings.TrimPrefix(after, prefix)
}

// hostileEnv is a repository on versitygw behind a hostile provider.
type hostileEnv struct {
	h    *hostileProvider
	home string
	s3   *S3Config
	r    *Repo
}

func newHostileEnv(t *testing.T, bucket string) *hostileEnv {
	t.Helper()
	srv := startS3(t, bucket)
	h := startHostile(t, srv.Endpoint)
	e := &hostileEnv{h: h, home: filepath.Join(t.TempDir(), "home"), s3: &S3Config{Bucket: bucket, Prefix: "vault/",
		Endpoint: h.URL, PathStyle: true, AllowHTTP: true, MaxAttempts: 2, MaxBackoff: Duration(time.Millisecond),
		IdleTimeout: Duration(2 * time.Second), Timeout: Duration(20 * time.Second)}}
	r, err := Init(context.Background(), InitOptions{Home: e.home, Passphrase: pass, KDF: keyring.Calibrate(0), S3: e.s3})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	t.Cleanup(func() {
		if e.r != nil {
			e.r.Close()
		}
	})
	return e
}

// loseCatalog closes the repository and removes its catalog, as a burnt
// premises would.
func (e *hostileEnv) loseCatalog(t *testing.T) {
	t.Helper()
	e.r.Close()
	e.r = nil
	for _, s := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(e.home, CatalogFile+s)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// TestRecoverStoreOutageDropsNothing: a recovery whose store stops
// answering for one object written after the last catalog backup (its
// header read, then every further read 503 SlowDown until the attempts
// run out) fails as a store that cannot be reached, instead of
// recovering without the object and naming it unknown. The control, the
// same recovery with the store answering, recovers the object.
func TestRecoverStoreOutageDropsNothing(t *testing.T) {
	ctx := context.Background()
	e := newHostileEnv(t, "outage")
	want := map[string][]byte{"a": random(20_000), "b": random(3000)}
	for k, b := range want {
		if _, err := e.r.Put(ctx, "bkt", k, bytes.NewReader(b), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ea, err := e.r.Stat(ctx, "bkt", "a")
	if err != nil {
		t.Fatal(err)
	}
	victim := format.StoreName(ea.ObjectID)
	e.loseCatalog(t)

	var refused atomic.Int64
	e.h.set(func(w http.ResponseWriter, r *http.Request, _ func() (*http.Response, error)) bool {
		if r.Method != http.MethodGet || storeKey(r, "vault/") != victim || r.Header.Get("Range") == fmt.Sprintf("bytes=0-%d", format.HeaderLen-1) {
			return false
		}
		refused.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		return true
	})
	r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, S3: e.s3, Passphrase: pass})
	if refused.Load() == 0 {
		t.Fatal("the provider refused no read: the test tests nothing")
	}
	if err == nil {
		defer r.Close()
		_, serr := r.Stat(ctx, "bkt", "a")
		t.Fatalf("recovery went on while the store did not answer for %s: catalog lookup %v, unknown %v", victim, serr, rep.Unknown)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("recovery failed, but not as a store that cannot be reached: %v", err)
	}

	// Control: the store answers.
	e.h.set(nil)
	r, rep, err = Recover(ctx, RecoverOptions{Home: e.home, S3: e.s3, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if len(rep.Unknown) != 0 || rep.Objects != 2 {
		t.Fatalf("control: %+v", rep)
	}
	for k, b := range want {
		rd, err := r.OpenObject(ctx, "bkt", k)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		_, err = rd.WriteTo(ctx, &got)
		rd.Close()
		if err != nil || !bytes.Equal(got.Bytes(), b) {
			t.Fatalf("control: %s: %v", k, err)
		}
	}
}

// rewriteListing lets every listing through with its XML body rewritten
// by edit.
func rewriteListing(edit func(body string) string) func(w http.ResponseWriter, r *http.Request, pass func() (*http.Response, error)) bool {
	return func(w http.ResponseWriter, r *http.Request, pass func() (*http.Response, error)) bool {
		if r.Method != http.MethodGet || r.URL.Query().Get("list-type") != "2" {
			return false
		}
		resp, err := pass()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return true
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return true
		}
		out := edit(string(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(out)))
		resp.Body = io.NopCloser(strings.NewReader(out))
		relay(w, resp)
		return true
	}
}

// duplicateEntry lists the entry of name twice.
func duplicateEntry(name string) func(string) string {
	return func(body string) string {
		i := strings.Index(body, "<Key>vault/"+name+"</Key>")
		if i < 0 {
			return body
		}
		start := strings.LastIndex(body[:i], "<Contents>")
		end := i + strings.Index(body[i:], "</Contents>") + len("</Contents>")
		return body[:end] + body[start:end] + body[end:]
	}
}

// TestRecoverListingDuplicates: a listing that names a genuine object
// twice (written after the last backup, so the scan adopts it) recovers
// it once and reports nothing unknown, as the control — the same
// recovery with the listing as the server gave it — does.
func TestRecoverListingDuplicates(t *testing.T) {
	for _, dup := range []bool{true, false} {
		t.Run(fmt.Sprintf("dup=%v", dup), func(t *testing.T) {
			ctx := context.Background()
			e := newHostileEnv(t, "dups")
			if _, err := e.r.Put(ctx, "bkt", "a", bytes.NewReader(random(5000)), PutOptions{}); err != nil {
				t.Fatal(err)
			}
			ea, err := e.r.Stat(ctx, "bkt", "a")
			if err != nil {
				t.Fatal(err)
			}
			name := format.StoreName(ea.ObjectID)
			e.loseCatalog(t)
			var listed atomic.Int64
			e.h.set(rewriteListing(func(body string) string {
				listed.Add(1)
				if dup {
					return duplicateEntry(name)(body)
				}
				return body
			}))
			r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, S3: e.s3, Passphrase: pass})
			if err != nil {
				t.Fatal(err)
			}
			e.r = r
			if listed.Load() == 0 {
				t.Fatal("no listing went through the provider")
			}
			if rep.Objects != 1 || len(rep.Unknown) != 0 {
				t.Fatalf("%d objects, unknown %v", rep.Objects, rep.Unknown)
			}
			if _, err := r.Stat(ctx, "bkt", "a"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestVerifyListingThatCannotEnd: a provider whose listing never ends —
// after the real first page, empty pages that each say "truncated, go on
// from token T" with the token they were asked with — stops verify with
// an error after a page or two (could not check), instead of being asked
// for the same page for ever; so does a page that says "truncated" and
// gives no token, which would end the listing unnoticed, hiding what it
// did not list. The control pages the same way with a new token each
// time and then ends: verify is clean.
func TestVerifyListingThatCannotEnd(t *testing.T) {
	for _, mode := range []string{"repeat", "no-token", "control"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			e := newHostileEnv(t, "pages")
			if _, err := e.r.Put(ctx, "bkt", "a", bytes.NewReader(random(5000)), PutOptions{}); err != nil {
				t.Fatal(err)
			}
			const endAfter = 300 // so that the test ends whatever verify does
			var pages atomic.Int64
			e.h.set(func(w http.ResponseWriter, r *http.Request, pass func() (*http.Response, error)) bool {
				if r.Method != http.MethodGet || r.URL.Query().Get("list-type") != "2" {
					return false
				}
				n := pages.Add(1)
				more, token := n < 3, fmt.Sprintf("<NextContinuationToken>hostile-%d</NextContinuationToken>", n)
				switch mode {
				case "repeat":
					more, token = n < endAfter, "<NextContinuationToken>hostile-again</NextContinuationToken>"
				case "no-token":
					token = ""
				}
				if !r.URL.Query().Has("continuation-token") {
					return rewriteListing(func(body string) string {
						if !more {
							return body
						}
						return strings.Replace(body, "<IsTruncated>false</IsTruncated>", "<IsTruncated>true</IsTruncated>"+token, 1)
					})(w, r, pass)
				}
				body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
					`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>pages</Name><Prefix>vault/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>` +
					fmt.Sprintf("<IsTruncated>%v</IsTruncated>", more)
				if more {
					body += token
				}
				body += "</ListBucketResult>"
				w.Header().Set("Content-Type", "application/xml")
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				io.WriteString(w, body)
				return true
			})
			var fs []Finding
			sum, err := e.r.Verify(ctx, VerifyOptions{}, func(f Finding) { fs = append(fs, f) })
			n := pages.Load()
			if mode != "control" {
				if err == nil || n > 10 {
					t.Fatalf("verify asked for %d pages and ended with %v (%+v, %+v)", n, err, sum, fs)
				}
				return
			}
			if err != nil || sum.Verdict() != VerdictClean || n < 3 {
				t.Fatalf("control: %d pages, %v, %+v, %+v", n, err, sum, fs)
			}
		})
	}
}
