package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
)

// segLens is the segment table of bucket/key's authenticated manifest.
func (e *env) segLens(bucket, key string) []uint64 {
	e.t.Helper()
	rd, err := e.r.OpenObject(context.Background(), bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rd.Close()
	var l []uint64
	for _, s := range rd.Manifest().Segments {
		l = append(l, s.Len)
	}
	return l
}

// reseal opens bucket/key and reseals it with attrs.
func (e *env) reseal(bucket, key string, attrs map[string]string) error {
	e.t.Helper()
	ctx := context.Background()
	rd, err := e.r.OpenObject(ctx, bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.r.Reseal(ctx, rd, attrs)
	rd.Close()
	e.r.bg.Wait() // the replaced version's removal, which rd's Close starts
	return err
}

// TestReseal: an object sealed again with changed attributes keeps its
// plaintext, segments (a multipart object's parts too), content type,
// user metadata, other attributes and modified time; it is a new version
// under a new object id, the old stored object is gone, and the change
// survives a rebuild of the catalog from the store. Attributes that do
// not fit are refused and change nothing.
func TestReseal(t *testing.T) {
	e := &mpEnv{env: newEnv(t), kind: "local"}
	ctx := context.Background()
	data := random(10<<20 + 5)
	before, err := e.r.Put(ctx, mpBucket, "plain", bytes.NewReader(data), PutOptions{ContentType: "text/x-reseal",
		Meta: map[string]string{"colour": "blue"}, Attrs: map[string]string{"etag": "e1", "cache-control": "no-store"}})
	if err != nil {
		t.Fatal(err)
	}
	segs := e.segLens(mpBucket, "plain")
	if err := e.reseal(mpBucket, "plain", map[string]string{"tagging": "k=v", "cache-control": ""}); err != nil {
		t.Fatal(err)
	}
	after, err := e.r.Stat(ctx, mpBucket, "plain")
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := map[string]string{"colour": "blue", ":etag": "e1", ":tagging": "k=v"}
	switch {
	case !reflect.DeepEqual(after.Meta, wantMeta):
		t.Errorf("metadata after reseal: %v, want %v", after.Meta, wantMeta)
	case after.Version != before.Version+1 || after.ObjectID == before.ObjectID:
		t.Errorf("reseal: version %d object %x, before version %d object %x", after.Version, after.ObjectID, before.Version, before.ObjectID)
	case !after.Modified.Equal(before.Modified) || after.ContentType != "text/x-reseal" || after.Size != before.Size:
		t.Errorf("reseal changed modified %v→%v, content type %q or size %d", before.Modified, after.Modified, after.ContentType, after.Size)
	}
	e.mustGet(mpBucket, "plain", data)
	if got := e.segLens(mpBucket, "plain"); !reflect.DeepEqual(got, segs) {
		t.Errorf("segments after reseal: %v, want %v", got, segs)
	}
	if _, err := os.Stat(e.storePath(format.StoreName(before.ObjectID))); !os.IsNotExist(err) {
		t.Errorf("the replaced stored object is still there: %v", err)
	}

	// A multipart object keeps its parts as segments.
	p1, p2 := random(MinPartSize), random(7)
	id := e.create("mp", PutOptions{})
	e.complete("mp", id, e.part("mp", id, 1, p1), e.part("mp", id, 2, p2))
	if err := e.reseal(mpBucket, "mp", map[string]string{"tagging": "a=b"}); err != nil {
		t.Fatal(err)
	}
	if got := e.segLens(mpBucket, "mp"); !reflect.DeepEqual(got, []uint64{MinPartSize, 7}) {
		t.Errorf("multipart segments after reseal: %v", got)
	}
	e.mustGet(mpBucket, "mp", append(append([]byte{}, p1...), p2...))

	// Too large: refused, nothing changed. Control: the reseal above.
	cur, _ := e.r.Stat(ctx, mpBucket, "plain")
	err = e.reseal(mpBucket, "plain", map[string]string{"tagging": strings.Repeat("x", 3000)})
	if !errors.Is(err, ErrMetadataTooLarge) {
		t.Errorf("reseal with 3000 bytes of attributes: %v", err)
	}
	if now, _ := e.r.Stat(ctx, mpBucket, "plain"); now.ObjectID != cur.ObjectID {
		t.Error("a refused reseal replaced the object")
	}

	// Rebuilt from the store alone, the resealed attributes are there.
	e.r.Close()
	for _, f := range []string{CatalogFile, CatalogFile + "-wal", CatalogFile + "-shm"} {
		os.Remove(filepath.Join(e.home, f))
	}
	r, _, err := Recover(ctx, RecoverOptions{Home: e.home, Passphrase: pass, AcceptUnverifiedFreshness: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if got, err := r.Stat(ctx, mpBucket, "plain"); err != nil || !reflect.DeepEqual(got.Meta, wantMeta) {
		t.Errorf("after recover: %v %v", got.Meta, err)
	}
	e.mustVerifyClean()
}

// TestResealCommitsOnlyOverItsSource: a reseal of an object that was
// replaced or deleted while it was being resealed stores nothing and
// leaves the newer state alone (ErrReplaced); a damaged source fails it
// the same way. Control: the same reseal of an untouched object commits
// (TestReseal).
func TestResealCommitsOnlyOverItsSource(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old, newer := random(300000), random(1000)
	for _, k := range []string{"replaced", "deleted"} {
		e.put("bkt", k, old)
		rd, err := e.r.OpenObject(ctx, "bkt", k)
		if err != nil {
			t.Fatal(err)
		}
		if k == "replaced" {
			e.put("bkt", k, newer)
		} else if _, err := e.r.Delete(ctx, "bkt", k); err != nil {
			t.Fatal(err)
		}
		_, err = e.r.Reseal(ctx, rd, map[string]string{"tagging": "k=v"})
		rd.Close()
		if !errors.Is(err, ErrReplaced) {
			t.Errorf("%s: reseal: %v, want ErrReplaced", k, err)
		}
	}
	e.mustGet("bkt", "replaced", newer)
	if _, err := e.r.Stat(ctx, "bkt", "deleted"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted key after the reseal: %v", err)
	}

	// A damaged source: the damage is reported, nothing replaces it.
	e.put("bkt", "damaged", random(10<<20))
	name := e.nameOf("bkt", "damaged")
	flip(t, e.storePath(name), 9<<20)
	var de *DamageError
	if err := e.reseal("bkt", "damaged", map[string]string{"tagging": "k=v"}); !errors.As(err, &de) {
		t.Errorf("reseal of a damaged object: %v", err)
	}
	if e.nameOf("bkt", "damaged") != name {
		t.Error("the damaged object was replaced")
	}
	if ps, err := e.r.Catalog().ListPending(ctx); err != nil || len(ps) != 0 {
		t.Errorf("pending writes left: %v %v", ps, err)
	}
}
