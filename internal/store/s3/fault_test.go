package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
	fp "github.com/holdfast/holdfast/internal/testutil/faultproxy"
)

// Fault tests: the store reaches versitygw through a fault-injecting proxy
// (internal/testutil/faultproxy). Timeouts and backoff are small so that
// the tests are fast; the number of attempts is the default.

const (
	testIdle    = 300 * time.Millisecond
	testTimeout = 20 * time.Second
)

type faultEnv struct {
	direct *Store // the same bucket, without the proxy
	proxy  *fp.Proxy
	s      *Store // through the proxy
}

func newFaultEnv(t *testing.T, sched fp.Schedule, mod func(*Config)) *faultEnv {
	t.Helper()
	direct := newStore(t, httpSrv, nil) // TLS is not what is tested here
	p, err := fp.Start(fp.Options{Upstream: httpSrv.Endpoint, StallFor: 5 * time.Second, Schedule: sched})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c := Config{Bucket: direct.bucket, Prefix: direct.prefix, Endpoint: p.URL, PathStyle: true, AllowHTTP: true,
		PartSize: 5 << 20, Concurrency: 1, MaxBackoff: 10 * time.Millisecond, IdleTimeout: testIdle, Timeout: testTimeout}
	if mod != nil {
		mod(&c)
	}
	s, err := New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return &faultEnv{direct: direct, proxy: p, s: s}
}

func readAllOf(ctx context.Context, s *Store, name string, off, n int64) ([]byte, error) {
	rc, err := s.ReadRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// isMultipartComplete and friends pick out one kind of S3 request.
func isMultipartComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}
func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}
func isList(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2"
}
func isMethod(m string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == m && !r.URL.Query().Has("list-type") }
}

// TestEachFaultIsRetried: one fault of each kind on each kind of request
// it applies to costs exactly one retry, and the operation succeeds
// byte-exact. The control, in the same run, is the same operation with no
// fault: no retry.
func TestEachFaultIsRetried(t *testing.T) {
	small := randomBody(1, 70_000)
	big := randomBody(2, 2*(5<<20)+12345) // three parts
	type op struct {
		name  string
		match func(*http.Request) bool
		kinds []fp.Kind
		run   func(ctx context.Context, e *faultEnv) error
	}
	put := func(name string, body []byte) func(context.Context, *faultEnv) error {
		return func(ctx context.Context, e *faultEnv) error {
			if err := e.s.Put(ctx, name, bytes.NewReader(body), int64(len(body))); err != nil {
				return err
			}
			got, err := readAllOf(ctx, e.direct, name, 0, -1)
			if err != nil || !bytes.Equal(got, body) {
				return fmt.Errorf("stored object differs (%d of %d bytes, %v)", len(got), len(body), err)
			}
			return nil
		}
	}
	seed := func(ctx context.Context, e *faultEnv, name string) error {
		return e.direct.Put(ctx, name, bytes.NewReader(small), int64(len(small)))
	}
	ops := []op{
		{"put", isMethod(http.MethodPut), []fp.Kind{fp.ResetBefore, fp.ResetAfter, fp.InternalError, fp.SlowDown, fp.Stall},
			put("small", small)},
		{"put-part", isUploadPart, []fp.Kind{fp.ResetAfter, fp.Stall}, put("big", big)},
		{"put-complete", isMultipartComplete, []fp.Kind{fp.ResetAfter, fp.InternalError}, put("big", big)},
		{"get", isMethod(http.MethodGet), fp.AllKinds, func(ctx context.Context, e *faultEnv) error {
			if err := seed(ctx, e, "obj"); err != nil {
				return err
			}
			got, err := readAllOf(ctx, e.s, "obj", 1000, 50_000)
			if err != nil || !bytes.Equal(got, small[1000:51_000]) {
				return fmt.Errorf("read differs (%d bytes, %v)", len(got), err)
			}
			return nil
		}},
		{"stat", isMethod(http.MethodHead), []fp.Kind{fp.ResetBefore, fp.ResetAfter, fp.InternalError, fp.SlowDown, fp.Stall},
			func(ctx context.Context, e *faultEnv) error {
				if err := seed(ctx, e, "obj"); err != nil {
					return err
				}
				info, err := e.s.Stat(ctx, "obj")
				if err != nil || info.Size != int64(len(small)) {
					return fmt.Errorf("stat: %+v, %v", info, err)
				}
				return nil
			}},
		{"list", isList, []fp.Kind{fp.InternalError, fp.ShortBody, fp.StallBody}, func(ctx context.Context, e *faultEnv) error {
			for _, n := range []string{"a1", "a2", "a3"} {
				if err := seed(ctx, e, n); err != nil {
					return err
				}
			}
			var names []string
			err := e.s.List(ctx, "a", func(oi store.ObjectInfo) error { names = append(names, oi.Name); return nil })
			if err != nil || strings.Join(names, ",") != "a1,a2,a3" {
				return fmt.Errorf("list: %v, %v", names, err)
			}
			return nil
		}},
		{"delete", isMethod(http.MethodDelete), []fp.Kind{fp.ResetAfter, fp.SlowDown}, func(ctx context.Context, e *faultEnv) error {
			if err := seed(ctx, e, "obj"); err != nil {
				return err
			}
			if err := e.s.Delete(ctx, "obj"); err != nil {
				return err
			}
			if _, err := e.direct.Stat(ctx, "obj"); !errors.Is(err, store.ErrNotExist) {
				return fmt.Errorf("after delete: %v", err)
			}
			return nil
		}},
	}
	ctx := context.Background()
	for _, o := range ops {
		for _, k := range append([]fp.Kind{-1}, o.kinds...) {
			name := o.name + "/" + k.String()
			if k < 0 {
				name = o.name + "/control"
			}
			t.Run(name, func(t *testing.T) {
				sched := fp.Schedule{Rate: 1, Mix: []fp.Kind{k}, Match: o.match, Limit: 1}
				want := 1
				if k < 0 {
					sched, want = fp.Schedule{}, 0
				}
				e := newFaultEnv(t, sched, nil)
				if err := o.run(ctx, e); err != nil {
					t.Fatal(err)
				}
				if got := e.proxy.Faults(); got.Total() != want || want == 1 && got[k] != 1 {
					t.Fatalf("faults injected: %v, want %d", got, want)
				}
				if st := e.s.Stats(); st.Retries != int64(want) {
					t.Fatalf("retries %d, want %d (requests %d)", st.Retries, want, st.Requests)
				}
			})
		}
	}
}

// TestEveryRequestFails: with every request failing, each operation fails
// within its deadline with an error that names the operation and the
// object and says the store could not be reached after how many attempts;
// a failed put leaves nothing behind. The control is the same operations
// through the same proxy while it is healthy.
func TestEveryRequestFails(t *testing.T) {
	ctx := context.Background()
	small := randomBody(3, 10_000)
	big := randomBody(4, (5<<20)+100)
	for _, c := range []struct {
		name  string
		mix   []fp.Kind
		mod   func(*Config)
		limit time.Duration // each operation must fail within this
		says  string        // a regular expression; its group is the number of attempts
		min   int           // the least number of attempts
	}{
		// Fast failures: the attempts run out.
		// (net/http resends a GET or HEAD itself when a kept-alive
		// connection is reset; those attempts count too.)
		{"errors", []fp.Kind{fp.ResetBefore, fp.InternalError, fp.SlowDown}, nil, testTimeout,
			`gave up after (\d+) attempts`, DefaultMaxAttempts},
		// No answer at all: the deadline passes first.
		{"stalls", []fp.Kind{fp.Stall}, func(c *Config) { c.IdleTimeout, c.Timeout = 200*time.Millisecond, 700*time.Millisecond },
			700 * time.Millisecond, `no success within the 700ms deadline \((\d+) attempts`, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newFaultEnv(t, fp.Schedule{Seed: 9, Rate: 0, Mix: c.mix}, c.mod)
			for _, n := range []string{"there", "gone"} {
				if err := e.s.Put(ctx, n, bytes.NewReader(small), int64(len(small))); err != nil {
					t.Fatalf("control: put: %v", err)
				}
			}
			type op struct {
				name, obj string
				run       func() error
			}
			ops := []op{
				{"put", "new1", func() error { return e.s.Put(ctx, "new1", bytes.NewReader(small), int64(len(small))) }},
				{"put", "new2", func() error { return e.s.Put(ctx, "new2", bytes.NewReader(big), int64(len(big))) }},
				{"read", "there", func() error {
					got, err := readAllOf(ctx, e.s, "there", 0, -1)
					if err == nil && !bytes.Equal(got, small) {
						return errors.New("read differs")
					}
					return err
				}},
				{"stat", "there", func() error { _, err := e.s.Stat(ctx, "there"); return err }},
				{"list", `""`, func() error { return e.s.List(ctx, "", func(store.ObjectInfo) error { return nil }) }},
				{"delete", "gone", func() error { return e.s.Delete(ctx, "gone") }},
			}
			for _, healthy := range []bool{true, false} {
				rate := 0.0
				if !healthy {
					rate = 1
				}
				e.proxy.SetRate(rate)
				if !healthy {
					// The failing puts below write these afresh.
					for _, n := range []string{"new1", "new2"} {
						if err := e.direct.Delete(ctx, n); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, o := range ops {
					if healthy && o.name == "delete" {
						continue // the control deletes below, after the failure
					}
					start := time.Now()
					err := o.run()
					el := time.Since(start)
					if healthy {
						if err != nil {
							t.Fatalf("control: %s %s: %v", o.name, o.obj, err)
						}
						continue
					}
					msg := fmt.Sprint(err)
					t.Logf("%s %s: %s: %v", o.name, o.obj, el.Round(time.Millisecond), err)
					if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(msg, "s3: "+o.name+" ") ||
						!strings.Contains(msg, o.obj) || !strings.Contains(msg, "could not be reached") || !regexp.MustCompile(c.says).MatchString(msg) {
						t.Errorf("%s %s: error %q, want ErrUnavailable naming the operation and object and saying %q", o.name, o.obj, msg, c.says)
					} else if n, _ := strconv.Atoi(regexp.MustCompile(c.says).FindStringSubmatch(msg)[1]); n < c.min {
						t.Errorf("%s %s: %d attempts, want at least %d", o.name, o.obj, n, c.min)
					}
					if el > c.limit+time.Second {
						t.Errorf("%s %s: failed after %s, beyond its %s deadline", o.name, o.obj, el, c.limit)
					}
				}
			}
			if f := e.proxy.Faults(); f.Total() == 0 {
				t.Fatal("no fault injected")
			}
			// Nothing of the failed puts is there; the failed delete deleted
			// nothing; nothing is left half-uploaded.
			e.proxy.SetRate(0)
			for _, n := range []string{"new1", "new2"} {
				if _, err := e.direct.Stat(ctx, n); !errors.Is(err, store.ErrNotExist) {
					t.Errorf("after a failed put, %s: %v", n, err)
				}
			}
			if _, err := e.direct.Stat(ctx, "gone"); err != nil {
				t.Errorf("after a failed delete: %v", err)
			}
			ups, err := e.direct.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.direct.bucket)})
			if err != nil {
				t.Fatal(err)
			}
			if len(ups.Uploads) != 0 {
				t.Errorf("%d incomplete uploads left", len(ups.Uploads))
			}
			if err := e.s.Delete(ctx, "gone"); err != nil {
				t.Fatalf("control: delete: %v", err)
			}
		})
	}
}

// TestBrokenBodyIsAnError: a body cut short whose rest cannot be fetched
// fails the read with an error — never a clean, short EOF — after the
// bytes that did arrive. The control fetches the rest.
func TestBrokenBodyIsAnError(t *testing.T) {
	ctx := context.Background()
	body := randomBody(5, 100_000)
	for _, healthy := range []bool{true, false} {
		e := newFaultEnv(t, fp.Schedule{Rate: 1, Mix: []fp.Kind{fp.ShortBody}, Limit: 1, Match: isMethod(http.MethodGet)}, nil)
		if err := e.direct.Put(ctx, "obj", bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
		rc, err := e.s.ReadRange(ctx, "obj", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if !healthy {
			// Every request from now on is reset.
			e.proxy.Set(fp.Schedule{Rate: 1, Mix: []fp.Kind{fp.ResetBefore}})
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if f := e.proxy.Faults(); f[fp.ShortBody] != 1 {
			t.Fatalf("faults: %v, want one short body", f)
		}
		if healthy {
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("control: %d bytes, %v", len(got), err)
			}
			if st := e.s.Stats(); st.Retries != 1 {
				t.Fatalf("control: %d retries, want 1 (the resumed GET)", st.Retries)
			}
			continue
		}
		if err == nil || !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), `read "obj"`) {
			t.Fatalf("broken body: %d bytes and error %v, want ErrUnavailable", len(got), err)
		}
		if len(got) != len(body)/2 || !bytes.Equal(got, body[:len(got)]) {
			t.Fatalf("broken body delivered %d bytes, want the first %d", len(got), len(body)/2)
		}
		t.Logf("broken body: %v", err)
	}
}
