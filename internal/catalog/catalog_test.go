package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// newID returns a fresh random id, as writers make them.
func newID() keys.ID {
	var id keys.ID
	rand.Read(id[:])
	return id
}

func pinOf(id keys.ID) [32]byte { return sha256.Sum256(id[:]) }

// openAt opens the catalog at loc (backends_test.go), closing it when t
// ends.
func openAt(t testing.TB, loc string) Catalog {
	t.Helper()
	c, err := openLocation(context.Background(), loc)
	if err != nil {
		t.Fatalf("open %q: %v", loc, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newCatalog opens a fresh catalog with bucket "b" and returns it with
// its location.
func newCatalog(t testing.TB) (Catalog, string) {
	t.Helper()
	c, loc := newEmptyCatalog(t)
	mustCreateBucket(t, c, "b")
	return c, loc
}

func mustCreateBucket(t testing.TB, c Catalog, name string) Bucket {
	t.Helper()
	b := Bucket{Name: name, ID: newID(), Created: time.Unix(1700000000, 5).UTC()}
	if err := c.CreateBucket(context.Background(), b); err != nil {
		t.Fatalf("CreateBucket(%q): %v", name, err)
	}
	return b
}

func mkEntry(bucket, key string, version uint64) Entry {
	id := newID()
	return Entry{
		Bucket: bucket, Key: key, Version: version, ObjectID: id,
		Size: 100, StoredLen: 4096, ManifestOff: 3000, ManifestLen: 96,
		Pin: pinOf(id), Commit: sha256.Sum256(append([]byte("commit"), id[:]...)), KeyVersion: 1,
		Wrapped:  []byte("wrapped-data-key"),
		Modified: time.Unix(1700000000, 123456789).UTC(),
	}
}

// begin records e's pending write, as a writer does before it stores e.
func begin(t testing.TB, c Catalog, e Entry) {
	t.Helper()
	if err := c.BeginPut(context.Background(), Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: e.Bucket, Key: e.Key, Version: e.Version, Owner: "test"}); err != nil {
		t.Fatalf("BeginPut(%q/%q v%d): %v", e.Bucket, e.Key, e.Version, err)
	}
}

// put records e the way a writer does: reserve, then commit.
func put(t testing.TB, c Catalog, e Entry) *Entry {
	t.Helper()
	ctx := context.Background()
	begin(t, c, e)
	old, err := c.CommitPut(ctx, e)
	if err != nil {
		t.Fatalf("CommitPut(%q/%q v%d): %v", e.Bucket, e.Key, e.Version, err)
	}
	return old
}

// putNext writes a new version of bucket/key and returns the entry.
func putNext(t testing.TB, c Catalog, bucket, key string) Entry {
	t.Helper()
	v, err := c.NextVersion(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	e := mkEntry(bucket, key, v)
	put(t, c, e)
	return e
}

func mustGet(t testing.TB, c Catalog, bucket, key string) Entry {
	t.Helper()
	e, err := c.Get(context.Background(), bucket, key)
	if err != nil {
		t.Fatalf("Get(%q/%q): %v", bucket, key, err)
	}
	return e
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func mustNot(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A writePath is one of the two ways to record writes: the single calls,
// or the batch calls with one element. Tests of the write rules run over
// both, since the batch calls are separate (set-based) code.
type writePath struct {
	name   string
	begin  func(Catalog, Pending) error
	commit func(Catalog, Entry) (*Entry, error)
}

var writePaths = []writePath{
	{"single",
		func(c Catalog, p Pending) error { return c.BeginPut(context.Background(), p) },
		func(c Catalog, e Entry) (*Entry, error) { return c.CommitPut(context.Background(), e) }},
	{"batch",
		func(c Catalog, p Pending) error { return c.BeginPutBatch(context.Background(), []Pending{p}) },
		func(c Catalog, e Entry) (*Entry, error) {
			r, err := c.CommitPutBatch(context.Background(), []Entry{e})
			if err != nil {
				return nil, err
			}
			return r[0], nil
		}},
}

func TestOpenFileModeAndWAL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cat?alog#1.db") // URI metacharacters in the name
	c := openAt(t, path)
	mustCreateBucket(t, c, "b") // something in the WAL
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), m)
		}
	}
	if _, err := Open(context.Background(), filepath.Join(dir, "missing", "x.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	_, err := c.GetMeta(ctx, "repo-id")
	wantErr(t, "GetMeta before SetMeta", err, ErrNotFound)
	for _, v := range [][]byte{[]byte("one"), []byte("two"), {}} {
		mustNot(t, "SetMeta", c.SetMeta(ctx, "repo-id", v))
		got, err := c.GetMeta(ctx, "repo-id")
		mustNot(t, "GetMeta", err)
		if string(got) != string(v) {
			t.Errorf("GetMeta = %q, want %q", got, v)
		}
	}
	// The schema version is readable but not writable.
	if err := c.SetMeta(ctx, metaSchemaVersion, []byte("99")); err == nil {
		t.Error("SetMeta(schema_version) succeeded")
	}
	v, err := c.GetMeta(ctx, metaSchemaVersion)
	mustNot(t, "GetMeta(schema_version)", err)
	if string(v) != fmt.Sprint(schemaVersion) {
		t.Errorf("schema version %q", v)
	}
}

func TestBuckets(t *testing.T) {
	ctx := context.Background()
	c, _ := newEmptyCatalog(t)
	z := mustCreateBucket(t, c, "zeta")
	a := mustCreateBucket(t, c, "alpha")

	err := c.CreateBucket(ctx, Bucket{Name: "alpha", ID: newID()})
	wantErr(t, "duplicate name", err, ErrExists)
	err = c.CreateBucket(ctx, Bucket{Name: "other", ID: a.ID})
	wantErr(t, "duplicate id", err, ErrExists)
	mustNot(t, "control: fresh name and id", c.CreateBucket(ctx, Bucket{Name: "other", ID: newID()}))
	if err := c.CreateBucket(ctx, Bucket{ID: newID()}); err == nil {
		t.Error("empty bucket name accepted")
	}

	got, err := c.GetBucket(ctx, "alpha")
	mustNot(t, "GetBucket", err)
	if !reflect.DeepEqual(got, a) {
		t.Errorf("GetBucket = %+v, want %+v", got, a)
	}
	_, err = c.GetBucket(ctx, "nope")
	wantErr(t, "GetBucket missing", err, ErrNotFound)

	bs, err := c.Buckets(ctx)
	mustNot(t, "Buckets", err)
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	if !reflect.DeepEqual(names, []string{"alpha", "other", "zeta"}) {
		t.Errorf("Buckets = %v", names)
	}

	// Non-empty refused; emptied, deleted.
	putNext(t, c, z.Name, "k")
	wantErr(t, "delete non-empty", c.DeleteBucket(ctx, "zeta"), ErrNotEmpty)
	_, err = c.Delete(ctx, "zeta", "k")
	mustNot(t, "Delete", err)
	mustNot(t, "delete emptied bucket", c.DeleteBucket(ctx, "zeta"))
	wantErr(t, "delete again", c.DeleteBucket(ctx, "zeta"), ErrNotFound)
	_, err = c.GetBucket(ctx, "zeta")
	wantErr(t, "GetBucket deleted", err, ErrNotFound)
}

func TestBucketKeys(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	b1, b2 := newID(), newID()
	mk := func(b keys.ID, v uint32) BucketKey {
		return BucketKey{
			BucketID: b, Version: v,
			Wrapped:  keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 3, Data: []byte{1, 2, 3, byte(v)}},
			KeyCheck: make([]byte, 32), Created: time.Unix(1700000000+int64(v), 0).UTC(), JournalID: newID(), State: 1,
		}
	}
	want1 := []BucketKey{mk(b1, 1), mk(b1, 2), mk(b1, 3)}
	for _, k := range []BucketKey{want1[2], want1[0], mk(b2, 1), want1[1]} {
		mustNot(t, "AddBucketKey", c.AddBucketKey(ctx, k))
	}
	wantErr(t, "duplicate version", c.AddBucketKey(ctx, mk(b1, 2)), ErrExists)

	got, err := c.BucketKeys(ctx, b1)
	mustNot(t, "BucketKeys", err)
	if !reflect.DeepEqual(got, want1) {
		t.Errorf("BucketKeys = %+v\nwant %+v", got, want1)
	}
	all, err := c.AllBucketKeys(ctx)
	mustNot(t, "AllBucketKeys", err)
	if len(all) != 4 {
		t.Errorf("AllBucketKeys: %d keys, want 4", len(all))
	}

	// Update: version 1 becomes decrypt-only, rewrapped under root key 4.
	u := want1[0]
	u.State, u.Wrapped.KEKVersion, u.Wrapped.Data, u.JournalID = 2, 4, []byte{9, 9}, newID()
	mustNot(t, "UpdateBucketKey", c.UpdateBucketKey(ctx, u))
	got, _ = c.BucketKeys(ctx, b1)
	if !reflect.DeepEqual(got[0], u) || !reflect.DeepEqual(got[1], want1[1]) {
		t.Errorf("after update: %+v", got)
	}
	wantErr(t, "update missing", c.UpdateBucketKey(ctx, mk(b1, 7)), ErrNotFound)
}

// TestBucketKeyOf: the bucket and its key of one version in one read,
// the same records GetBucket and BucketKeys give; a missing version or
// bucket is ErrNotFound, and another bucket's key of the same version is
// never returned.
func TestBucketKeyOf(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	one, two := mustCreateBucket(t, c, "one"), mustCreateBucket(t, c, "two")
	for _, b := range []Bucket{one, two} {
		for v := uint32(1); v <= 2; v++ {
			mustNot(t, "AddBucketKey", c.AddBucketKey(ctx, BucketKey{
				BucketID: b.ID, Version: v,
				Wrapped:  keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 1, Data: []byte{b.ID[0], byte(v)}},
				KeyCheck: make([]byte, 32), Created: time.Unix(1700000000+int64(v), 0).UTC(), JournalID: newID(), State: 1,
			}))
		}
	}
	for _, b := range []Bucket{one, two} {
		ks, err := c.BucketKeys(ctx, b.ID)
		mustNot(t, "BucketKeys", err)
		for _, want := range ks {
			gb, gk, err := c.BucketKeyOf(ctx, b.Name, want.Version)
			mustNot(t, "BucketKeyOf", err)
			if !reflect.DeepEqual(gb, b) || !reflect.DeepEqual(gk, want) {
				t.Errorf("BucketKeyOf(%s, %d) = %+v, %+v\nwant %+v, %+v", b.Name, want.Version, gb, gk, b, want)
			}
		}
	}
	_, _, err := c.BucketKeyOf(ctx, "one", 3)
	wantErr(t, "missing version", err, ErrNotFound)
	_, _, err = c.BucketKeyOf(ctx, "three", 1)
	wantErr(t, "missing bucket", err, ErrNotFound)
}

func TestEntryRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(*Entry)
	}{
		{"plain", func(*Entry) {}},
		{"meta", func(e *Entry) {
			e.Meta = map[string]string{"b": "2", "a": "1", "odd\xff": "\x00\xfe", "": "empty key"}
			e.ContentType = "text/plain"
			e.Segments = 3
		}},
		{"zero time, no wrapped key", func(e *Entry) { e.Modified = time.Time{}; e.Wrapped = nil }},
		{"large", func(e *Entry) { e.Size, e.StoredLen, e.KeyVersion = 1<<40, 1<<40+4096, 1<<32-1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCatalog(t)
			e := mkEntry("b", "dir/file.txt", 1)
			tc.edit(&e)
			put(t, c, e)
			if got := mustGet(t, c, "b", "dir/file.txt"); !reflect.DeepEqual(got, e) {
				t.Errorf("Get = %+v\nwant %+v", got, e)
			}
			got, err := c.CurrentByPin(ctx, e.Pin)
			mustNot(t, "CurrentByPin", err)
			if !reflect.DeepEqual(got, e) {
				t.Errorf("CurrentByPin = %+v", got)
			}
		})
	}
}

func TestGetMissing(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	putNext(t, c, "b", "a")
	for _, tc := range []struct{ bucket, key string }{{"b", "b"}, {"x", "a"}, {"b", "A"}, {"b", "a/"}} {
		_, err := c.Get(ctx, tc.bucket, tc.key)
		wantErr(t, fmt.Sprintf("Get(%q/%q)", tc.bucket, tc.key), err, ErrNotFound)
	}
	mustGet(t, c, "b", "a") // control
}

func collect(t testing.TB, c Catalog, bucket, prefix, startAfter string) []string {
	t.Helper()
	var got []string
	err := c.List(context.Background(), bucket, prefix, startAfter, func(e Entry) error {
		if e.Bucket != bucket {
			t.Errorf("List(%q) returned an entry of %q", bucket, e.Bucket)
		}
		got = append(got, e.Key)
		return nil
	})
	mustNot(t, "List", err)
	return got
}

func TestList(t *testing.T) {
	c, _ := newCatalog(t)
	mustCreateBucket(t, c, "other")
	keys := []string{"a", "a/1", "a/2", "a/2/x", "a0", "b", "b\xff", "b\xff\xff", "c", "\xff\xff"}
	for _, k := range keys {
		putNext(t, c, "b", k)
	}
	putNext(t, c, "other", "a/3")
	for _, tc := range []struct {
		prefix, startAfter string
		want               []string
	}{
		{"", "", keys},
		{"a", "", []string{"a", "a/1", "a/2", "a/2/x", "a0"}},
		{"a/", "", []string{"a/1", "a/2", "a/2/x"}},
		{"a/", "a/1", []string{"a/2", "a/2/x"}},
		{"a/", "a/2/x", nil},
		{"a/", "0", []string{"a/1", "a/2", "a/2/x"}}, // startAfter before the prefix
		{"a/", "b", nil},                             // startAfter past the prefix
		{"", "a0", []string{"b", "b\xff", "b\xff\xff", "c", "\xff\xff"}},
		{"b\xff", "", []string{"b\xff", "b\xff\xff"}},
		{"\xff", "", []string{"\xff\xff"}},
		{"\xff\xff", "", []string{"\xff\xff"}},
		{"zz", "", nil},
	} {
		t.Run(fmt.Sprintf("%q after %q", tc.prefix, tc.startAfter), func(t *testing.T) {
			if got := collect(t, c, "b", tc.prefix, tc.startAfter); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := collect(t, c, "other", "", ""); !reflect.DeepEqual(got, []string{"a/3"}) {
		t.Errorf("other bucket: %q", got)
	}
	if got := collect(t, c, "missing", "", ""); got != nil {
		t.Errorf("missing bucket: %q", got)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	mustCreateBucket(t, c, "a")
	mustCreateBucket(t, c, "c")
	const n = 2*pageSize + 601
	var es []Entry
	for i := range n {
		es = append(es, mkEntry("b", fmt.Sprintf("k%05d", n-1-i), 1)) // reverse order
	}
	pend(t, c, es...)
	_, err := c.CommitPutBatch(ctx, es)
	mustNot(t, "CommitPutBatch", err)
	putNext(t, c, "a", "first")
	putNext(t, c, "c", "last")

	// fn may call back into the catalog while walking.
	var got []string
	err = c.List(ctx, "b", "k", "", func(e Entry) error {
		if _, err := c.Get(ctx, e.Bucket, e.Key); err != nil {
			return err
		}
		got = append(got, e.Key)
		return nil
	})
	mustNot(t, "List", err)
	if len(got) != n {
		t.Fatalf("List: %d entries, want %d", len(got), n)
	}
	for i, k := range got {
		if want := fmt.Sprintf("k%05d", i); k != want {
			t.Fatalf("List[%d] = %q, want %q", i, k, want)
		}
	}
	// Starting mid-way, on a page boundary and past one.
	for _, start := range []int{0, pageSize - 1, pageSize, n - 2} {
		if got := collect(t, c, "b", "", fmt.Sprintf("k%05d", start)); len(got) != n-1-start {
			t.Errorf("after k%05d: %d entries, want %d", start, len(got), n-1-start)
		}
	}

	var all []string
	mustNot(t, "All", c.All(ctx, func(e Entry) error { all = append(all, e.Bucket+"/"+e.Key); return nil }))
	if len(all) != n+2 || all[0] != "a/first" || all[1] != "b/k00000" || all[n] != fmt.Sprintf("b/k%05d", n-1) || all[n+1] != "c/last" {
		t.Errorf("All: %d entries, first %q, last %q", len(all), all[0], all[len(all)-1])
	}
	cnt, err := c.Count(ctx)
	mustNot(t, "Count", err)
	if cnt != n+2 {
		t.Errorf("Count = %d, want %d", cnt, n+2)
	}

	// An error from fn stops the walk and comes back as is.
	stop := errors.New("stop")
	calls := 0
	err = c.List(ctx, "b", "", "", func(Entry) error {
		calls++
		if calls == pageSize+5 {
			return stop
		}
		return nil
	})
	if err != stop || calls != pageSize+5 {
		t.Errorf("List with failing fn: err %v after %d calls", err, calls)
	}
	calls = 0
	err = c.All(ctx, func(Entry) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("All with failing fn: err %v after %d calls", err, calls)
	}
}

// state is everything observable about one key, for "nothing changed".
type state struct {
	Current *Entry
	Next    uint64
	Pending []Pending
	Garbage []keys.ID
	Count   int64
}

func snapshot(t testing.TB, c Catalog, bucket, key string) state {
	t.Helper()
	ctx := context.Background()
	var s state
	if e, err := c.Get(ctx, bucket, key); err == nil {
		s.Current = &e
	}
	var err error
	s.Next, err = c.NextVersion(ctx, bucket, key)
	mustNot(t, "NextVersion", err)
	s.Pending, err = c.ListPending(ctx)
	mustNot(t, "ListPending", err)
	s.Garbage, err = c.Garbage(ctx)
	mustNot(t, "Garbage", err)
	s.Count, err = c.Count(ctx)
	mustNot(t, "Count", err)
	return s
}

func TestCommitSupersedes(t *testing.T) {
	for _, wp := range writePaths {
		t.Run(wp.name, func(t *testing.T) { testCommitSupersedes(t, wp) })
	}
}

func testCommitSupersedes(t *testing.T, wp writePath) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	v1 := putNext(t, c, "b", "k")
	v2 := mkEntry("b", "k", 2)
	mustNot(t, "begin", wp.begin(c, Pending{ObjectID: v2.ObjectID, Kind: KindObject, Bucket: "b", Key: "k", Version: 2}))
	old, err := wp.commit(c, v2)
	mustNot(t, "commit", err)
	if old == nil || !reflect.DeepEqual(*old, v1) {
		t.Fatalf("commit returned %+v, want %+v", old, v1)
	}
	if got := mustGet(t, c, "b", "k"); !reflect.DeepEqual(got, v2) {
		t.Errorf("current = %+v, want %+v", got, v2)
	}
	h, err := c.HistoryByObjectID(ctx, v1.ObjectID)
	mustNot(t, "HistoryByObjectID", err)
	if h.State != Superseded || h.Version != 1 || h.Bucket != "b" || h.Key != "k" || h.Pin != v1.Pin || h.Commit != v1.Commit || h.At.IsZero() {
		t.Errorf("history = %+v", h)
	}
	g, err := c.Garbage(ctx)
	mustNot(t, "Garbage", err)
	if !reflect.DeepEqual(g, []keys.ID{v1.ObjectID}) {
		t.Errorf("Garbage = %x", g)
	}
	if ps, _ := c.ListPending(ctx); len(ps) != 0 {
		t.Errorf("pending rows left: %+v", ps)
	}
	if _, err := c.HistoryByObjectID(ctx, v2.ObjectID); !errors.Is(err, ErrNotFound) {
		t.Errorf("current version in history: %v", err)
	}

	mustNot(t, "ForgetGarbage", c.ForgetGarbage(ctx, v1.ObjectID))
	wantErr(t, "ForgetGarbage twice", c.ForgetGarbage(ctx, v1.ObjectID), ErrNotFound)
	if g, _ := c.Garbage(ctx); len(g) != 0 {
		t.Errorf("Garbage after forget = %x", g)
	}
	if _, err := c.HistoryByObjectID(ctx, v1.ObjectID); err != nil {
		t.Errorf("history gone after ForgetGarbage: %v", err)
	}
}

func TestStaleVersionRefused(t *testing.T) {
	ctx := context.Background()
	for _, wp := range writePaths {
		for _, tc := range []struct {
			name    string
			version uint64
			stale   bool
		}{
			{"lower", 2, true},
			{"equal", 3, true},
			{"greater (control)", 4, false},
		} {
			t.Run(wp.name+"/"+tc.name, func(t *testing.T) {
				c, _ := newCatalog(t)
				for range 3 {
					putNext(t, c, "b", "k")
				}
				e := mkEntry("b", "k", tc.version)
				// A pending row without a reservation, so only the commit decides.
				mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: "k"}))
				before := snapshot(t, c, "b", "k")
				_, err := wp.commit(c, e)
				if !tc.stale {
					mustNot(t, "commit", err)
					if got := mustGet(t, c, "b", "k"); got.ObjectID != e.ObjectID {
						t.Error("control commit did not take")
					}
					return
				}
				wantErr(t, "commit", err, ErrStaleVersion)
				if after := snapshot(t, c, "b", "k"); !reflect.DeepEqual(before, after) {
					t.Errorf("stale commit changed state:\nbefore %+v\nafter  %+v", before, after)
				}
				if k, _ := c.Lookup(ctx, e.ObjectID); k != KnownPending {
					t.Errorf("Lookup = %d, want pending", k)
				}
			})
		}
	}
}

func TestCommitRefusals(t *testing.T) {
	for _, wp := range writePaths {
		t.Run(wp.name, func(t *testing.T) { testCommitRefusals(t, wp) })
	}
}

func testCommitRefusals(t *testing.T, wp writePath) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	old := putNext(t, c, "b", "old")
	_, err := c.Delete(ctx, "b", "old")
	mustNot(t, "Delete", err)
	cur := putNext(t, c, "b", "cur")
	sys := SystemObject{ObjectID: newID(), Kind: KindMarker, Pin: pinOf(newID())}
	mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: sys.ObjectID, Kind: KindMarker, Owner: "test", Started: time.Now()}))
	mustNot(t, "CommitSystem", c.CommitSystem(ctx, sys))
	for _, tc := range []struct {
		name string
		edit func(*Entry)
		want error
	}{
		{"control", func(*Entry) {}, nil},
		{"missing bucket", func(e *Entry) { e.Bucket = "nope" }, ErrNotFound},
		{"current object id", func(e *Entry) { e.ObjectID = cur.ObjectID }, ErrExists},
		{"garbage object id", func(e *Entry) { e.ObjectID = old.ObjectID }, ErrExists},
		{"system object id", func(e *Entry) { e.ObjectID = sys.ObjectID }, ErrExists},
		{"current pin", func(e *Entry) { e.Pin = cur.Pin }, ErrExists},
		{"version 0", func(e *Entry) { e.Version = 0 }, errAny},
		{"empty key", func(e *Entry) { e.Key = "" }, errAny},
		{"negative size", func(e *Entry) { e.Size = -1 }, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mkEntry("b", "new-"+tc.name, 1)
			if tc.want == nil {
				pend(t, c, e)
			}
			tc.edit(&e)
			before, _ := c.Count(ctx)
			_, err := wp.commit(c, e)
			switch {
			case tc.want == nil:
				mustNot(t, "commit", err)
				return
			case tc.want == errAny:
				if err == nil {
					t.Fatal("commit succeeded")
				}
			default:
				wantErr(t, "commit", err, tc.want)
			}
			if after, _ := c.Count(ctx); after != before {
				t.Errorf("refused commit changed the count from %d to %d", before, after)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestDeleteAndNextVersion(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	_, err := c.Delete(ctx, "b", "k")
	wantErr(t, "Delete missing", err, ErrNotFound)

	if v, _ := c.NextVersion(ctx, "b", "k"); v != 1 {
		t.Errorf("NextVersion fresh = %d", v)
	}
	putNext(t, c, "b", "k")
	e2 := putNext(t, c, "b", "k")
	got, err := c.Delete(ctx, "b", "k")
	mustNot(t, "Delete", err)
	if !reflect.DeepEqual(got, e2) {
		t.Errorf("Delete returned %+v", got)
	}
	_, err = c.Get(ctx, "b", "k")
	wantErr(t, "Get deleted", err, ErrNotFound)
	h, err := c.HistoryByObjectID(ctx, e2.ObjectID)
	mustNot(t, "history", err)
	if h.State != Deleted || h.Version != 2 {
		t.Errorf("history = %+v", h)
	}
	if k, _ := c.Lookup(ctx, e2.ObjectID); k != KnownGarbage {
		t.Errorf("deleted object: Known %d", k)
	}
	_, err = c.Delete(ctx, "b", "k")
	wantErr(t, "Delete twice", err, ErrNotFound)

	// Versions are never reused after delete, nor after reopen.
	if v, _ := c.NextVersion(ctx, "b", "k"); v != 3 {
		t.Errorf("NextVersion after delete = %d, want 3", v)
	}
	_, err = c.CommitPut(ctx, mkEntry("b", "k", 2))
	wantErr(t, "recommit deleted version", err, ErrStaleVersion)
	e3 := putNext(t, c, "b", "k")
	if e3.Version != 3 {
		t.Errorf("version after delete = %d", e3.Version)
	}
}

// TestForgetNames: after a shred, the versions and history of the
// shredded names are gone (NextVersion starts again at 1, the history
// lookup finds nothing), and a snapshot's reservations no longer name
// them; the other key of the bucket (one key), or the other bucket (a
// whole bucket), keeps all of it. A name with a current object or a
// pending write is refused and keeps everything.
func TestForgetNames(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	mustNot(t, "CreateBucket c", c.CreateBucket(ctx, Bucket{Name: "c", ID: newID(), Created: time.Now()}))
	putNext(t, c, "b", "gone")
	gone := putNext(t, c, "b", "gone")
	keep := putNext(t, c, "b", "keep")
	putNext(t, c, "c", "x")
	_, err := c.Delete(ctx, "b", "gone")
	mustNot(t, "Delete", err)

	wantErr(t, "ForgetNames of a current object", c.ForgetNames(ctx, "b", "keep"), ErrNotEmpty)
	wantErr(t, "ForgetNames of a bucket with a current object", c.ForgetNames(ctx, "b", ""), ErrNotEmpty)
	p := Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "gone", Version: 3, Owner: "test", Started: time.Now()}
	mustNot(t, "BeginPut", c.BeginPut(ctx, p))
	wantErr(t, "ForgetNames with a pending write", c.ForgetNames(ctx, "b", "gone"), ErrNotEmpty)
	mustNot(t, "AbortPut", c.AbortPut(ctx, p.ObjectID))
	if v, _ := c.NextVersion(ctx, "b", "gone"); v != 4 {
		t.Fatalf("NextVersion after the refusals = %d, want 4 (nothing forgotten)", v)
	}

	mustNot(t, "ForgetNames", c.ForgetNames(ctx, "b", "gone"))
	if v, _ := c.NextVersion(ctx, "b", "gone"); v != 1 {
		t.Errorf("NextVersion of a forgotten name = %d, want 1", v)
	}
	if _, err := c.HistoryByObjectID(ctx, gone.ObjectID); !errors.Is(err, ErrNotFound) {
		t.Errorf("history of a forgotten name: %v", err)
	}
	if v, _ := c.NextVersion(ctx, "b", "keep"); v != keep.Version+1 {
		t.Errorf("NextVersion of the other key = %d (control)", v)
	}
	names := func() []string {
		var got []string
		mustNot(t, "View", c.View(ctx, func(s Snapshot) error {
			return s.Reservations(func(r Reservation) error { got = append(got, r.Bucket+"/"+r.Key); return nil })
		}))
		sort.Strings(got)
		return got
	}
	if got := names(); !reflect.DeepEqual(got, []string{"b/keep", "c/x"}) {
		t.Errorf("reservations after forgetting b/gone: %v", got)
	}

	_, err = c.Delete(ctx, "b", "keep")
	mustNot(t, "Delete", err)
	mustNot(t, "ForgetNames of a bucket", c.ForgetNames(ctx, "b", ""))
	if got := names(); !reflect.DeepEqual(got, []string{"c/x"}) {
		t.Errorf("reservations after forgetting bucket b: %v", got)
	}
}

func TestPending(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	started := time.Unix(1700000000, 42).UTC()
	p1 := Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k", Version: 1, Owner: "pid 1", Started: started}
	p2 := Pending{ObjectID: newID(), Kind: KindJournal, Owner: "pid 2", Started: started.Add(time.Second)}
	mustNot(t, "BeginPut object", c.BeginPut(ctx, p1))
	mustNot(t, "BeginPut journal", c.BeginPut(ctx, p2))

	ps, err := c.ListPending(ctx)
	mustNot(t, "ListPending", err)
	if !reflect.DeepEqual(ps, []Pending{p1, p2}) {
		t.Errorf("ListPending = %+v", ps)
	}
	// The reservation counts for NextVersion and cannot be taken twice.
	if v, _ := c.NextVersion(ctx, "b", "k"); v != 2 {
		t.Errorf("NextVersion with v1 pending = %d, want 2", v)
	}
	for i, wp := range writePaths {
		key2 := fmt.Sprintf("k2-%d", i)
		for _, tc := range []struct {
			name string
			p    Pending
			want error
		}{
			{"same version", Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k", Version: 1}, ErrStaleVersion},
			{"same object id", Pending{ObjectID: p1.ObjectID, Kind: KindObject, Bucket: "b", Key: "other"}, ErrExists},
			{"same object id, system", Pending{ObjectID: p1.ObjectID, Kind: KindMarker}, ErrExists},
			{"missing bucket", Pending{ObjectID: newID(), Kind: KindObject, Bucket: "nope", Key: "k", Version: 1}, ErrNotFound},
			{"no key", Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b"}, errAny},
			{"bad kind", Pending{ObjectID: newID(), Kind: 9}, errAny},
			{"next version (control)", Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k", Version: uint64(2 + i)}, nil},
			{"other key (control)", Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: key2, Version: 1}, nil},
		} {
			t.Run(wp.name+"/"+tc.name, func(t *testing.T) {
				before, _ := c.ListPending(ctx)
				err := wp.begin(c, tc.p)
				switch tc.want {
				case nil:
					mustNot(t, "begin", err)
					return
				case errAny:
					if err == nil {
						t.Fatal("begin succeeded")
					}
				default:
					wantErr(t, "begin", err, tc.want)
				}
				if after, _ := c.ListPending(ctx); !reflect.DeepEqual(before, after) {
					t.Error("refused begin changed the pending writes")
				}
			})
		}
	}

	mustNot(t, "AbortPut", c.AbortPut(ctx, p1.ObjectID))
	wantErr(t, "AbortPut twice", c.AbortPut(ctx, p1.ObjectID), ErrNotFound)
	if k, _ := c.Lookup(ctx, p1.ObjectID); k != KnownNone {
		t.Errorf("aborted write still known: %d", k)
	}
	// An aborted reservation stays used.
	if v, _ := c.NextVersion(ctx, "b", "k"); v != 4 {
		t.Errorf("NextVersion after abort = %d, want 4", v)
	}
	ps, _ = c.ListPending(ctx)
	if len(ps) != 5 || ps[4].ObjectID != p2.ObjectID { // oldest first; the others have no start time
		t.Errorf("ListPending after abort = %+v", ps)
	}
}

func TestLookupAndPins(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	cur := putNext(t, c, "b", "cur")
	hist := putNext(t, c, "b", "hist")
	putNext(t, c, "b", "hist")
	mustNot(t, "ForgetGarbage", c.ForgetGarbage(ctx, hist.ObjectID))
	garb := putNext(t, c, "b", "garb")
	_, err := c.Delete(ctx, "b", "garb")
	mustNot(t, "Delete", err)
	pend := newID()
	mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: pend, Kind: KindBackup}))
	sys := SystemObject{ObjectID: newID(), Kind: KindBackup, Pin: pinOf(pend), StoredLen: 10, ManifestOff: 1, ManifestLen: 2, Created: time.Unix(5, 0).UTC()}
	mustNot(t, "BeginPut system", c.BeginPut(ctx, Pending{ObjectID: sys.ObjectID, Kind: KindBackup}))
	mustNot(t, "CommitSystem", c.CommitSystem(ctx, sys))
	wantErr(t, "CommitSystem twice", c.CommitSystem(ctx, sys), ErrExists)

	for _, tc := range []struct {
		name string
		id   keys.ID
		want Known
	}{
		{"current", cur.ObjectID, KnownCurrent},
		{"history", hist.ObjectID, KnownHistory},
		{"pending", pend, KnownPending},
		{"garbage", garb.ObjectID, KnownGarbage},
		{"system", sys.ObjectID, KnownSystem},
		{"none", newID(), KnownNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := c.Lookup(ctx, tc.id)
			mustNot(t, "Lookup", err)
			if k != tc.want {
				t.Errorf("Lookup = %d, want %d", k, tc.want)
			}
		})
	}

	ss, err := c.SystemObjects(ctx)
	mustNot(t, "SystemObjects", err)
	if !reflect.DeepEqual(ss, []SystemObject{sys}) {
		t.Errorf("SystemObjects = %+v", ss)
	}
	if ps, _ := c.ListPending(ctx); len(ps) != 1 || ps[0].ObjectID != pend {
		t.Errorf("pending after CommitSystem: %+v", ps)
	}

	// Pins: current vs history, each with a control.
	if e, err := c.CurrentByPin(ctx, cur.Pin); err != nil || e.ObjectID != cur.ObjectID {
		t.Errorf("CurrentByPin(current) = %x, %v", e.ObjectID, err)
	}
	_, err = c.CurrentByPin(ctx, hist.Pin)
	wantErr(t, "CurrentByPin(history)", err, ErrNotFound)
	if h, err := c.HistoryByPin(ctx, hist.Pin); err != nil || h.ObjectID != hist.ObjectID || h.State != Superseded {
		t.Errorf("HistoryByPin(history) = %+v, %v", h, err)
	}
	if h, err := c.HistoryByPin(ctx, garb.Pin); err != nil || h.State != Deleted {
		t.Errorf("HistoryByPin(deleted) = %+v, %v", h, err)
	}
	_, err = c.HistoryByPin(ctx, cur.Pin)
	wantErr(t, "HistoryByPin(current)", err, ErrNotFound)

	// Commitments likewise.
	if e, err := c.CurrentByCommit(ctx, cur.Commit); err != nil || e.ObjectID != cur.ObjectID {
		t.Errorf("CurrentByCommit(current) = %x, %v", e.ObjectID, err)
	}
	_, err = c.CurrentByCommit(ctx, garb.Commit)
	wantErr(t, "CurrentByCommit(deleted)", err, ErrNotFound)
	if h, err := c.HistoryByCommit(ctx, garb.Commit); err != nil || h.ObjectID != garb.ObjectID || h.Commit != garb.Commit {
		t.Errorf("HistoryByCommit(deleted) = %+v, %v", h, err)
	}
	_, err = c.HistoryByCommit(ctx, cur.Commit)
	wantErr(t, "HistoryByCommit(current)", err, ErrNotFound)
	// A value sharing the indexed 8-byte prefix but not the rest is no match.
	near := cur.Pin
	near[31] ^= 1
	_, err = c.CurrentByPin(ctx, near)
	wantErr(t, "CurrentByPin(near miss)", err, ErrNotFound)
	_, err = c.HistoryByObjectID(ctx, cur.ObjectID)
	wantErr(t, "HistoryByObjectID(current)", err, ErrNotFound)
}

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	e := putNext(t, c, "b", "k")
	mustNot(t, "Rewrap", c.Rewrap(ctx, "b", "k", e.ObjectID, 2, []byte("rewrapped")))
	got := mustGet(t, c, "b", "k")
	if got.KeyVersion != 2 || string(got.Wrapped) != "rewrapped" {
		t.Errorf("after Rewrap: key version %d, wrapped %q", got.KeyVersion, got.Wrapped)
	}
	putNext(t, c, "b", "k")
	wantErr(t, "Rewrap superseded", c.Rewrap(ctx, "b", "k", e.ObjectID, 3, []byte("x")), ErrStaleVersion)
	wantErr(t, "Rewrap missing", c.Rewrap(ctx, "b", "nope", e.ObjectID, 3, []byte("x")), ErrNotFound)
}

func TestBatch(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	old := putNext(t, c, "b", "k1")
	es := []Entry{mkEntry("b", "k1", 2), mkEntry("b", "k2", 1), mkEntry("b", "k2", 2)}
	var ps []Pending
	for _, e := range es[:2] {
		ps = append(ps, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: e.Bucket, Key: e.Key, Version: e.Version})
	}
	mustNot(t, "BeginPutBatch", c.BeginPutBatch(ctx, ps))
	// All or nothing: one stale reservation fails the batch.
	bad := append(ps[:2:2], Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k3", Version: 1},
		Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k1", Version: 2})
	before, _ := c.ListPending(ctx)
	wantErr(t, "BeginPutBatch with stale", c.BeginPutBatch(ctx, bad[2:]), ErrStaleVersion)
	if after, _ := c.ListPending(ctx); !reflect.DeepEqual(before, after) {
		t.Errorf("failed batch left pending rows: %+v", after)
	}
	if v, _ := c.NextVersion(ctx, "b", "k3"); v != 1 {
		t.Errorf("failed batch reserved k3 version %d", v-1)
	}

	// A stale entry fails the whole commit batch.
	stale := append([]Entry{}, es...)
	stale = append(stale, mkEntry("b", "k1", 1))
	pend(t, c, stale[2:]...) // es[:2] are pending already
	_, err := c.CommitPutBatch(ctx, stale)
	wantErr(t, "CommitPutBatch with stale", err, ErrStaleVersion)
	if cnt, _ := c.Count(ctx); cnt != 1 {
		t.Errorf("failed batch committed: %d entries", cnt)
	}
	mustNot(t, "AbortPut", c.AbortPut(ctx, stale[3].ObjectID))

	replaced, err := c.CommitPutBatch(ctx, es)
	mustNot(t, "CommitPutBatch", err)
	if len(replaced) != 3 || replaced[0] == nil || replaced[0].ObjectID != old.ObjectID || replaced[1] != nil ||
		replaced[2] == nil || replaced[2].ObjectID != es[1].ObjectID {
		t.Errorf("replaced = %+v", replaced)
	}
	if got := mustGet(t, c, "b", "k2"); got.ObjectID != es[2].ObjectID {
		t.Errorf("k2 current = v%d", got.Version)
	}
	if ps, _ := c.ListPending(ctx); len(ps) != 0 {
		t.Errorf("pending left: %+v", ps)
	}
	if g, _ := c.Garbage(ctx); len(g) != 2 {
		t.Errorf("garbage = %x", g)
	}
	mustNot(t, "empty batches", c.BeginPutBatch(ctx, nil))
	if r, err := c.CommitPutBatch(ctx, nil); err != nil || r != nil {
		t.Errorf("CommitPutBatch(nil) = %v, %v", r, err)
	}
}

func TestBeginPutBatchAssignsVersions(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	putNext(t, c, "b", "old")
	putNext(t, c, "b", "old")
	mk := func(key string, v uint64) Pending {
		return Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: key, Version: v}
	}
	ps := []Pending{mk("new", 0), mk("old", 0), {ObjectID: newID(), Kind: KindJournal}, mk("new", 0), mk("x", 7), mk("x", 0)}
	mustNot(t, "BeginPutBatch", c.BeginPutBatch(ctx, ps))
	for i, want := range []uint64{1, 3, 0, 2, 7, 8} {
		if ps[i].Version != want {
			t.Errorf("ps[%d] (%s) version %d, want %d", i, ps[i].Key, ps[i].Version, want)
		}
	}
	for key, want := range map[string]uint64{"new": 3, "old": 4, "x": 9} {
		if v, _ := c.NextVersion(ctx, "b", key); v != want {
			t.Errorf("NextVersion(%q) = %d, want %d", key, v, want)
		}
	}
	// A failed batch assigns nothing.
	bad := []Pending{mk("y", 0), mk("nope", 0)}
	bad[1].Bucket = "nope"
	wantErr(t, "BeginPutBatch into a missing bucket", c.BeginPutBatch(ctx, bad), ErrNotFound)
	if bad[0].Version != 0 {
		t.Errorf("failed batch assigned version %d", bad[0].Version)
	}
	if v, _ := c.NextVersion(ctx, "b", "y"); v != 1 {
		t.Errorf("failed batch reserved: NextVersion = %d", v)
	}
	// The assigned versions commit.
	var es []Entry
	for _, p := range ps {
		if p.Kind == KindObject {
			e := mkEntry(p.Bucket, p.Key, p.Version)
			e.ObjectID, e.Pin = p.ObjectID, pinOf(p.ObjectID)
			es = append(es, e)
		}
	}
	_, err := c.CommitPutBatch(ctx, es)
	mustNot(t, "CommitPutBatch", err)
	for key, want := range map[string]uint64{"new": 2, "old": 3, "x": 8} {
		if e := mustGet(t, c, "b", key); e.Version != want {
			t.Errorf("%q at version %d, want %d", key, e.Version, want)
		}
	}
}

func TestBatchDuplicatesInside(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	a, b := mkEntry("b", "a", 1), mkEntry("b", "b", 1)
	for _, tc := range []struct {
		name string
		edit func(*Entry)
		want error
	}{
		{"distinct (control)", func(*Entry) {}, nil},
		{"same object id", func(e *Entry) { e.ObjectID = a.ObjectID }, ErrExists},
		{"same pin", func(e *Entry) { e.Pin = a.Pin }, ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := b
			tc.edit(&b)
			if tc.want == nil {
				pend(t, c, a, b)
			}
			_, err := c.CommitPutBatch(ctx, []Entry{a, b})
			if tc.want == nil {
				mustNot(t, "CommitPutBatch", err)
				return
			}
			wantErr(t, "CommitPutBatch", err, tc.want)
			if b.ObjectID == a.ObjectID {
				err = c.BeginPutBatch(ctx, []Pending{{ObjectID: a.ObjectID, Kind: KindMarker}, {ObjectID: b.ObjectID, Kind: KindMarker}})
				wantErr(t, "BeginPutBatch", err, ErrExists)
			}
		})
	}
}

// TestBatchMatchesSingle records one random sequence of writes and deletes
// through the single calls into one catalog and through batches into
// another, and compares everything observable.
func TestBatchMatchesSingle(t *testing.T) {
	ctx := context.Background()
	single, _ := newCatalog(t)
	batch, _ := newCatalog(t)
	rng := mrand.New(mrand.NewPCG(1, 2))
	next := map[string]uint64{}
	type step struct {
		es     []Entry
		delete []string
	}
	var steps []step
	for range 40 {
		var st step
		for range 1 + rng.IntN(30) {
			key := fmt.Sprintf("k%02d", rng.IntN(25)) // few keys: repeats within batches
			next[key]++
			st.es = append(st.es, mkEntry("b", key, next[key]))
		}
		for range rng.IntN(3) {
			st.delete = append(st.delete, fmt.Sprintf("k%02d", rng.IntN(25)))
		}
		steps = append(steps, st)
	}
	pending := func(es []Entry) []Pending {
		var ps []Pending
		for _, e := range es {
			ps = append(ps, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: e.Bucket, Key: e.Key, Version: e.Version})
		}
		return ps
	}
	for i, st := range steps {
		var want []*Entry
		for _, e := range st.es {
			want = append(want, put(t, single, e))
		}
		mustNot(t, "BeginPutBatch", batch.BeginPutBatch(ctx, pending(st.es)))
		got, err := batch.CommitPutBatch(ctx, st.es)
		mustNot(t, "CommitPutBatch", err)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: batch replaced %v, single %v", i, got, want)
		}
		for _, key := range st.delete {
			e1, err1 := single.Delete(ctx, "b", key)
			e2, err2 := batch.Delete(ctx, "b", key)
			if !reflect.DeepEqual(e1, e2) || (err1 == nil) != (err2 == nil) {
				t.Fatalf("step %d: delete %q: %v %v / %v %v", i, key, e1, err1, e2, err2)
			}
		}
	}

	all := func(c Catalog) []Entry {
		var es []Entry
		mustNot(t, "All", c.All(ctx, func(e Entry) error { es = append(es, e); return nil }))
		return es
	}
	if a, b := all(single), all(batch); !reflect.DeepEqual(a, b) {
		t.Errorf("current entries differ:\nsingle %v\nbatch  %v", a, b)
	}
	history := func(c Catalog) map[keys.ID]HistoryEntry {
		g, err := c.Garbage(ctx)
		mustNot(t, "Garbage", err)
		m := map[keys.ID]HistoryEntry{}
		for _, id := range g {
			h, err := c.HistoryByObjectID(ctx, id)
			mustNot(t, "HistoryByObjectID", err)
			h.At = time.Time{}
			m[id] = h
		}
		return m
	}
	if a, b := history(single), history(batch); !reflect.DeepEqual(a, b) || len(a) == 0 {
		t.Errorf("history differs: %d entries / %d", len(a), len(b))
	}
	for key := range next {
		v1, _ := single.NextVersion(ctx, "b", key)
		v2, _ := batch.NextVersion(ctx, "b", key)
		if v1 != v2 || v1 != next[key]+1 {
			t.Errorf("NextVersion(%q) = %d single, %d batch, want %d", key, v1, v2, next[key]+1)
		}
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	c, _ := newEmptyCatalog(t)
	b := Bucket{Name: "b", ID: newID(), Created: time.Unix(1, 0).UTC()}
	bk := BucketKey{BucketID: b.ID, Version: 1, Wrapped: keys.Wrapped{Source: keys.SourcePKCS11, Alg: keys.AlgGCM, KEKVersion: 1, Data: []byte("w")},
		KeyCheck: []byte("check"), JournalID: newID(), State: 1, Created: time.Unix(2, 0).UTC()}
	e1, e2 := mkEntry("b", "x", 7), mkEntry("b", "y", 1)
	sys := SystemObject{ObjectID: newID(), Kind: KindJournal, Pin: pinOf(newID())}
	mustNot(t, "Restore", c.Restore(ctx, []Bucket{b}, []BucketKey{bk}, []Entry{e1}, []SystemObject{sys}, nil))

	if got := mustGet(t, c, "b", "x"); !reflect.DeepEqual(got, e1) {
		t.Errorf("restored entry = %+v", got)
	}
	if v, _ := c.NextVersion(ctx, "b", "x"); v != 8 {
		t.Errorf("NextVersion after restore = %d, want 8", v)
	}
	if ks, _ := c.BucketKeys(ctx, b.ID); len(ks) != 1 || !reflect.DeepEqual(ks[0], bk) {
		t.Errorf("restored keys = %+v", ks)
	}
	if k, _ := c.Lookup(ctx, sys.ObjectID); k != KnownSystem {
		t.Errorf("restored system object: Known %d", k)
	}

	// A second call with new records adds them; one overlapping record
	// fails the call and changes nothing.
	before := snapshot(t, c, "b", "y")
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"bucket again", func() error { return c.Restore(ctx, []Bucket{b}, nil, []Entry{e2}, nil, nil) }},
		{"key again", func() error { return c.Restore(ctx, nil, []BucketKey{bk}, []Entry{e2}, nil, nil) }},
		{"entry again", func() error { return c.Restore(ctx, nil, nil, []Entry{e2, e1}, nil, nil) }},
		{"system again", func() error { return c.Restore(ctx, nil, nil, []Entry{e2}, []SystemObject{sys}, nil) }},
	} {
		wantErr(t, tc.name, tc.call(), ErrExists)
		if after := snapshot(t, c, "b", "y"); !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: failed restore changed state", tc.name)
		}
	}
	err := c.Restore(ctx, nil, nil, []Entry{mkEntry("nope", "z", 1)}, nil, nil)
	wantErr(t, "entry in missing bucket", err, ErrNotFound)
	mustNot(t, "Restore second batch (control)", c.Restore(ctx, nil, nil, []Entry{e2}, nil, nil))
	if cnt, _ := c.Count(ctx); cnt != 2 {
		t.Errorf("Count = %d", cnt)
	}
}

func TestReopenPersists(t *testing.T) {
	ctx := context.Background()
	c, path := newCatalog(t)
	e := putNext(t, c, "b", "k")
	mustNot(t, "SetMeta", c.SetMeta(ctx, "repo-id", []byte("r1")))
	mustNot(t, "Close", c.Close())

	c2 := openAt(t, path)
	if got := mustGet(t, c2, "b", "k"); !reflect.DeepEqual(got, e) {
		t.Errorf("after reopen: %+v", got)
	}
	if v, _ := c2.GetMeta(ctx, "repo-id"); string(v) != "r1" {
		t.Errorf("meta after reopen: %q", v)
	}
	if v, _ := c2.NextVersion(ctx, "b", "k"); v != 2 {
		t.Errorf("NextVersion after reopen: %d", v)
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		version string
		want    error
	}{
		{"same (control)", fmt.Sprint(schemaVersion), nil},
		{"newer", fmt.Sprint(schemaVersion + 1), ErrNewerSchema},
		{"garbled", "x", errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, path := newEmptyCatalog(t)
			mustNot(t, "Close", c.Close())
			db, q := rawDB(t, path)
			_, err := db.Exec(q(`UPDATE meta SET value = ? WHERE key = ?`), []byte(tc.version), metaSchemaVersion)
			db.Close()
			mustNot(t, "set version", err)

			c, err = openLocation(ctx, path)
			switch tc.want {
			case nil:
				mustNot(t, "Open", err)
				c.Close()
			case errAny:
				if err == nil {
					c.Close()
					t.Error("Open succeeded")
				}
			default:
				if err == nil {
					c.Close()
				}
				wantErr(t, "Open", err, tc.want)
			}
		})
	}

	// A database that is not a catalog is refused, and left alone.
	path := newLocation(t)
	db, _ := rawDB(t, path)
	_, err := db.Exec(`CREATE TABLE t (x INTEGER)`)
	mustNot(t, "create", err)
	if c, err := openLocation(ctx, path); err == nil {
		c.Close()
		t.Error("Open of a foreign database succeeded")
	}
	var n int
	mustNot(t, "count tables", db.QueryRow(`SELECT count(*) FROM t`).Scan(&n))
}

func TestMetaEncoding(t *testing.T) {
	for _, m := range []map[string]string{
		nil,
		{"a": ""},
		{"x-amz-meta-a": "1", "b": "two", "": "", "\x00": "\xff"},
	} {
		b := encodeMeta(m)
		got, err := decodeMeta(b)
		mustNot(t, "decodeMeta", err)
		if len(m) == 0 && got != nil || len(m) > 0 && !reflect.DeepEqual(got, m) {
			t.Errorf("round trip %q -> %q", m, got)
		}
	}
	good := encodeMeta(map[string]string{"a": "1", "b": "2"})
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"canonical (control)", good, true},
		{"unsorted", []byte{2, 1, 'b', 1, '2', 1, 'a', 1, '1'}, false},
		{"duplicate", []byte{2, 1, 'a', 1, '2', 1, 'a', 1, '1'}, false},
		{"trailing", append(append([]byte{}, good...), 0), false},
		{"short", good[:len(good)-1], false},
		{"zero count", []byte{0}, false},
		{"huge length", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, false},
	} {
		_, err := decodeMeta(tc.b)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"a/", "a0", true},
		{"a\xff", "b", true},
		{"\xff\xff", "", false},
	} {
		got, ok := prefixEnd(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("prefixEnd(%q) = %q, %v", tc.in, got, ok)
		}
	}
}

// pend records pending writes for entries, as BeginPut would before a
// commit.
func pend(t testing.TB, c Catalog, es ...Entry) {
	t.Helper()
	ps := make([]Pending, len(es))
	for i, e := range es {
		ps[i] = Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: e.Bucket, Key: e.Key, Owner: "test", Started: time.Now()}
	}
	mustNot(t, "BeginPutBatch", c.BeginPutBatch(context.Background(), ps))
}

// TestCommitNeedsPending: a write whose pending record was removed (by a
// cleanup that judged it orphaned) cannot commit, beside a control that
// differs only in the pending record.
func TestCommitNeedsPending(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	ok := mkEntry("b", "k", 1)
	pend(t, c, ok)
	if _, err := c.CommitPut(ctx, ok); err != nil {
		t.Fatalf("control: %v", err)
	}
	gone := mkEntry("b", "k", 2)
	pend(t, c, gone)
	mustNot(t, "AbortPut", c.AbortPut(ctx, gone.ObjectID))
	if _, err := c.CommitPut(ctx, gone); !errors.Is(err, ErrNotPending) {
		t.Fatalf("commit without pending: %v", err)
	}
	batch := mkEntry("b", "k", 3)
	if _, err := c.CommitPutBatch(ctx, []Entry{batch}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("batch commit without pending: %v", err)
	}
	sys := SystemObject{ObjectID: newID(), Kind: KindJournal, Pin: pinOf(newID())}
	if err := c.CommitSystem(ctx, sys); !errors.Is(err, ErrNotPending) {
		t.Fatalf("system commit without pending: %v", err)
	}
	if e, _ := c.Get(ctx, "b", "k"); e.ObjectID != ok.ObjectID {
		t.Fatal("a refused commit changed the current entry")
	}
}

// TestCommitBucketKeyIsAtomic: the journal entry and its bucket key record
// are recorded together or not at all.
func TestCommitBucketKeyIsAtomic(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	b := mustCreateBucket(t, c, "kb")
	mk := func() (SystemObject, BucketKey) {
		s := SystemObject{ObjectID: newID(), Kind: KindJournal, Pin: pinOf(newID())}
		mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: s.ObjectID, Kind: KindJournal, Owner: "t", Started: time.Now()}))
		k := BucketKey{BucketID: b.ID, Version: 1, KeyCheck: make([]byte, 32), JournalID: s.ObjectID, State: 1,
			Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 1, Data: make([]byte, keys.WrappedLenHKDFGCMCommit)}}
		return s, k
	}
	s1, k1 := mk()
	mustNot(t, "CommitBucketKey", c.CommitBucketKey(ctx, s1, k1)) // control
	s2, k2 := mk()                                                // a second v1: another process lost the race
	if err := c.CommitBucketKey(ctx, s2, k2); !errors.Is(err, ErrExists) {
		t.Fatalf("second v1: %v", err)
	}
	sys, _ := c.SystemObjects(ctx)
	if len(sys) != 1 || sys[0].ObjectID != s1.ObjectID {
		t.Fatalf("the refused journal entry was recorded: %+v", sys)
	}
	if k, _ := c.Lookup(ctx, s2.ObjectID); k != KnownPending {
		t.Fatalf("the refused entry is %v, want still pending (for cleanup)", k)
	}
}
