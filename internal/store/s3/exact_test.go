package s3

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/holdfast/holdfast/internal/store"
)

// TestExactBodyWithholdsTheLastBytes: a body longer than declared fails
// before the last declared byte is handed to the transport, so the server
// never receives a complete request (a short part cannot land over a good
// one). The control: a body of exactly the declared length is read whole.
func TestExactBodyWithholdsTheLastBytes(t *testing.T) {
	const want = 100000
	for _, r := range []struct {
		name string
		body func(b []byte) io.Reader
	}{
		{"reader", func(b []byte) io.Reader { return &exactReader{r: bytes.NewReader(b), want: want} }},
		{"one byte at a time", func(b []byte) io.Reader { return &exactReader{r: iotest.OneByteReader(bytes.NewReader(b)), want: want} }},
		{"seeker", func(b []byte) io.Reader { return &exactSeeker{rs: bytes.NewReader(b), want: want} }},
	} {
		t.Run(r.name, func(t *testing.T) {
			got, err := io.ReadAll(r.body(make([]byte, want)))
			if err != nil || len(got) != want {
				t.Fatalf("control: %d bytes, %v", len(got), err)
			}
			got, err = io.ReadAll(r.body(make([]byte, want+1)))
			if !errors.Is(err, store.ErrShortWrite) {
				t.Fatalf("a longer body: %v", err)
			}
			if len(got) >= want {
				t.Fatalf("a longer body handed over %d of the %d declared bytes", len(got), want)
			}
			if _, err = io.ReadAll(r.body(make([]byte, want-1))); !errors.Is(err, store.ErrShortWrite) {
				t.Fatalf("a shorter body: %v", err)
			}
		})
	}
}
