package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/holdfast/holdfast/internal/store"
	fp "github.com/holdfast/holdfast/internal/testutil/faultproxy"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// sentHeaders records the header names (canonical) and selected values of
// every request through a proxy.
type sentHeaders struct {
	mu    sync.Mutex
	names map[string]int
	types map[string]bool // Content-Type values
	reqs  map[string]int  // "METHOD ?query-keys"
}

func (h *sentHeaders) observe(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range r.Header {
		h.names[http.CanonicalHeaderKey(k)]++
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		h.types[ct] = true
	}
	var q []string
	for k := range r.URL.Query() {
		if k != "x-id" { // the SDK's operation name, not a parameter
			q = append(q, k)
		}
	}
	slices.Sort(q)
	h.reqs[r.Method+" ?"+strings.Join(q, "&")]++
}

// forbidden reports the headers that must never reach the provider: client
// metadata, tags, checksums a provider could compare with known plaintext
// (or that name a plaintext checksum algorithm), and content types.
func (h *sentHeaders) forbidden() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var bad []string
	for k := range h.names {
		l := strings.ToLower(k)
		switch {
		case strings.HasPrefix(l, "x-amz-meta-"), l == "x-amz-tagging", l == "content-md5",
			strings.HasPrefix(l, "x-amz-checksum"), l == "x-amz-sdk-checksum-algorithm", l == "x-amz-trailer",
			l == "content-disposition", l == "content-encoding", l == "content-language", l == "cache-control",
			l == "x-amz-website-redirect-location", l == "x-amz-storage-class":
			bad = append(bad, k)
		}
	}
	for ct := range h.types {
		// The SDK's default for a body, and the XML of a multipart
		// completion, are not ours; anything else would be.
		if ct != "application/octet-stream" && ct != "application/xml" {
			bad = append(bad, "Content-Type: "+ct)
		}
	}
	slices.Sort(bad)
	return bad
}

// allowed is every header Holdfast's S3 requests may carry: routing,
// SigV4 signing (its payload hash is of the ciphertext), the SDK's
// invocation ids, lengths, ranges and conditional reads.
var allowed = map[string]bool{
	"Host": true, "User-Agent": true, "Authorization": true, "X-Amz-Date": true, "X-Amz-Content-Sha256": true,
	"X-Amz-Security-Token": true, "Amz-Sdk-Invocation-Id": true, "Amz-Sdk-Request": true, "Content-Length": true,
	"Content-Type": true, "Accept-Encoding": true, "Range": true, "If-Match": true, "Expect": true,
	"X-Amz-User-Agent": true, "X-Amz-Decoded-Content-Length": true,
}

// TestOnlyAllowListedHeadersReachTheProvider: every request of a single-
// part put, a 4-part upload, a ranged read, a stat, a listing and a delete
// carries only allow-listed headers and none of the forbidden ones; the
// control — the same observer watching a request that does carry metadata,
// tags and a checksum — catches each of them.
func TestOnlyAllowListedHeadersReachTheProvider(t *testing.T) {
	ctx := context.Background()
	h := &sentHeaders{names: map[string]int{}, types: map[string]bool{}, reqs: map[string]int{}}
	e := newFaultEnvObserved(t, h.observe, func(c *Config) { c.Concurrency = 2 })
	small := randomBody(1, 5000)
	big := randomBody(2, 3*(5<<20)+17)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.s.Put(ctx, "small", bytes.NewReader(small), int64(len(small))))
	must(e.s.Put(ctx, "big", struct{ io.Reader }{bytes.NewReader(big)}, store.UnknownSize))
	got, err := readAllOf(ctx, e.s, "big", 7, 100_000)
	must(err)
	if !bytes.Equal(got, big[7:100_007]) {
		t.Fatal("ranged read differs")
	}
	_, err = e.s.Stat(ctx, "small")
	must(err)
	must(e.s.List(ctx, "", func(store.ObjectInfo) error { return nil }))
	must(e.s.Delete(ctx, "small"))
	if h.reqs["POST ?uploads"] != 1 || h.reqs["PUT ?partNumber&uploadId"] != 4 || h.reqs["POST ?uploadId"] != 1 {
		t.Fatalf("expected one 4-part multipart upload, saw %v", h.reqs)
	}
	if bad := h.forbidden(); len(bad) != 0 {
		t.Fatalf("forbidden headers sent to the provider: %v", bad)
	}
	for k := range h.names {
		if !allowed[k] {
			t.Errorf("header %s is not on the allow-list", k)
		}
	}

	// Control: a request that carries metadata, a tag, a checksum and a
	// content type, sent through the same observer, is caught.
	c := &sentHeaders{names: map[string]int{}, types: map[string]bool{}, reqs: map[string]int{}}
	ctl := newFaultEnvObserved(t, c.observe, nil)
	if _, err := ctl.s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(ctl.s.bucket), Key: aws.String(ctl.s.key("leaky")),
		Body: bytes.NewReader([]byte("plaintext")), Metadata: map[string]string{"project": "apollo"}, Tagging: aws.String("a=b"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ContentType: aws.String("text/x-secret")}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Join(c.forbidden(), " ")
	for _, want := range []string{"X-Amz-Meta-Project", "X-Amz-Tagging", "X-Amz-Checksum-Sha256", "Content-Type: text/x-secret"} {
		if !strings.Contains(bad, want) {
			t.Errorf("control: %s not caught (caught: %s)", want, bad)
		}
	}
}

// newFaultEnvObserved is newFaultEnv with no faults and an observer.
func newFaultEnvObserved(t *testing.T, observe func(*http.Request), mod func(*Config)) *faultEnv {
	t.Helper()
	direct := newStore(t, httpSrv, nil)
	p, err := fp.Start(fp.Options{Upstream: httpSrv.Endpoint, Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c := Config{Bucket: direct.bucket, Prefix: direct.prefix, Endpoint: p.URL, PathStyle: true, AllowHTTP: true, PartSize: 5 << 20}
	if mod != nil {
		mod(&c)
	}
	s, err := New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return &faultEnv{direct: direct, proxy: p, s: s}
}

// TestListPaginates: a listing longer than a page is followed page by
// page, in order, to the end.
func TestListPaginates(t *testing.T) {
	ctx := context.Background()
	h := &sentHeaders{names: map[string]int{}, types: map[string]bool{}, reqs: map[string]int{}}
	e := newFaultEnvObserved(t, h.observe, nil)
	e.s.listPage = 7
	var want []string
	for i := range 25 {
		n := fmt.Sprintf("obj%03d", i)
		want = append(want, n)
		if err := e.direct.Put(ctx, n, bytes.NewReader([]byte(n)), int64(len(n))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := e.s.List(ctx, "", func(o store.ObjectInfo) error { got = append(got, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %v", got)
	}
	if n := h.reqs["GET ?continuation-token&list-type&max-keys&prefix"] + h.reqs["GET ?list-type&max-keys&prefix"]; n != 4 {
		t.Fatalf("%d listing requests for 25 objects in pages of 7, want 4 (%v)", n, h.reqs)
	}
}

// TestCredentialsFromSharedFileAndProfile: with no credentials in the
// environment, the store signs with the named profile of the shared
// credentials file; the control, a profile with a wrong secret, is refused
// by the server.
func TestCredentialsFromSharedFileAndProfile(t *testing.T) {
	ctx := context.Background()
	seed := newStore(t, httpSrv, nil)
	if err := seed.Put(ctx, "hello", bytes.NewReader([]byte("hi")), 2); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n"+
		"[holdfast-test]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n"+
		"[holdfast-wrong]\naws_access_key_id = %s\naws_secret_access_key = not-the-secret\n",
		versitygw.AccessKey, versitygw.SecretKey, versitygw.AccessKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	for _, tc := range []struct {
		profile string
		ok      bool
	}{{"holdfast-test", true}, {"holdfast-wrong", false}} {
		t.Setenv("AWS_PROFILE", tc.profile)
		s, err := New(ctx, Config{Bucket: seed.bucket, Prefix: seed.prefix, Endpoint: httpSrv.Endpoint, PathStyle: true,
			AllowHTTP: true, MaxAttempts: 1, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Stat(ctx, "hello")
		if (err == nil) != tc.ok {
			t.Fatalf("profile %s: %v", tc.profile, err)
		}
	}
}

// TestVirtualHostAddressing: without path-style addressing the bucket is
// named in the host (bucket.localhost:PORT, which a test dialer sends to
// 127.0.0.1), as AWS S3 expects; a put, a ranged read and a listing work
// against a server that serves virtual hosts, and every request named the
// bucket in its Host header, never in its path.
func TestVirtualHostAddressing(t *testing.T) {
	ctx := context.Background()
	srv, err := versitygw.StartWith(t.TempDir(), versitygw.Options{TLS: true, VirtualDomain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if err := srv.MakeBucket(ctx, "vhost-bucket"); err != nil {
		t.Fatal(err)
	}
	port := srv.Endpoint[strings.LastIndex(srv.Endpoint, ":")+1:]
	var mu sync.Mutex
	var dialed []string
	d := &net.Dialer{}
	testDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		host, p, err := net.SplitHostPort(addr)
		if err != nil || !strings.HasSuffix(host, ".localhost") && host != "localhost" {
			return nil, fmt.Errorf("test dialer: unexpected address %q", addr)
		}
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", p))
	}
	t.Cleanup(func() { testDial = nil })
	s, err := New(ctx, Config{Bucket: "vhost-bucket", Prefix: "repo/", Endpoint: "https://localhost:" + port, CABundle: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	body := randomBody(9, 70_000)
	if err := s.Put(ctx, "obj", bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	got, err := readAllOf(ctx, s, "obj", 100, 1000)
	if err != nil || !bytes.Equal(got, body[100:1100]) {
		t.Fatalf("ranged read: %v", err)
	}
	var names []string
	if err := s.List(ctx, "", func(o store.ObjectInfo) error { names = append(names, o.Name); return nil }); err != nil || len(names) != 1 {
		t.Fatalf("list: %v %v", names, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if a != "vhost-bucket.localhost:"+port {
			t.Fatalf("dialed %q, want the bucket's virtual host", a)
		}
	}
	if len(dialed) == 0 {
		t.Fatal("no connection made through the test dialer")
	}
	// Control: the same object seen path-style from the provider's side.
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("vhost-bucket"), Key: aws.String("repo/obj")}); err != nil {
		t.Fatalf("provider does not see the object under the bucket: %v", err)
	}
}

// TestConnectionsReused: a provider that keeps connections open (as S3
// does) gets 24 concurrent readers, eight rounds, over about as many
// connections as readers: the store keeps an idle connection for each.
// The control is the same run keeping the SDK's default of 10 idle
// connections per host, where each round closes and opens 14 again
// (about 120 dials, each with a TLS handshake). The bound allows twice
// the readers: net/http dials for a request that finds no idle
// connection and keeps the new one even when another comes back first,
// which a loaded machine shows as a few more dials than readers.
func TestConnectionsReused(t *testing.T) {
	ctx := context.Background()
	srv, err := versitygw.StartWith(t.TempDir(), versitygw.Options{TLS: true, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if err := srv.MakeBucket(ctx, "reuse-bucket"); err != nil {
		t.Fatal(err)
	}
	const readers, rounds = 24, 8
	const bound = 2 * readers
	kept := dialsForReads(t, srv, readers, rounds)
	if kept > bound {
		t.Fatalf("%d reads made %d connections, want at most %d", readers*rounds, kept, bound)
	}
	t.Cleanup(func() { idleConns = MaxIdleConns })
	idleConns = 10
	few := dialsForReads(t, srv, readers, rounds)
	if few <= bound {
		t.Fatalf("control: keeping 10 idle connections, %d reads made only %d connections (bound %d); the test cannot tell", readers*rounds, few, bound)
	}
	t.Logf("%d reads: %d connections keeping %d idle, %d keeping 10", readers*rounds, kept, MaxIdleConns, few)
}

// dialsForReads makes a store on srv, writes one small object, reads it
// with readers goroutines for rounds rounds, and returns how many
// connections the reads dialled.
func dialsForReads(t *testing.T, srv *versitygw.Server, readers, rounds int) int64 {
	t.Helper()
	ctx := context.Background()
	var dials atomic.Int64
	d := &net.Dialer{}
	testDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	t.Cleanup(func() { testDial = nil })
	s, err := New(ctx, Config{Bucket: "reuse-bucket", Endpoint: srv.Endpoint, CABundle: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	body := randomBody(3, 4096)
	if err := s.Put(ctx, "small", bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	before := dials.Load()
	defer s.Close()
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := readAllOf(ctx, s, "small", 0, -1)
				if err == nil && !bytes.Equal(got, body) {
					err = errors.New("read back other bytes")
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return dials.Load() - before
}
