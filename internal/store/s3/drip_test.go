package s3

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestDripIsCut: a provider that answers a read with its bytes one at a
// time, each well within the idle timeout, gets the read failed once an
// idle timeout passes without the answer delivering what a transfer must
// (minProgress bytes, or its end): it cannot hold a read, and with it a
// verify, for ever. Control: the same bytes sent at once are read.
func TestDripIsCut(t *testing.T) {
	const size = 40
	for _, drip := range []bool{false, true} {
		t.Run(map[bool]string{false: "at once", true: "drip"}[drip], func(t *testing.T) {
			done := make(chan struct{})
			hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", size-1, size))
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Header().Set("ETag", `"e"`)
				w.WriteHeader(http.StatusPartialContent)
				if !drip {
					w.Write(make([]byte, size))
					return
				}
				tick := time.NewTicker(100 * time.Millisecond) // ten times within the idle timeout
				defer tick.Stop()
				for range size {
					if _, err := w.Write([]byte{'x'}); err != nil {
						return
					}
					http.NewResponseController(w).Flush()
					select {
					case <-tick.C:
					case <-done:
						return
					}
				}
			}))
			t.Cleanup(hostile.Close)
			t.Cleanup(func() { close(done) })
			s, err := New(context.Background(), Config{Bucket: "b", Endpoint: hostile.URL, PathStyle: true, AllowHTTP: true,
				MaxAttempts: 1, IdleTimeout: time.Second, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			var n int64
			rc, err := s.ReadRange(context.Background(), "obj", 0, size)
			if err == nil {
				n, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if !drip {
				if err != nil || n != size {
					t.Fatalf("control: %d bytes at once: read %d, %v", size, n, err)
				}
				return
			}
			if err == nil || n == size {
				t.Fatalf("a drip of one byte a tenth of the idle timeout: read %d of %d bytes, %v", n, size, err)
			}
			t.Logf("cut after %d bytes: %v", n, err)
		})
	}
}
