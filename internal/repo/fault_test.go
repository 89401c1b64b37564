package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/keyring"
	fp "github.com/holdfast/holdfast/internal/testutil/faultproxy"
)

// TestS3Faults runs a repository on a real S3 server (versitygw) through a
// fault-injecting proxy, with the store's default number of attempts and
// small timeouts and backoff (for speed):
//
//   - with a seeded 10 % mix of every kind of fault, 200 puts (a few of
//     them multipart) and 200 gets all succeed byte-exact, every kind of
//     fault happened, each cost a retry, and verify then passes;
//   - the control, the same workload with no faults, makes no retry;
//   - with every request failing, a put fails within its deadline with a
//     clear error and leaves no catalog entry, a get fails likewise; once
//     the server is reachable again verify passes and the same put
//     succeeds (the control).
func TestS3Faults(t *testing.T) {
	ctx := context.Background()
	srv := startS3(t, "faults")
	p, err := fp.Start(fp.Options{Upstream: srv.Endpoint, CAFile: srv.CAFile, StallFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	const timeout = 20 * time.Second
	home := filepath.Join(t.TempDir(), "home")
	r, err := Init(ctx, InitOptions{Home: home, Passphrase: pass, KDF: keyring.Calibrate(0), S3: &S3Config{
		Bucket: "faults", Prefix: "vault/", Endpoint: p.URL, PathStyle: true, AllowHTTP: true, PartSize: 5 << 20, Concurrency: 1,
		MaxBackoff: Duration(10 * time.Millisecond), IdleTimeout: Duration(200 * time.Millisecond), Timeout: Duration(timeout)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	stats := func(t *testing.T) (int64, int64) {
		st, ok := r.StoreStats()
		if !ok {
			t.Fatal("the S3 store keeps no stats")
		}
		return st.Requests, st.Retries
	}

	// workload puts 200 objects under prefix, one at a time (so that the
	// proxy's schedule is reproducible), then gets each.
	workload := func(t *testing.T, prefix string) {
		t.Helper()
		rng := rand.New(rand.NewPCG(1, 2))
		want := map[string][]byte{}
		for i := range 200 {
			n := rng.IntN(20_000)
			if i%50 == 0 {
				n = 5<<20 + 300_000 // two parts
			}
			b := make([]byte, n)
			rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(b)
			key := fmt.Sprintf("%s/%03d", prefix, i)
			if _, err := r.Put(ctx, "bkt", key, bytes.NewReader(b), PutOptions{}); err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			want[key] = b
		}
		for i := range 200 {
			key := fmt.Sprintf("%s/%03d", prefix, i)
			rd, err := r.OpenObject(ctx, "bkt", key)
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			var got bytes.Buffer
			_, err = rd.WriteTo(ctx, &got)
			rd.Close()
			if err != nil || !bytes.Equal(got.Bytes(), want[key]) {
				t.Fatalf("get %s: %d of %d bytes, %v", key, got.Len(), len(want[key]), err)
			}
		}
	}
	verify := func(t *testing.T, quick bool) []Finding {
		t.Helper()
		var fs []Finding
		sum, err := r.Verify(ctx, VerifyOptions{Quick: quick}, func(f Finding) { fs = append(fs, f) })
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if sum.Damaged() {
			t.Fatalf("verify: damaged: %+v", fs)
		}
		return fs
	}

	t.Run("mix", func(t *testing.T) {
		req0, ret0 := stats(t)
		// Every kind, the ones that cost a stall (IdleTimeout) less often.
		mix := append([]fp.Kind{fp.ResetBefore, fp.ResetAfter, fp.InternalError, fp.SlowDown, fp.ShortBody}, fp.AllKinds...)
		p.Set(fp.Schedule{Seed: 2026, Rate: 0.10, Mix: mix})
		start := time.Now()
		workload(t, "mix")
		p.SetRate(0)
		req, ret := stats(t)
		f := p.Faults()
		t.Logf("%s: %d requests, %d retries; faults: %v", time.Since(start).Round(time.Millisecond), req-req0, ret-ret0, f)
		for _, k := range fp.AllKinds {
			if f[k] == 0 {
				t.Errorf("no %s fault happened", k)
			}
		}
		// Every fault cost a retry. (A retry may also follow an attempt
		// that was merely slow under load, so there may be more.)
		if ret-ret0 < int64(f.Total()) {
			t.Errorf("%d retries for %d faults", ret-ret0, f.Total())
		}
		if fs := verify(t, false); len(fs) != 0 {
			t.Fatalf("verify: %+v", fs)
		}
	})

	t.Run("control", func(t *testing.T) {
		req0, ret0 := stats(t)
		f0 := p.Faults().Total()
		workload(t, "ctl")
		req, ret := stats(t)
		// No fault was injected, so retries are at most the rare attempt
		// that was merely slow on a loaded machine (well under 1% of
		// requests; the mix above needs one per fault, about 12%).
		if p.Faults().Total() != f0 || req == req0 || (ret-ret0)*100 > req-req0 {
			t.Fatalf("no faults: %d requests, %d retries, %d faults", req-req0, ret-ret0, p.Faults().Total()-f0)
		}
	})

	t.Run("every request fails", func(t *testing.T) {
		body := []byte("the quick brown fox")
		// The server acts on every request and every answer is lost:
		// the put lands, but Holdfast cannot know, nor delete it.
		p.Set(fp.Schedule{Seed: 7, Rate: 1, Mix: []fp.Kind{fp.ResetAfter}})
		start := time.Now()
		_, err := r.Put(ctx, "bkt", "fail/one", bytes.NewReader(body), PutOptions{})
		el := time.Since(start)
		t.Logf("put: %s: %v", el.Round(time.Millisecond), err)
		if !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "bkt/fail/one") ||
			!strings.Contains(err.Error(), "could not be reached: gave up after") {
			t.Errorf("put: %v, want ErrStoreUnavailable naming the object", err)
		}
		if el > timeout+time.Second {
			t.Errorf("put failed after %s, beyond its deadline %s", el, timeout)
		}
		if _, err := r.Stat(ctx, "bkt", "fail/one"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the catalog holds the failed put: %v", err)
		}
		// Requests fail before the server sees them.
		p.Set(fp.Schedule{Seed: 8, Rate: 1, Mix: []fp.Kind{fp.ResetBefore, fp.InternalError, fp.SlowDown}})
		start = time.Now()
		_, err = r.OpenObject(ctx, "bkt", "mix/001")
		el = time.Since(start)
		t.Logf("get: %s: %v", el.Round(time.Millisecond), err)
		if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "bkt/mix/001: ") ||
			!strings.Contains(err.Error(), "could not be reached") {
			t.Errorf("get: %v, want ErrStoreUnavailable", err)
		}
		if el > timeout+time.Second {
			t.Errorf("get failed after %s, beyond its deadline %s", el, timeout)
		}

		// Reachable again: no damage, nothing unknown. The landed put is
		// reported pending (its writer, this process, is alive), and the
		// next run's cleanup removes it; nothing is left half-uploaded.
		p.SetRate(0)
		fs := verify(t, true)
		if len(fs) != 1 || fs[0].Status != StatusPending {
			t.Fatalf("verify: %+v, want one pending write", fs)
		}
		c, err := srv.Client()
		if err != nil {
			t.Fatal(err)
		}
		ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("faults")})
		if err != nil || len(ups.Uploads) != 0 {
			t.Fatalf("incomplete uploads: %v, %v", ups, err)
		}
		// The control: the same put and get through the healthy proxy.
		if _, err := r.Put(ctx, "bkt", "fail/one", bytes.NewReader(body), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if rd, err := r.OpenObject(ctx, "bkt", "mix/001"); err != nil {
			t.Fatal(err)
		} else {
			rd.Close()
		}
	})
}
