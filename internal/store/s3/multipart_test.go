package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
)

func randomBody(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// Several multipart uploads at once share the store's few part buffers
// (here 3, for 4 uploads of 4 parts each) without deadlock, each
// round-trips byte-exact, and every buffer is back in the pool afterwards.
func TestConcurrentMultipartShareBuffers(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, httpSrv, nil) // 5 MiB parts, concurrency 2: 3 buffers
	const n = 4
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		bodies[i] = randomBody(uint64(i), 3*(5<<20)+1000*i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(ctx, fmt.Sprintf("obj%d", i), struct{ io.Reader }{bytes.NewReader(bodies[i])}, store.UnknownSize)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		rc, err := s.ReadRange(ctx, fmt.Sprintf("obj%d", i), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, bodies[i]) {
			t.Fatalf("object %d differs (%d vs %d bytes, %v)", i, len(got), len(bodies[i]), err)
		}
	}
	if o := s.parts.pool.Outstanding(); o != 0 {
		t.Fatalf("%d part buffers not returned", o)
	}
	if idle := s.parts.pool.Idle(); idle > 3 {
		t.Fatalf("pool holds %d buffers, more than concurrency+1 = 3", idle)
	}
}

// failingReader yields n random bytes, then fails.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// A body that fails after two parts are up fails the Put with its error,
// stores nothing, and leaves no incomplete upload behind; the same body
// without the failure is stored.
func TestFailedMultipartIsAborted(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, httpSrv, nil)
	boom := errors.New("source died")
	for _, fail := range []bool{true, false} {
		body := randomBody(7, 3*(5<<20)+10)
		var r io.Reader = bytes.NewReader(body)
		if fail {
			r = &failingReader{r: bytes.NewReader(body), n: 2*(5<<20) + 100, err: boom}
		}
		err := s.Put(ctx, "victim", struct{ io.Reader }{r}, store.UnknownSize)
		_, statErr := s.Stat(ctx, "victim")
		ups, lerr := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
		if lerr != nil {
			t.Fatal(lerr)
		}
		if fail {
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), "victim") {
				t.Fatalf("put: %v, want the source's error naming the object", err)
			}
			if !errors.Is(statErr, store.ErrNotExist) {
				t.Fatalf("failed put left an object: %v", statErr)
			}
		} else if err != nil || statErr != nil {
			t.Fatalf("control: put %v, stat %v", err, statErr)
		}
		if len(ups.Uploads) != 0 {
			t.Fatalf("fail=%v: %d incomplete uploads left", fail, len(ups.Uploads))
		}
		if o := s.parts.pool.Outstanding(); o != 0 {
			t.Fatalf("fail=%v: %d part buffers not returned", fail, o)
		}
	}
}

// A part size outside S3's limits is refused when the store is made; the
// smallest allowed one is accepted.
func TestPartSizeLimits(t *testing.T) {
	for _, tc := range []struct {
		size int64
		ok   bool
	}{{5 << 20, true}, {5<<20 - 1, false}, {5<<30 + 1, false}} {
		_, err := New(context.Background(), Config{Bucket: "b", Endpoint: httpSrv.Endpoint, AllowHTTP: true, PartSize: tc.size})
		if (err == nil) != tc.ok {
			t.Fatalf("part size %d: %v", tc.size, err)
		}
	}
}
