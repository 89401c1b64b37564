package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
)

func TestPlainHTTPOnlyToLoopbackAndOnlyWhenAllowed(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		endpoint string
		allow    bool
		ok       bool
	}{
		{"http://127.0.0.1:9000", true, true}, // control
		{"http://localhost:9000", true, true}, // control
		{"http://[::1]:9000", true, true},     // control
		{"http://127.0.0.1:9000", false, false},
		{"http://10.1.2.3:9000", true, false},
		{"http://s3.example.com", true, false},
		{"ftp://127.0.0.1:21", true, false},
	} {
		_, err := New(ctx, Config{Bucket: "b", Endpoint: c.endpoint, AllowHTTP: c.allow})
		if (err == nil) != c.ok {
			t.Errorf("%s (allow %v): %v", c.endpoint, c.allow, err)
		}
		if err != nil && strings.HasPrefix(c.endpoint, "http:") && !errors.Is(err, ErrInsecureEndpoint) {
			t.Errorf("%s: refused for the wrong reason: %v", c.endpoint, err)
		}
	}
}

// TestTLS12RefusedUnlessAllowed: a server that speaks at most TLS 1.2 is
// refused by default; allowed explicitly, the handshake succeeds (and the
// server's 404 comes back as ErrNotExist, proving the request got through).
func TestTLS12RefusedUnlessAllowed(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "", http.StatusNotFound)
	}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	ca := writeCA(t, srv)
	ctx := context.Background()
	s, err := New(ctx, Config{Bucket: "b", Endpoint: srv.URL, PathStyle: true, CABundle: ca})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Stat(ctx, "abc")
	if err == nil || errors.Is(err, store.ErrNotExist) || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 server without the flag: %v", err)
	}
	if st := s.Stats(); st.Requests != 1 || st.Retries != 0 {
		t.Fatalf("TLS 1.2 server without the flag: %+v, want one request and no retry", st)
	}
	s12, err := New(ctx, Config{Bucket: "b", Endpoint: srv.URL, PathStyle: true, CABundle: ca, AllowTLS12: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s12.Stat(ctx, "abc"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("TLS 1.2 server with the flag: %v", err)
	}
}

func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServerAuthentication(t *testing.T) {
	ctx := context.Background()
	obj := func(s *Store) error {
		_, err := s.Stat(ctx, "abcdef")
		if errors.Is(err, store.ErrNotExist) {
			return nil // the request reached the server
		}
		return err
	}
	// Control: the right CA and the right pin.
	good := newStore(t, httpsSrv, func(c *Config) { c.PinSPKI = []string{httpsSrv.SPKI} })
	if err := obj(good); err != nil {
		t.Fatalf("control: %v", err)
	}
	// A pin that does not match.
	bad, err := New(ctx, Config{Bucket: good.bucket, Endpoint: httpsSrv.Endpoint, PathStyle: true, CABundle: httpsSrv.CAFile,
		PinSPKI: []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}})
	if err != nil {
		t.Fatal(err)
	}
	if err := obj(bad); err == nil || !errors.Is(err, ErrPinMismatch) {
		t.Fatalf("pin mismatch: %v", err)
	}
	// A refused server is not asked again.
	if st := bad.Stats(); st.Requests != 1 || st.Retries != 0 {
		t.Fatalf("pin mismatch: %+v, want one request and no retry", st)
	}
	// No CA bundle: the self-signed certificate is not trusted.
	untrusted, err := New(ctx, Config{Bucket: good.bucket, Endpoint: httpsSrv.Endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := obj(untrusted); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: %v", err)
	}
	if st := untrusted.Stats(); st.Requests != 1 || st.Retries != 0 {
		t.Fatalf("untrusted certificate: %+v, want one request and no retry", st)
	}
}

// TestMultipartAndNothingButCiphertext: a body of three parts round-trips
// byte-exact, and the stored object carries no client-supplied metadata.
func TestMultipartAndNothingButCiphertext(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, httpsSrv, func(c *Config) { c.PartSize = 5 << 20 })
	body := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16+7)
	if err := s.Put(ctx, "big0", struct{ io.Reader }{bytes.NewReader(body)}, store.UnknownSize); err != nil {
		t.Fatal(err)
	}
	rc, err := s.ReadRange(ctx, "big0", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("multipart body differs (%d vs %d bytes)", len(got), len(body))
	}
	head, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key("big0"))})
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Metadata) != 0 || aws.ToString(head.ETag) == "" || !strings.Contains(aws.ToString(head.ETag), "-3") {
		t.Fatalf("head: metadata %v, ETag %s (want none, and a 3-part upload)", head.Metadata, aws.ToString(head.ETag))
	}
}

// TestAbortIncomplete: an upload left incomplete (as by a writer killed
// mid-upload) is aborted, unless its write is still in progress.
func TestAbortIncomplete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, httpsSrv, nil)
	start := func(name string) {
		up, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name)),
			UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 5<<20))}); err != nil {
			t.Fatal(err)
		}
	}
	start("aaaa")
	start("bbbb")
	uploads := func() []string {
		out, err := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, u := range out.Uploads {
			ks = append(ks, aws.ToString(u.Key))
		}
		return ks
	}
	if got := uploads(); len(got) != 2 {
		t.Fatalf("control: %d incomplete uploads, want 2", len(got))
	}
	n, err := s.AbortIncomplete(ctx, func(name string) bool { return name == "bbbb" })
	if err != nil || n != 1 {
		t.Fatalf("aborted %d (%v), want 1", n, err)
	}
	if got := uploads(); len(got) != 1 || got[0] != s.key("bbbb") {
		t.Fatalf("left %v, want only the one in progress", got)
	}
}
