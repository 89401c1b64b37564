package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
)

// floodSize is what the hostile provider below sends at most; the tests
// want the store to stop reading long before.
const floodSize = 96 << 20

// flood answers with status and a body of n bytes of junk made of unit,
// counting what the client took.
func flood(w http.ResponseWriter, status int, hdr map[string]string, head, unit string, n int64, served *atomic.Int64) {
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	m, _ := io.WriteString(w, head)
	served.Add(int64(m))
	buf := bytes.Repeat([]byte(unit), 64<<10/len(unit))
	for left := n - int64(m); left > 0; left = n - served.Load() {
		m, err := w.Write(buf[:min(int64(len(buf)), left)])
		served.Add(int64(m))
		if err != nil {
			return
		}
	}
}

// TestAnswersAreBounded: a provider that answers a read with 500 and an
// endless error body, or a listing with an endless page, gets the
// request failed after a bounded part of it has been read (the SDK
// would hold all of it in memory until the request's deadline); the
// control, an object's ranged read answered 206 with as many bytes,
// delivers them all: object bodies stream, and only they are unbounded.
func TestAnswersAreBounded(t *testing.T) {
	ctx := context.Background()
	real := newStore(t, httpSrv, nil)
	up, err := url.Parse(httpSrv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	// One round of the test: its mode and what the provider served in it
	// (a handler of an earlier round may still be writing).
	type round struct {
		mode   string
		served atomic.Int64
	}
	var cur atomic.Pointer[round]
	cur.Store(&round{})
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := cur.Load()
		mode, served := rd.mode, &rd.served
		switch {
		case mode == "error" && r.Method == http.MethodGet:
			flood(w, http.StatusInternalServerError, map[string]string{"Content-Type": "application/xml"},
				"<Error><Code>InternalError</Code><Message>", "please wait ", floodSize, served)
		case mode == "listing" && r.URL.Query().Get("list-type") == "2":
			flood(w, http.StatusOK, map[string]string{"Content-Type": "application/xml"},
				`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>`,
				"<Contents><Key>x</Key><Size>1</Size></Contents>", floodSize, served)
		case mode == "object" && r.Method == http.MethodGet:
			flood(w, http.StatusPartialContent, map[string]string{"Content-Range": fmt.Sprintf("bytes 0-%d/%d", floodSize-1, floodSize),
				"Content-Length": fmt.Sprint(floodSize), "ETag": `"e"`}, "", "ciphertext", floodSize, served)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hostile.Close)
	s, err := New(ctx, Config{Bucket: real.bucket, Prefix: real.prefix, Endpoint: hostile.URL, PathStyle: true, AllowHTTP: true, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const bound = 40 << 20
	for _, m := range []string{"error", "listing", "object"} {
		rd := &round{mode: m}
		cur.Store(rd)
		served := &rd.served
		var n int64
		switch m {
		case "listing":
			err = s.List(ctx, "", func(store.ObjectInfo) error { return nil })
		default:
			var rc io.ReadCloser
			rc, err = s.ReadRange(ctx, "obj", 0, floodSize)
			if err == nil {
				n, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
		}
		switch {
		case m == "object":
			if err != nil || n != floodSize {
				t.Fatalf("control: an object's body of %d bytes: read %d, %v", floodSize, n, err)
			}
		case err == nil || served.Load() > bound:
			t.Fatalf("%s: the provider sent %d bytes before the store stopped reading (%v)", m, served.Load(), err)
		default:
			t.Logf("%s: stopped after %d bytes: %v", m, served.Load(), err)
		}
	}
}

// TestRedirectsAreNotFollowed: a provider that answers every kind of
// request with a redirect to another host gets no request of the store
// to that host, signed or not: the request fails. The control sends the
// same requests to the provider unredirected, and they succeed; and a
// client that does follow redirects is seen at the other host.
func TestRedirectsAreNotFollowed(t *testing.T) {
	ctx := context.Background()
	real := newStore(t, httpSrv, nil)
	body := randomBody(4, 5000)
	if err := real.Put(ctx, "obj", bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(other.Close)
	up, err := url.Parse(httpSrv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	var redirect atomic.Bool
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if redirect.Load() {
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hostile.Close)
	s, err := New(ctx, Config{Bucket: real.bucket, Prefix: real.prefix, Endpoint: hostile.URL, PathStyle: true, AllowHTTP: true, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ops := map[string]func() error{
		"get":  func() error { _, err := readAllOf(ctx, s, "obj", 0, -1); return err },
		"stat": func() error { _, err := s.Stat(ctx, "obj"); return err },
		"list": func() error { return s.List(ctx, "", func(store.ObjectInfo) error { return nil }) },
		"put":  func() error { return s.Put(ctx, "new", bytes.NewReader(body), int64(len(body))) },
	}
	for _, on := range []bool{true, false} {
		redirect.Store(on)
		for name, op := range ops {
			if err := op(); (err == nil) == on {
				t.Errorf("redirect=%v: %s: %v", on, name, err)
			}
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("%d requests followed the redirect to another host", n)
	}
	// The counter sees a client that follows redirects.
	redirect.Store(true)
	resp, err := http.Get(hostile.URL + "/" + real.bucket)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if elsewhere.Load() != 1 {
		t.Fatal("control: a client that follows the redirect was not seen at the other host")
	}
}
