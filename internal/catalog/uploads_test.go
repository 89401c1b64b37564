package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func mkUpload(bucket, key string) Upload {
	var id [16]byte
	rand.Read(id[:])
	u := Upload{ID: hex.EncodeToString(id[:]), ObjectID: newID(), Bucket: bucket, Key: key,
		Created: time.Unix(1700000000, 42).UTC(), KeyVersion: 1, Wrapped: []byte("wrapped-data-key"),
		ContentType: "text/plain", Meta: map[string]string{"a": "1", ":etag-to-be": "x"}}
	rand.Read(u.Commit[:])
	return u
}

func mkPart(n int, size int64) UploadPart {
	p := UploadPart{Number: n, Size: size, ETag: fmt.Sprintf("%032x", n), Token: fmt.Sprintf("tok-%d-%d", n, size),
		Modified: time.Unix(1700000100, 0).UTC()}
	rand.Read(p.Salt[:])
	return p
}

// TestUploadLifecycle: an upload is pending from its creation, keeps its
// parts (a part sent again replaces the record and returns the old one),
// fixes its completion once, refuses new parts while completing, and
// commits as the current entry with its removal in one step.
func TestUploadLifecycle(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	u := mkUpload("b", "k")
	wantErr(t, "CreateUpload in a missing bucket", c.CreateUpload(ctx, mkUpload("nope", "k"), "o"), ErrNotFound)
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, u, "multipart upload "+u.ID))
	wantErr(t, "CreateUpload again", c.CreateUpload(ctx, u, "o"), ErrExists)
	if k, err := c.Lookup(ctx, u.ObjectID); err != nil || k != KnownPending {
		t.Fatalf("the upload's object is %v (%v), want pending", k, err)
	}
	ps, err := c.ListPending(ctx)
	mustNot(t, "ListPending", err)
	if len(ps) != 1 || ps[0].ObjectID != u.ObjectID || ps[0].Version != 0 || ps[0].Owner != "multipart upload "+u.ID {
		t.Fatalf("pending: %+v", ps)
	}
	got, err := c.GetUpload(ctx, u.ID)
	mustNot(t, "GetUpload", err)
	if !reflect.DeepEqual(got, u) {
		t.Fatalf("GetUpload: %+v, want %+v", got, u)
	}
	_, err = c.GetUpload(ctx, "0123")
	wantErr(t, "GetUpload of an unknown id", err, ErrNotFound)

	h, err := c.SetUploadHandle(ctx, u.ID, "first")
	mustNot(t, "SetUploadHandle", err)
	if h2, err := c.SetUploadHandle(ctx, u.ID, "second"); err != nil || h != "first" || h2 != "first" {
		t.Fatalf("handles: %q, %q (%v): the first must stay", h, h2, err)
	}

	p2, p1 := mkPart(2, 10), mkPart(1, 5<<20)
	for _, p := range []UploadPart{p2, p1} {
		if old, err := c.PutUploadPart(ctx, u.ID, p); err != nil || old != nil {
			t.Fatalf("PutUploadPart %d: %v, %v", p.Number, old, err)
		}
	}
	resent := mkPart(2, 11)
	old, err := c.PutUploadPart(ctx, u.ID, resent)
	if err != nil || old == nil || !reflect.DeepEqual(*old, p2) {
		t.Fatalf("part 2 sent again: replaced %+v (%v), want %+v", old, err, p2)
	}
	parts, err := c.UploadParts(ctx, u.ID)
	mustNot(t, "UploadParts", err)
	if !reflect.DeepEqual(parts, []UploadPart{p1, resent}) {
		t.Fatalf("parts: %+v", parts)
	}
	_, err = c.PutUploadPart(ctx, "unknown", mkPart(1, 1))
	wantErr(t, "PutUploadPart of an unknown upload", err, ErrNotFound)

	// Another version of the key committed before the completion.
	prev := putNext(t, c, "b", "k")
	mod := time.Unix(1700000200, 7).UTC()
	cu, err := c.BeginComplete(ctx, u.ID, []int{1, 2}, mod)
	mustNot(t, "BeginComplete", err)
	if !cu.Completing || cu.Version != prev.Version+1 || !cu.Modified.Equal(mod) || !reflect.DeepEqual(cu.Parts, []int{1, 2}) {
		t.Fatalf("BeginComplete: %+v", cu)
	}
	if v, _ := c.NextVersion(ctx, "b", "k"); v != cu.Version+1 {
		t.Fatalf("the completion's version is not reserved: next is %d", v)
	}
	if again, err := c.BeginComplete(ctx, u.ID, []int{1}, time.Now()); err != nil || !reflect.DeepEqual(again, cu) {
		t.Fatalf("BeginComplete again: %+v (%v), want the first's %+v", again, err, cu)
	}
	_, err = c.PutUploadPart(ctx, u.ID, mkPart(3, 1))
	wantErr(t, "PutUploadPart while completing", err, ErrCompleting)

	e := mkEntry("b", "k", cu.Version)
	e.ObjectID = u.ObjectID
	e.Pin = pinOf(e.ObjectID)
	wrong := e
	wrong.Version++
	_, err = c.CommitUpload(ctx, u.ID, wrong, false)
	wantErr(t, "CommitUpload of another version", err, ErrNotFound)
	replaced, err := c.CommitUpload(ctx, u.ID, e, false)
	mustNot(t, "CommitUpload", err)
	if replaced == nil || replaced.ObjectID != prev.ObjectID {
		t.Fatalf("CommitUpload replaced %+v, want %+v", replaced, prev)
	}
	if cur := mustGet(t, c, "b", "k"); cur.ObjectID != u.ObjectID {
		t.Fatalf("current: %+v", cur)
	}
	_, err = c.GetUpload(ctx, u.ID)
	wantErr(t, "GetUpload after the commit", err, ErrNotFound)
	if parts, _ := c.UploadParts(ctx, u.ID); len(parts) != 0 {
		t.Fatalf("parts left after the commit: %+v", parts)
	}
	if k, _ := c.Lookup(ctx, u.ObjectID); k != KnownCurrent {
		t.Fatalf("the object is %v after the commit", k)
	}
}

// TestCommitUploadStale: a completion whose version was overtaken by a
// newer commit of the key is refused, and the upload stays for its
// abort; the lifecycle test is the control.
func TestCommitUploadStale(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	u := mkUpload("b", "k")
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, u, "o"))
	mustNot(t, "PutUploadPart", func() error { _, err := c.PutUploadPart(ctx, u.ID, mkPart(1, 1)); return err }())
	cu, err := c.BeginComplete(ctx, u.ID, []int{1}, time.Now())
	mustNot(t, "BeginComplete", err)
	newer := putNext(t, c, "b", "k")
	if newer.Version <= cu.Version {
		t.Fatalf("a put after the completion began got version %d, not above %d", newer.Version, cu.Version)
	}
	e := mkEntry("b", "k", cu.Version)
	e.ObjectID = u.ObjectID
	_, err = c.CommitUpload(ctx, u.ID, e, false)
	wantErr(t, "CommitUpload overtaken", err, ErrStaleVersion)
	if _, err := c.GetUpload(ctx, u.ID); err != nil {
		t.Fatalf("the refused upload is gone: %v", err)
	}
}

// TestDeleteUpload: deleting an upload removes it, its parts and its
// pending write, returns them, and a second delete finds nothing; the
// version a begun completion reserved stays used, and what the completion
// stored is garbage (for the caller or Cleanup to remove). Control: an
// upload deleted before its completion began leaves nothing known.
func TestDeleteUpload(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	u := mkUpload("b", "k")
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, u, "o"))
	p := mkPart(1, 3)
	if _, err := c.PutUploadPart(ctx, u.ID, p); err != nil {
		t.Fatal(err)
	}
	cu, err := c.BeginComplete(ctx, u.ID, []int{1}, time.Now())
	mustNot(t, "BeginComplete", err)
	gone, parts, err := c.DeleteUpload(ctx, u.ID)
	mustNot(t, "DeleteUpload", err)
	if gone.ID != u.ID || !gone.Completing || !reflect.DeepEqual(parts, []UploadPart{p}) {
		t.Fatalf("DeleteUpload returned %+v, %+v", gone, parts)
	}
	if k, _ := c.Lookup(ctx, u.ObjectID); k != KnownGarbage {
		t.Fatalf("the completing upload's object is %v, want garbage", k)
	}
	mustNot(t, "ForgetGarbage", c.ForgetGarbage(ctx, u.ObjectID))
	if k, _ := c.Lookup(ctx, u.ObjectID); k != KnownNone {
		t.Fatalf("the object is still %v", k)
	}
	plain := mkUpload("b", "k2")
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, plain, "o"))
	if _, _, err := c.DeleteUpload(ctx, plain.ID); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.Lookup(ctx, plain.ObjectID); k != KnownNone {
		t.Fatalf("control: an upload deleted before completing leaves its object %v", k)
	}
	if _, _, err := c.DeleteUpload(ctx, u.ID); err == nil {
		t.Fatal("a second DeleteUpload succeeded")
	} else {
		wantErr(t, "DeleteUpload again", err, ErrNotFound)
	}
	if v, _ := c.NextVersion(ctx, "b", "k"); v != cu.Version+1 {
		t.Fatalf("next version %d after an abandoned completion of %d", v, cu.Version)
	}
}

// TestListUploads: by bucket and key prefix, in key order; every bucket
// when none is given.
func TestListUploads(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	mustCreateBucket(t, c, "other")
	for _, bk := range [][2]string{{"b", "x/2"}, {"b", "x/1"}, {"b", "y"}, {"other", "x/3"}} {
		mustNot(t, "CreateUpload", c.CreateUpload(ctx, mkUpload(bk[0], bk[1]), "o"))
	}
	keysOf := func(us []Upload) (ks []string) {
		for _, u := range us {
			ks = append(ks, u.Bucket+"/"+u.Key)
		}
		return ks
	}
	for _, tc := range []struct {
		bucket, prefix string
		want           []string
	}{
		{"b", "x/", []string{"b/x/1", "b/x/2"}},
		{"b", "", []string{"b/x/1", "b/x/2", "b/y"}},
		{"other", "", []string{"other/x/3"}},
		{"b", "z", nil},
		{"", "", []string{"b/x/1", "b/x/2", "b/y", "other/x/3"}},
	} {
		us, err := c.ListUploads(ctx, tc.bucket, tc.prefix)
		mustNot(t, "ListUploads", err)
		if got := keysOf(us); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListUploads(%q, %q) = %v, want %v", tc.bucket, tc.prefix, got, tc.want)
		}
	}
}

// TestSchemaMigratesToUploads: a version-1 catalog (before uploads)
// opens as version 2 with its data intact and uploads usable; the
// control is a catalog created at version 2.
func TestSchemaMigratesToUploads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	c := openAt(t, path)
	mustCreateBucket(t, c, "b")
	e := putNext(t, c, "b", "k")
	mustNot(t, "Close", c.Close())
	// Make it the version-1 file this program's predecessor wrote.
	db, err := sql.Open("sqlite", path)
	mustNot(t, "sql.Open", err)
	for _, q := range append(undoV3, `DROP TABLE upload_parts`, `DROP TABLE uploads`,
		`UPDATE meta SET value = '1' WHERE key = 'schema_version'`) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	c = openAt(t, path)
	if v, err := c.GetMeta(ctx, metaSchemaVersion); err != nil || string(v) != fmt.Sprint(schemaVersion) {
		t.Fatalf("schema version after migration: %q (%v)", v, err)
	}
	if got := mustGet(t, c, "b", "k"); !reflect.DeepEqual(got, e) {
		t.Fatalf("entry after migration: %+v", got)
	}
	u := mkUpload("b", "k2")
	mustNot(t, "CreateUpload after migration", c.CreateUpload(ctx, u, "o"))
	if _, err := c.GetUpload(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
}
