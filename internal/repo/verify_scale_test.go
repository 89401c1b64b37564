package repo

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the catalog's driver, to add synthetic rows fast

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
)

// synthPrefix starts every synthetic store name: "ff" and 30 hex digits
// of the row number, so that names sort as the numbers do.
const synthPrefix = "ff"

func synthName(i int) string { return fmt.Sprintf("%s%030x", synthPrefix, i) }

// synthSize is the stored length of every synthetic object.
const synthSize = 4096

// synthStore is the real store with n generated objects beside it: List
// merges the real listing (small) with names generated on the fly, and
// Stat and ReadRange serve the generated ones (zeros) without storing
// anything, so that a million objects cost no disk and no memory.
type synthStore struct {
	store.Store
	n int
}

func (s *synthStore) synth(name string) bool {
	if len(name) != 32 || !strings.HasPrefix(name, synthPrefix) {
		return false
	}
	i, err := strconv.ParseUint(name[len(synthPrefix):], 16, 64)
	return err == nil && i < uint64(s.n)
}

func (s *synthStore) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	var real []store.ObjectInfo
	if err := s.Store.List(ctx, prefix, func(oi store.ObjectInfo) error { real = append(real, oi); return nil }); err != nil {
		return err
	}
	i := 0
	for g := 0; g < s.n; g++ {
		name := synthName(g)
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for ; i < len(real) && real[i].Name < name; i++ {
			if err := fn(real[i]); err != nil {
				return err
			}
		}
		if err := fn(store.ObjectInfo{Name: name, Size: synthSize}); err != nil {
			return err
		}
	}
	for ; i < len(real); i++ {
		if err := fn(real[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *synthStore) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if s.synth(name) {
		return store.ObjectInfo{Name: name, Size: synthSize}, nil
	}
	return s.Store.Stat(ctx, name)
}

func (s *synthStore) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if !s.synth(name) {
		return s.Store.ReadRange(ctx, name, off, length)
	}
	if off < 0 || off > synthSize || length < -1 {
		return nil, fmt.Errorf("%s: %w", name, store.ErrInvalidRange)
	}
	if length == -1 || off+length > synthSize {
		length = synthSize - off
	}
	return io.NopCloser(bytes.NewReader(make([]byte, length))), nil
}

// addSynthRows adds catalog rows [from, to) for the synthetic objects, in
// one statement (a million rows take seconds).
func addSynthRows(t *testing.T, home string, from, to int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(home, CatalogFile)+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(`WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO objects (bucket, key, version, object_id, size, stored_len, manifest_off, manifest_len,
			pin, key_commit, key_version, wrapped, modified, content_type, meta, segments)
		SELECT 'synth', printf('k%09d', i), 1, unhex(printf('`+synthPrefix+`%030x', i)), 100, ?, 3000, 96,
			unhex(printf('%016x%048x', i, 0)), unhex(printf('%016x%048x', i, 1)), 1, X'00', 0, '', X'', 1 FROM n`,
		from, to, synthSize)
	if err != nil {
		t.Fatalf("adding synthetic rows: %v", err)
	}
}

// heapPeak runs fn while sampling the live heap (after a collection) at
// about 100 points of its progress, and returns the peak above the heap
// before it.
type heapPeak struct {
	base, peak uint64
	every      int
}

func newHeapPeak(total int) *heapPeak {
	h := &heapPeak{every: max(1, total/100)}
	h.base = liveHeap()
	return h
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func (h *heapPeak) progress(n int, _ int64) {
	if n%h.every == 0 {
		if l := liveHeap(); l > h.base {
			h.peak = max(h.peak, l-h.base)
		}
	}
}

// TestVerifyMemoryBound: verify of a million catalog rows against a
// million listed objects holds no more memory than verify of ten
// thousand: the catalog and the listing are walked side by side, never
// loaded. The objects are synthetic (synthStore): every one is checked
// against the listing, and a small sample has its bytes read, which
// finds them not to be Holdfast objects, as it should: the findings are
// exactly the sampled ones.
func TestVerifyMemoryBound(t *testing.T) {
	const small, large = 10_000, 1_000_000
	const frac = 0.0002
	seed := []byte("memory bound sample seed")
	e := newEnv(t)
	e.put("synth", "real", random(1000)) // the bucket, and one real object
	syn := &synthStore{}
	e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store { syn.Store = s; return syn }}
	e.reopen()

	run := func(n int) (VerifySummary, *heapPeak) {
		t.Helper()
		syn.n = n
		sampled := 0
		for i := range n {
			if inSample(seed, synthName(i), frac) {
				sampled++
			}
		}
		h := newHeapPeak(n)
		start := time.Now()
		findings := 0
		sum, err := e.r.Verify(context.Background(), VerifyOptions{Quick: true, Sample: frac, SampleSeed: seed, Progress: h.progress},
			func(f Finding) {
				if !strings.HasPrefix(f.Name, synthPrefix) || f.Status == StatusOK || f.Status == StatusMissing {
					t.Errorf("finding %+v", f)
				}
				findings++
			})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d rows: %s, peak live heap +%.1f MiB, %d sampled", n, time.Since(start).Round(time.Millisecond), float64(h.peak)/(1<<20), sampled)
		realSampled := 0
		if inSample(seed, e.nameOf("synth", "real"), frac) {
			realSampled = 1
		}
		if findings != sampled || sum.Unsampled != n-sampled+1-realSampled || sum.Checked != n+4 {
			t.Fatalf("%d rows: %d findings for %d sampled, %d unsampled, %d checked", n, findings, sampled, sum.Unsampled, sum.Checked)
		}
		return sum, h
	}
	addSynthRows(t, e.home, 0, small)
	_, hs := run(small)
	addSynthRows(t, e.home, small, large)
	_, hl := run(large)

	// Control: the measure sees memory that grows with the rows. Holding
	// the listing in a map, as verify once did, costs far over the bound.
	hc := newHeapPeak(large)
	listed := map[string]int64{}
	if err := syn.List(context.Background(), "", func(oi store.ObjectInfo) error {
		listed[oi.Name] = oi.Size
		hc.progress(len(listed), 0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("control: the listing of %d objects in a map: peak live heap +%.1f MiB", len(listed), float64(hc.peak)/(1<<20))
	listed = nil

	const bound = 48 << 20
	if hc.peak < bound {
		t.Fatalf("control: a map of a million names measured +%d MiB: the measure cannot tell", hc.peak>>20)
	}
	if hl.peak > bound {
		t.Errorf("a million rows: peak live heap +%d MiB, bound %d MiB", hl.peak>>20, bound>>20)
	}
	// A hundred times the rows may not cost much more than the small run
	// (which has the same fixed costs: pages, window, workers).
	if hl.peak > 2*hs.peak+8<<20 {
		t.Errorf("peak live heap grows with the rows: +%.1f MiB for %d, +%.1f MiB for %d",
			float64(hs.peak)/(1<<20), small, float64(hl.peak)/(1<<20), large)
	}
}

// TestVerifyS3TenThousand: 10,000 real objects on a real S3 server
// (versitygw). A quick verify is clean and holds little memory; then the
// provider deletes one object, overwrites one, copies one over another and
// injects one, and verify names exactly those (the clean run is the
// control).
func TestVerifyS3TenThousand(t *testing.T) {
	ctx := context.Background()
	srv := startS3(t, "scale")
	home := filepath.Join(t.TempDir(), "home")
	r, err := Init(ctx, InitOptions{Home: home, Passphrase: pass, KDF: keyring.Calibrate(0),
		S3: &S3Config{Bucket: "scale", Prefix: "vault/", Endpoint: srv.Endpoint, PathStyle: true, AllowHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	const n = 10_000
	items := make([]PutItem, n)
	for i := range items {
		body := []byte(fmt.Sprintf("object %d", i))
		items[i] = PutItem{Key: fmt.Sprintf("d%02d/f%05d", i%100, i), Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		}}
	}
	start := time.Now()
	if err := r.PutMany(ctx, "scale", items, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("put %d objects: %s", n, time.Since(start).Round(time.Millisecond))

	verify := func() (VerifySummary, []Finding, *heapPeak) {
		t.Helper()
		h := newHeapPeak(n)
		var fs []Finding
		start := time.Now()
		sum, err := r.Verify(ctx, VerifyOptions{Quick: true, Progress: h.progress}, func(f Finding) { fs = append(fs, f) })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("quick verify of %d objects, %d jobs: %s, peak live heap +%.1f MiB", sum.Checked, sum.Jobs,
			time.Since(start).Round(time.Millisecond), float64(h.peak)/(1<<20))
		return sum, fs, h
	}
	sum, fs, h := verify()
	if sum.Verdict() != VerdictClean || len(fs) != 0 || sum.Checked != n+3 {
		t.Fatalf("control: %s, %d checked, %+v", sum.Verdict(), sum.Checked, fs)
	}
	if h.peak > 32<<20 {
		t.Errorf("quick verify of %d objects: peak live heap +%d MiB", n, h.peak>>20)
	}

	// The provider at work, straight on the bucket.
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	obj := func(key string) string {
		e, err := r.Stat(ctx, "scale", key)
		if err != nil {
			t.Fatal(err)
		}
		return "vault/" + format.StoreName(e.ObjectID)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("scale"), Key: aws.String(obj("d01/f00101"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("scale"), Key: aws.String(obj("d02/f00202")),
		Body: bytes.NewReader(make([]byte, 4096))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("scale"), Key: aws.String(obj("d03/f00303")),
		CopySource: aws.String("scale/" + obj("d04/f00404"))}); err != nil {
		t.Fatal(err)
	}
	injected := "00000000000000000000000000c0ffee"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("scale"), Key: aws.String("vault/" + injected),
		Body: bytes.NewReader(make([]byte, 4096))}); err != nil {
		t.Fatal(err)
	}
	sum, fs, _ = verify()
	want := map[Status]string{StatusMissing: "d01/f00101", StatusAltered: "d02/f00202", StatusSwapped: "d03/f00303", StatusUnknown: injected}
	wantDamage(t, fs, want)
	if sum.Verdict() != VerdictDamaged || sum.DamagedCount() != 4 {
		t.Fatalf("after tampering: %s, %d damaged", sum.Verdict(), sum.DamagedCount())
	}
}
