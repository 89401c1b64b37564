package repo

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
)

// Multipart uploads are tested on both stores: the local directory and a
// real S3 server (versitygw), where parts under 5 MiB and part 10000 are
// held on premises and the provider's part limits apply.

type mpEnv struct {
	*env
	kind   string     // "local" or "s3"
	s3     *s3.Client // the provider's view (S3 only)
	bucket string     // the provider bucket (S3 only)
}

const mpBucket = "mpb"

// mpBackends runs fn against a fresh repository on each store.
func mpBackends(t *testing.T, fn func(t *testing.T, e *mpEnv)) {
	t.Run("local", func(t *testing.T) {
		fn(t, &mpEnv{env: newEnv(t), kind: "local"})
	})
	t.Run("s3", func(t *testing.T) {
		fn(t, newS3Env(t))
	})
}

func newS3Env(t *testing.T) *mpEnv {
	t.Helper()
	ctx := context.Background()
	srv := startS3(t, "provider")
	home := filepath.Join(t.TempDir(), "home")
	r, err := Init(ctx, InitOptions{Home: home, Passphrase: pass, KDF: keyring.Calibrate(0), S3: &S3Config{
		Bucket: "provider", Prefix: "vault/", Endpoint: srv.Endpoint, PathStyle: true, AllowHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, home: home, r: r}
	t.Cleanup(func() { e.r.Close() })
	return &mpEnv{env: e, kind: "s3", s3: c, bucket: "provider"}
}

// body returns n deterministic bytes.
func body(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// s3ETag is S3's multipart ETag, computed here from the parts' bytes.
func s3ETag(parts ...[]byte) string {
	var cat []byte
	for _, p := range parts {
		s := md5.Sum(p)
		cat = append(cat, s[:]...)
	}
	return md5hex(cat) + "-" + fmt.Sprint(len(parts))
}

func (e *mpEnv) create(key string, o PutOptions) string {
	e.t.Helper()
	id, err := e.r.CreateUpload(context.Background(), mpBucket, key, o)
	if err != nil {
		e.t.Fatalf("CreateUpload: %v", err)
	}
	return id
}

func (e *mpEnv) part(key, id string, n int, b []byte) PartInfo {
	e.t.Helper()
	pi, err := e.r.PutPart(context.Background(), mpBucket, key, id, n, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		e.t.Fatalf("PutPart %d: %v", n, err)
	}
	if pi.ETag != md5hex(b) || pi.Size != int64(len(b)) || pi.Number != n {
		e.t.Fatalf("PutPart %d: %+v", n, pi)
	}
	return pi
}

func (e *mpEnv) complete(key, id string, parts ...PartInfo) catalog.Entry {
	e.t.Helper()
	var list []CompletedPart
	for _, p := range parts {
		list = append(list, CompletedPart{Number: p.Number, ETag: `"` + p.ETag + `"`})
	}
	ent, err := e.r.CompleteUpload(context.Background(), mpBucket, key, id, list, CompleteOptions{})
	if err != nil {
		e.t.Fatalf("CompleteUpload: %v", err)
	}
	return ent
}

// state describes everything the store and the home's spool hold: the
// store's objects, the constructions in progress (S3: the provider's
// multipart uploads; local: the store's .uploads tree) and the spool's
// files.
func (e *mpEnv) state() string {
	e.t.Helper()
	ctx := context.Background()
	var lines []string
	if err := e.r.Store().List(ctx, "", func(oi store.ObjectInfo) error {
		lines = append(lines, fmt.Sprintf("object %s %d", oi.Name, oi.Size))
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	walk := func(what, dir string) {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				lines = append(lines, what+" "+rel)
			}
			return nil
		})
	}
	if e.kind == "s3" {
		out, err := e.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket)})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, u := range out.Uploads {
			lines = append(lines, "provider upload "+aws.ToString(u.Key))
		}
	} else {
		walk("construction", filepath.Join(e.store, ".uploads"))
	}
	walk("spool", e.r.spoolDir())
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// providerParts lists the provider's parts of upload id (S3 only).
func (e *mpEnv) providerParts(id string) map[int32]int64 {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.r.Catalog().GetUpload(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := e.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(e.bucket), Key: aws.String("vault/" + format.StoreName(u.ObjectID)),
		UploadId: aws.String(u.StoreHandle)})
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[int32]int64{}
	for _, p := range out.Parts {
		m[aws.ToInt32(p.PartNumber)] = aws.ToInt64(p.Size)
	}
	return m
}

func (e *mpEnv) read(key string, off, n int64) []byte {
	e.t.Helper()
	ctx := context.Background()
	rd, err := e.r.OpenObject(ctx, mpBucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rd.Close()
	rc, err := rd.Range(ctx, off, n)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatalf("range %d+%d: %v", off, n, err)
	}
	return b
}

// TestMultipartRoundTrip: parts uploaded out of order — one at a chunk
// boundary, a small last one — are listed, the open upload is reported
// pending by verify (nothing unknown), and the completed object reads
// byte-exact whole and in ranges across part boundaries, carries the
// metadata, the attributes and S3's multipart ETag, verifies clean, and
// leaves nothing else in the store or the spool.
func TestMultipartRoundTrip(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		e.put(mpBucket, "other", []byte("x")) // the bucket exists, and one object
		before := e.state()
		p1, p2, p3 := body(1, MinPartSize+1234), body(2, MinPartSize+format.ChunkSize), body(3, 300<<10)
		meta := map[string]string{"project": "apollo"}
		id := e.create("big/file", PutOptions{ContentType: "application/x-test", Meta: meta, Attrs: map[string]string{"content-encoding": "gzip"}})
		i3, i1, i2 := e.part("big/file", id, 3, p3), e.part("big/file", id, 1, p1), e.part("big/file", id, 2, p2)
		if ps, err := e.r.ListParts(ctx, mpBucket, "big/file", id); err != nil || len(ps) != 3 || ps[0] != i1 || ps[1] != i2 || ps[2] != i3 {
			t.Fatalf("ListParts: %+v, %v", ps, err)
		}
		if us, err := e.r.ListUploads(ctx, mpBucket, "big/"); err != nil || len(us) != 1 || us[0].ID != id || us[0].Key != "big/file" {
			t.Fatalf("ListUploads: %+v, %v", us, err)
		}
		if e.kind == "s3" {
			// The small last part is held on premises, not at the provider.
			if pp := e.providerParts(id); len(pp) != 2 || pp[1] == 0 || pp[2] == 0 {
				t.Fatalf("provider parts: %v, want parts 1 and 2 only", pp)
			}
		}
		sum, fs := e.verify()
		if sum.Damaged() || len(fs) != 1 || fs[0].Status != StatusPending || fs[0].Key != "big/file" || sum.Counts[StatusUnknown] != 0 {
			t.Fatalf("verify during the upload: %+v %+v", sum, fs)
		}

		ent := e.complete("big/file", id, i1, i2, i3)
		plain := slices.Concat(p1, p2, p3)
		if ent.Size != int64(len(plain)) || ent.Segments != 3 || ent.ContentType != "application/x-test" {
			t.Fatalf("entry: %+v", ent)
		}
		if got, want := Attr(ent, "etag"), s3ETag(p1, p2, p3); got != want {
			t.Fatalf("ETag %q, want S3's %q", got, want)
		}
		if Attr(ent, "content-encoding") != "gzip" || !maps.Equal(UserMeta(ent), meta) {
			t.Fatalf("metadata: %v", ent.Meta)
		}
		stat, err := e.r.Stat(ctx, mpBucket, "big/file")
		if err != nil || stat.Pin != ent.Pin || Attr(stat, "etag") != Attr(ent, "etag") {
			t.Fatalf("stat: %+v, %v", stat, err)
		}
		e.mustGet(mpBucket, "big/file", plain)
		b1, b2 := int64(len(p1)), int64(len(p1)+len(p2))
		for _, r := range [][2]int64{{b1 - 10, 20}, {b2 - 1, 2}, {b1 - 70000, 200000}, {0, b1 + 1}, {b2, int64(len(p3))}, {int64(len(plain)) - 5, 5}, {b1 + 3, b2 - b1 + 10}} {
			if got := e.read("big/file", r[0], r[1]); !bytes.Equal(got, plain[r[0]:r[0]+r[1]]) {
				t.Fatalf("range %d+%d differs", r[0], r[1])
			}
		}
		e.mustVerifyClean()
		if us, _ := e.r.ListUploads(ctx, mpBucket, ""); len(us) != 0 {
			t.Fatalf("uploads after completion: %+v", us)
		}
		if _, err := e.r.ListParts(ctx, mpBucket, "big/file", id); !errors.Is(err, ErrNoSuchUpload) {
			t.Fatalf("ListParts after completion: %v", err)
		}
		want := before + "\nobject " + format.StoreName(ent.ObjectID) + " " + fmt.Sprint(ent.StoredLen)
		if got := e.state(); !sameLines(got, want) {
			t.Fatalf("after completion the store holds\n%s\nwant\n%s", got, want)
		}
	})
}

func sameLines(a, b string) bool {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	sort.Strings(x)
	sort.Strings(y)
	return slices.Equal(x, y)
}

// TestMultipartPartSentAgain: a part sent again with other bytes gets a
// fresh salt and replaces the old bytes, which are gone (from the
// provider, the construction or the spool); the object holds the new
// bytes. Both a stored part and a held one are sent again.
func TestMultipartPartSentAgain(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		id := e.create("k", PutOptions{})
		p1 := body(10, MinPartSize)
		i1 := e.part("k", id, 1, p1)
		salts := func(n int) [32]byte {
			ps, err := e.r.Catalog().UploadParts(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if p.Number == n {
					return p.Salt
				}
			}
			t.Fatalf("part %d not recorded", n)
			return [32]byte{}
		}
		oldP2, newP2 := body(11, MinPartSize+5), body(12, MinPartSize+5)
		e.part("k", id, 2, oldP2)
		s1 := salts(2)
		after1 := e.state()
		i2 := e.part("k", id, 2, newP2)
		if s2 := salts(2); s2 == s1 {
			t.Fatal("a part sent again was sealed under the same salt")
		}
		if got := e.state(); len(strings.Split(got, "\n")) != len(strings.Split(after1, "\n")) {
			t.Fatalf("the old part's bytes stayed:\nbefore the resend\n%s\nafter\n%s", after1, got)
		}
		if e.kind == "s3" {
			if pp := e.providerParts(id); len(pp) != 2 || pp[2] != int64(format.SegmentCTLen(uint64(len(newP2)))) {
				t.Fatalf("provider parts: %v", pp)
			}
		}
		oldP3, newP3 := body(13, 1000), body(14, 2000)
		e.part("k", id, 3, oldP3)
		s3a, st3 := salts(3), e.state()
		i3 := e.part("k", id, 3, newP3)
		if salts(3) == s3a || len(strings.Split(e.state(), "\n")) != len(strings.Split(st3, "\n")) {
			t.Fatalf("the small part sent again: salts %x/%x, state\n%s\nbefore\n%s", s3a[:4], salts(3), e.state(), st3)
		}
		e.complete("k", id, i1, i2, i3)
		e.mustGet(mpBucket, "k", slices.Concat(p1, newP2, newP3))
		e.mustVerifyClean()
	})
}

// TestMultipartRefusals: completions with a wrong ETag, a missing part,
// parts out of order or repeated, a small part that is not last, no
// parts, or a first part other than 1 are each refused with their error,
// leave nothing visible and the upload open; the same upload then
// completes with a correct list. Bad part numbers, sizes and bodies are
// refused too, beside parts that are accepted.
func TestMultipartRefusals(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		id := e.create("k", PutOptions{})
		p1, p2, p3, p4 := body(20, MinPartSize), body(21, MinPartSize), body(22, 1<<20), body(23, 100<<10)
		i1, i2, i3, i4 := e.part("k", id, 1, p1), e.part("k", id, 2, p2), e.part("k", id, 3, p3), e.part("k", id, 4, p4)
		before := e.state()
		cp := func(ps ...PartInfo) []CompletedPart {
			var l []CompletedPart
			for _, p := range ps {
				l = append(l, CompletedPart{Number: p.Number, ETag: p.ETag})
			}
			return l
		}
		badETag := cp(i1, i2, i4)
		badETag[1].ETag = md5hex([]byte("other"))
		missing := append(cp(i1, i2), CompletedPart{Number: 5, ETag: i4.ETag})
		for _, c := range []struct {
			name string
			list []CompletedPart
			want error
		}{
			{"wrong ETag", badETag, ErrInvalidPart},
			{"missing part", missing, ErrInvalidPart},
			{"out of order", cp(i2, i1, i4), ErrInvalidPartOrder},
			{"repeated", cp(i1, i1, i4), ErrInvalidPartOrder},
			{"small part not last", cp(i1, i3, i4), ErrEntityTooSmall},
			{"no parts", nil, ErrTooManyParts},
			{"not from part 1", cp(i2, i4), ErrInvalidPart},
		} {
			_, err := e.r.CompleteUpload(ctx, mpBucket, "k", id, c.list, CompleteOptions{})
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
			if _, err := e.r.Stat(ctx, mpBucket, "k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: the object is visible: %v", c.name, err)
			}
			if got := e.state(); got != before {
				t.Fatalf("%s: the store changed:\n%s\nwas\n%s", c.name, got, before)
			}
		}
		if ps, err := e.r.ListParts(ctx, mpBucket, "k", id); err != nil || len(ps) != 4 {
			t.Fatalf("the upload after refusals: %v, %v", ps, err)
		}

		// Parts refused, beside the accepted part 4 above.
		for _, c := range []struct {
			name     string
			n        int
			b        []byte
			declared int64
			want     error
		}{
			{"part 0", 0, p4, int64(len(p4)), ErrInvalidPartNumber},
			{"part 10001", MaxParts + 1, p4, int64(len(p4)), ErrInvalidPartNumber},
			{"over 5 GiB", 5, p4, MaxPartSize + 1, ErrEntityTooLarge},
			{"body short", 5, p4, int64(len(p4)) + 1, ErrIncompleteBody},
			{"body long", 5, p4, int64(len(p4)) - 1, ErrIncompleteBody},
		} {
			if _, err := e.r.PutPart(ctx, mpBucket, "k", id, c.n, bytes.NewReader(c.b), c.declared); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		if ps, _ := e.r.ListParts(ctx, mpBucket, "k", id); len(ps) != 4 {
			t.Fatalf("a refused part was recorded: %+v", ps)
		}
		if got := e.state(); got != before {
			t.Fatalf("refused parts changed the store:\n%s\nwas\n%s", got, before)
		}
		for _, c := range []struct{ key, id string }{{"k", strings.Repeat("0", 32)}, {"other", id}, {"k", "../../x"}} {
			if _, err := e.r.PutPart(ctx, mpBucket, c.key, c.id, 1, bytes.NewReader(p4), int64(len(p4))); !errors.Is(err, ErrNoSuchUpload) {
				t.Errorf("PutPart to upload %q of %q: %v", c.id, c.key, err)
			}
		}

		e.complete("k", id, i1, i2, i4)
		e.mustGet(mpBucket, "k", slices.Concat(p1, p2, p4))
		e.mustVerifyClean()
	})
}

// TestMultipartAbort: an aborted upload leaves the store and the spool as
// they were, and is gone; another upload (the control) completes.
func TestMultipartAbort(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		e.put(mpBucket, "k", []byte("previous"))
		before := e.state()
		id := e.create("k", PutOptions{})
		e.part("k", id, 2, body(30, MinPartSize))
		e.part("k", id, 1, body(31, MinPartSize))
		e.part("k", id, 3, body(32, 4000))
		if e.state() == before {
			t.Fatal("the parts left no trace to remove (the test would prove nothing)")
		}
		if err := e.r.AbortUpload(ctx, mpBucket, "k", id); err != nil {
			t.Fatal(err)
		}
		if got := e.state(); got != before {
			t.Fatalf("after the abort:\n%s\nbefore the upload:\n%s", got, before)
		}
		if err := e.r.AbortUpload(ctx, mpBucket, "k", id); !errors.Is(err, ErrNoSuchUpload) {
			t.Fatalf("abort again: %v", err)
		}
		if _, err := e.r.PutPart(ctx, mpBucket, "k", id, 1, bytes.NewReader([]byte("x")), 1); !errors.Is(err, ErrNoSuchUpload) {
			t.Fatalf("part after the abort: %v", err)
		}
		if ps, _ := e.r.Catalog().ListPending(ctx); len(ps) != 0 {
			t.Fatalf("pending writes after the abort: %+v", ps)
		}
		e.mustGet(mpBucket, "k", []byte("previous"))
		e.mustVerifyClean()

		id = e.create("k", PutOptions{})
		i1 := e.part("k", id, 1, body(33, 10))
		e.complete("k", id, i1)
		e.mustGet(mpBucket, "k", body(33, 10))
	})
}

// TestMultipartAcrossRestarts: an upload begun by one Repo is continued
// and completed by another (a restarted process) — including one whose
// only part is empty, and, on S3, one using part 10000, which is held.
func TestMultipartAcrossRestarts(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		p1, p2, p3 := body(40, MinPartSize+1), body(41, MinPartSize+2), body(42, 77)
		id := e.create("k", PutOptions{ContentType: "a/b"})
		e.part("k", id, 2, p2)
		empty := e.create("empty", PutOptions{})
		e.reopen()
		i1, i3 := e.part("k", id, 1, p1), e.part("k", id, 3, p3)
		ps, err := e.r.ListParts(context.Background(), mpBucket, "k", id)
		if err != nil || len(ps) != 3 {
			t.Fatalf("parts after the restart: %+v, %v", ps, err)
		}
		e.reopen()
		ent := e.complete("k", id, i1, ps[1], i3)
		e.mustGet(mpBucket, "k", slices.Concat(p1, p2, p3))
		if ent.ContentType != "a/b" || Attr(ent, "etag") != s3ETag(p1, p2, p3) {
			t.Fatalf("entry: %+v", ent)
		}
		e.complete("empty", empty, e.part("empty", empty, 1, nil))
		e.mustGet(mpBucket, "empty", nil)

		last := body(43, MinPartSize+3)
		id = e.create("last", PutOptions{})
		j1, jl := e.part("last", id, 1, p1), e.part("last", id, MaxParts, last)
		if e.kind == "s3" {
			if pp := e.providerParts(id); len(pp) != 1 {
				t.Fatalf("provider parts %v: part %d must be held", pp, MaxParts)
			}
		}
		e.reopen()
		e.complete("last", id, j1, jl)
		e.mustGet(mpBucket, "last", slices.Concat(p1, last))
		e.mustVerifyClean()
	})
}

// TestMultipartExpiry: Cleanup aborts uploads older than the expiry —
// the default 7 days, or the configured one — leaving the store as
// before them, and keeps younger ones, which then complete.
func TestMultipartExpiry(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		clock := time.Now()
		e.hooks = &Hooks{Now: func() time.Time { return clock }}
		e.reopen()
		if _, err := e.r.CreateBucket(ctx, mpBucket); err != nil {
			t.Fatal(err)
		}
		before := e.state()
		old := e.create("old", PutOptions{})
		e.part("old", old, 1, body(50, MinPartSize))
		e.part("old", old, 2, body(51, 10))
		clock = clock.Add(6 * 24 * time.Hour)
		young := e.create("young", PutOptions{})
		iy := e.part("young", young, 1, body(52, 10))
		withYoung := e.state()
		clock = clock.Add(25 * time.Hour) // old: 7 days and 1 hour; young: 25 hours
		if _, err := e.r.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		us, err := e.r.ListUploads(ctx, mpBucket, "")
		if err != nil || len(us) != 1 || us[0].ID != young {
			t.Fatalf("uploads after the default expiry: %+v, %v", us, err)
		}
		// Only the young upload's traces are left beside what was there.
		e.r.cfg.Uploads = &UploadsConfig{ExpireAfter: Duration(time.Hour)}
		if _, err := e.r.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if got := e.state(); got != before {
			t.Fatalf("after both expired:\n%s\nbefore:\n%s", got, before)
		}
		if withYoung == before {
			t.Fatal("the uploads left no trace to remove (the test would prove nothing)")
		}
		if _, err := e.r.PutPart(ctx, mpBucket, "young", young, 2, bytes.NewReader([]byte("x")), 1); !errors.Is(err, ErrNoSuchUpload) {
			t.Fatalf("part to an expired upload: %v", err)
		}
		// The control: an upload younger than the configured expiry stays.
		kept := e.create("kept", PutOptions{})
		ik := e.part("kept", kept, 1, body(53, 10))
		if _, err := e.r.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		e.complete("kept", kept, ik)
		e.mustGet(mpBucket, "kept", body(53, 10))
		_ = iy
	})
}

// genReader is n deterministic bytes, made as they are read.
func genReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), 0xee}), n)
}

// allocated returns the bytes the Go heap allocated while fn ran.
func allocated(fn func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestMultipartMemoryFlat: a part streams — sealed chunk by chunk on its
// way to the store — and the object it makes reads back in pieces, so
// memory does not depend on the part's size (up to 5 GiB): the heap
// allocated for a 64 MiB part, and for reading its object, differs from
// an 8 MiB part's by less than 4 MiB. The control shows the measure sees
// a part held in memory (io.ReadAll of the same 64 MiB).
func TestMultipartMemoryFlat(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		const small, large = 8 << 20, 64 << 20
		put := map[int64]uint64{}
		get := map[int64]uint64{}
		for _, n := range []int64{small, large} {
			key := fmt.Sprint("mem-", n)
			id := e.create(key, PutOptions{})
			var pi PartInfo
			put[n] = allocated(func() {
				var err error
				if pi, err = e.r.PutPart(ctx, mpBucket, key, id, 1, genReader(uint64(n), n), n); err != nil {
					t.Fatal(err)
				}
			})
			e.complete(key, id, pi)
			h := md5.New()
			get[n] = allocated(func() {
				rd, err := e.r.OpenObject(ctx, mpBucket, key)
				if err != nil {
					t.Fatal(err)
				}
				defer rd.Close()
				if _, err := rd.WriteTo(ctx, h); err != nil {
					t.Fatal(err)
				}
			})
			want := md5.New()
			io.Copy(want, genReader(uint64(n), n))
			if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
				t.Fatalf("%d MiB object reads back other bytes", n>>20)
			}
			t.Logf("%d MiB part: %d KiB allocated to put, %d KiB to read", n>>20, put[n]>>10, get[n]>>10)
		}
		for what, m := range map[string]map[int64]uint64{"put": put, "read": get} {
			if d := int64(m[large]) - int64(m[small]); d > 4<<20 {
				t.Errorf("%s: a 64 MiB part allocated %d KiB more than an 8 MiB one", what, d>>10)
			}
		}
		held := allocated(func() {
			if _, err := io.ReadAll(genReader(1, large)); err != nil {
				t.Fatal(err)
			}
		})
		if held < large {
			t.Fatalf("control: a 64 MiB part read into memory measured %d KiB", held>>10)
		}
	})
}

// Crash safety: a child process (this test binary, see crash_test.go)
// continues an upload and is killed at a named point; the next run finds
// the upload pending — never unknown, never damaged — cleanup keeps it,
// and retrying the interrupted step completes it.

const crashUploadEnv = "HOLDFAST_TEST_CRASH_UPLOAD"

var (
	crashP1 = body(60, MinPartSize+7)
	crashP2 = body(61, 5000)
)

// crashMultipart runs in the crash child. The child's store wrapper hides
// the store's part capability, so it opens the home a second time, dying
// at the same points.
func crashMultipart(ctx context.Context, op string) error {
	point := os.Getenv(crashEnv)
	r, err := Open(ctx, OpenOptions{Home: os.Getenv(crashHomeEnv), Passphrase: pass, Hooks: &Hooks{At: func(p string) {
		if p == point {
			crashSelf()
		}
	}}})
	if err != nil {
		return err
	}
	defer r.Close()
	id := os.Getenv(crashUploadEnv)
	switch op {
	case "mp-part":
		_, err = r.PutPart(ctx, mpBucket, "mp", id, 2, bytes.NewReader(crashP2), int64(len(crashP2)))
	case "mp-complete":
		err = completeAll(ctx, r, id)
	}
	return err
}

func completeAll(ctx context.Context, r *Repo, id string) error {
	ps, err := r.ListParts(ctx, mpBucket, "mp", id)
	if err != nil {
		return err
	}
	var list []CompletedPart
	for _, p := range ps {
		list = append(list, CompletedPart{Number: p.Number, ETag: p.ETag})
	}
	_, err = r.CompleteUpload(ctx, mpBucket, "mp", id, list, CompleteOptions{})
	return err
}

func TestMultipartCrash(t *testing.T) {
	for _, c := range []struct{ op, point string }{
		{"mp-part", "upload:part-stored"},
		{"mp-complete", "upload:completing"},
		{"mp-complete", "upload:stored"},
		{"mp-complete", "upload:committed"},
	} {
		t.Run(c.op+"/"+c.point, func(t *testing.T) {
			mpBackends(t, func(t *testing.T, e *mpEnv) {
				ctx := context.Background()
				e.put(mpBucket, "mp", []byte("previous"))
				id := e.create("mp", PutOptions{})
				e.part("mp", id, 1, crashP1)
				if c.op == "mp-complete" {
					e.part("mp", id, 2, crashP2)
				}
				e.r.Close()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), crashEnv+"="+c.point, crashHomeEnv+"="+e.home, crashOpEnv+"="+c.op, crashUploadEnv+"="+id)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("child did not die at %s: %v\n%s", c.point, err, out)
				}
				e.reopen()
				committed := c.point == "upload:committed"
				if committed {
					e.mustGet(mpBucket, "mp", slices.Concat(crashP1, crashP2))
				} else {
					e.mustGet(mpBucket, "mp", []byte("previous"))
				}
				if _, err := e.r.Cleanup(ctx); err != nil {
					t.Fatal(err)
				}
				sum, fs := e.verify()
				if sum.Damaged() || sum.Counts[StatusUnknown] != 0 {
					t.Fatalf("verify after the crash: %+v %+v", sum, fs)
				}
				if !committed && (len(fs) != 1 || fs[0].Status != StatusPending || fs[0].Kind != "multipart upload") {
					t.Fatalf("verify after the crash: %+v, want the upload pending", fs)
				}
				switch {
				case committed:
					if err := completeAll(ctx, e.r, id); !errors.Is(err, ErrNoSuchUpload) {
						t.Fatalf("completing a committed upload again: %v", err)
					}
				case c.op == "mp-part":
					e.part("mp", id, 2, crashP2)
					fallthrough
				default:
					if err := completeAll(ctx, e.r, id); err != nil {
						t.Fatal(err)
					}
				}
				e.mustGet(mpBucket, "mp", slices.Concat(crashP1, crashP2))
				e.mustVerifyClean()
				// Nothing but the object, its bucket's and the
				// repository's system objects, and no leftovers.
				n := 0
				for _, l := range strings.Split(e.state(), "\n") {
					if !strings.HasPrefix(l, "object ") {
						t.Fatalf("leftover: %s", l)
					}
					n++
				}
				cnt, _ := e.r.Catalog().Count(ctx)
				sys, _ := e.r.Catalog().SystemObjects(ctx)
				if int64(n) != cnt+int64(len(sys)) {
					t.Fatalf("store holds %d objects, catalog knows %d + %d system", n, cnt, len(sys))
				}
			})
		})
	}
}

// TestMultipartConcurrentParts: parts sent at once, one number twice with
// different bytes, complete into the object the recorded parts describe.
func TestMultipartConcurrentParts(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		id := e.create("k", PutOptions{})
		bodies := map[int][]byte{1: body(70, MinPartSize), 2: body(71, MinPartSize+1), 3: body(72, MinPartSize+2), 4: body(73, 999)}
		other := body(74, MinPartSize+9)
		errs := make(chan error, 5)
		send := func(n int, b []byte) {
			_, err := e.r.PutPart(ctx, mpBucket, "k", id, n, bytes.NewReader(b), int64(len(b)))
			errs <- err
		}
		for n, b := range bodies {
			go send(n, b)
		}
		go send(2, other)
		for range 5 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		ps, err := e.r.ListParts(ctx, mpBucket, "k", id)
		if err != nil || len(ps) != 4 {
			t.Fatalf("parts: %+v, %v", ps, err)
		}
		if ps[1].ETag == md5hex(other) {
			bodies[2] = other
		}
		ent := e.complete("k", id, ps...)
		plain := slices.Concat(bodies[1], bodies[2], bodies[3], bodies[4])
		e.mustGet(mpBucket, "k", plain)
		if Attr(ent, "etag") != s3ETag(bodies[1], bodies[2], bodies[3], bodies[4]) {
			t.Fatalf("ETag %s", Attr(ent, "etag"))
		}
		e.mustVerifyClean()
	})
}

// TestMultipartCompletionOvertaken: a completion overtaken by another
// writer leaves nothing behind. A put of the same key committed while
// the completion ran wins (the completion fails with ErrStaleVersion and
// its object is deleted); an abort by another process between the
// store's completion and the commit removes the object too (the
// completion fails with ErrNoSuchUpload). Neither leaves an object the
// catalog does not know; the control completes undisturbed.
func TestMultipartCompletionOvertaken(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		var interfere func(point string)
		e.hooks = &Hooks{At: func(p string) {
			if interfere != nil {
				interfere(p)
			}
		}}
		e.reopen()
		p1 := body(80, 1000)
		e.put(mpBucket, "k", []byte("before"))
		before := e.state()

		id := e.create("k", PutOptions{})
		i1 := e.part("k", id, 1, p1)
		interfere = func(p string) {
			if p == "upload:stored" {
				interfere = nil
				e.put(mpBucket, "k", []byte("newer"))
			}
		}
		if _, err := e.r.CompleteUpload(ctx, mpBucket, "k", id, []CompletedPart{{Number: 1, ETag: i1.ETag}}, CompleteOptions{}); !errors.Is(err, catalog.ErrStaleVersion) {
			t.Fatalf("completion overtaken by a put: %v", err)
		}
		e.mustGet(mpBucket, "k", []byte("newer"))
		e.mustVerifyClean()
		if got, want := len(strings.Split(e.state(), "\n")), len(strings.Split(before, "\n")); got != want {
			t.Fatalf("after the overtaken completion:\n%s\nbefore:\n%s", e.state(), before)
		}

		id = e.create("k", PutOptions{})
		i1 = e.part("k", id, 1, p1)
		interfere = func(p string) {
			if p == "upload:stored" {
				interfere = nil
				if _, _, err := e.r.Catalog().DeleteUpload(ctx, id); err != nil {
					t.Error(err)
				}
			}
		}
		if _, err := e.r.CompleteUpload(ctx, mpBucket, "k", id, []CompletedPart{{Number: 1, ETag: i1.ETag}}, CompleteOptions{}); !errors.Is(err, ErrNoSuchUpload) {
			t.Fatalf("completion of an upload aborted meanwhile: %v", err)
		}
		e.mustGet(mpBucket, "k", []byte("newer"))
		if _, err := e.r.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		e.mustVerifyClean()

		id = e.create("k", PutOptions{})
		e.complete("k", id, e.part("k", id, 1, p1))
		e.mustGet(mpBucket, "k", p1)
		e.mustVerifyClean()
	})
}

// TestMultipartPartChecksumsAndAttrs: a part's checksum (PartOptions) is
// recorded with it, replaced with it when it is sent again, and listed;
// the completion's Attrs sees the chosen parts with their checksums, in
// order, and sets and removes attributes of the object. An Attrs error
// refuses the completion and leaves the upload to be completed (the
// control, the same completion without the error, does). Room kept for
// the completion's attributes is checked when the upload is created.
func TestMultipartPartChecksumsAndAttrs(t *testing.T) {
	e := &mpEnv{env: newEnv(t), kind: "local"}
	ctx := context.Background()
	big := map[string]string{"checksum": strings.Repeat("x", 2000)}
	if _, err := e.r.CreateUpload(ctx, mpBucket, "k", PutOptions{Attrs: map[string]string{"pending": "1"}, CompleteRoom: big}); !errors.Is(err, ErrMetadataTooLarge) {
		t.Fatalf("an upload without room for its completion's attributes: %v", err)
	}
	id := e.create("k", PutOptions{Attrs: map[string]string{"pending": "1"}, CompleteRoom: map[string]string{"checksum": "xxxxxxxx"}})
	putPart := func(n int, b []byte, sum string) PartInfo {
		t.Helper()
		pi, err := e.r.PutPartWith(ctx, mpBucket, "k", id, n, bytes.NewReader(b), int64(len(b)), PartOptions{Checksum: func() string { return sum }})
		if err != nil {
			t.Fatal(err)
		}
		return pi
	}
	p1, p2 := body(1, MinPartSize), body(2, 10)
	putPart(1, p1, "first")
	putPart(1, p1, "one")
	putPart(2, p2, "two")
	ps, err := e.r.ListParts(ctx, mpBucket, "k", id)
	if err != nil || len(ps) != 2 || ps[0].Checksum != "one" || ps[1].Checksum != "two" {
		t.Fatalf("list parts: %+v %v", ps, err)
	}
	list := []CompletedPart{{1, md5hex(p1)}, {2, md5hex(p2)}}
	var seen []string
	attrs := func(fail error) func([]PartInfo) (map[string]string, error) {
		return func(parts []PartInfo) (map[string]string, error) {
			seen = nil
			for _, p := range parts {
				seen = append(seen, fmt.Sprint(p.Number, p.Checksum, p.Size))
			}
			return map[string]string{"checksum": "one+two", "pending": ""}, fail
		}
	}
	refusal := errors.New("the client's checksums do not match")
	if _, err := e.r.CompleteUpload(ctx, mpBucket, "k", id, list, CompleteOptions{Attrs: attrs(refusal)}); !errors.Is(err, refusal) {
		t.Fatalf("completion refused by Attrs: %v", err)
	}
	ent, err := e.r.CompleteUpload(ctx, mpBucket, "k", id, list, CompleteOptions{Attrs: attrs(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprint(1, "one", MinPartSize), fmt.Sprint(2, "two", 10)}; !slices.Equal(seen, want) {
		t.Errorf("Attrs saw %v, want %v", seen, want)
	}
	if Attr(ent, "checksum") != "one+two" || Attr(ent, "pending") != "" || Attr(ent, "etag") != s3ETag(p1, p2) {
		t.Errorf("completed object's attributes: %v", ent.Meta)
	}
	got, err := e.r.Stat(ctx, mpBucket, "k")
	if err != nil || !maps.Equal(got.Meta, ent.Meta) {
		t.Errorf("the catalog's entry: %v %v", got.Meta, err)
	}
}
