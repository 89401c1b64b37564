package catalog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// undoV5 takes a version-5 catalog back to version 4.
var undoV5 = []string{`ALTER TABLE upload_parts DROP COLUMN checksum`, `UPDATE meta SET value = '4' WHERE key = 'schema_version'`}

// undoV4 takes a version-5 catalog back to version 3.
var undoV4 = []string{`ALTER TABLE upload_parts DROP COLUMN checksum`, `DROP TABLE heads`,
	`UPDATE meta SET value = '3' WHERE key = 'schema_version'`}

// undoV3 takes a version-5 catalog back to version 2.
var undoV3 = []string{`ALTER TABLE upload_parts DROP COLUMN checksum`, `DROP TABLE heads`, `DROP TABLE key_batches`,
	`ALTER TABLE pending DROP COLUMN key_version`, `UPDATE meta SET value = '2' WHERE key = 'schema_version'`}

// keyWorld is a catalog with bucket "b" holding key versions 1 and 2,
// each with its journal entry recorded as a system object.
func keyWorld(t *testing.T) (Catalog, Bucket) {
	t.Helper()
	ctx := context.Background()
	c, _ := newEmptyCatalog(t)
	b := mustCreateBucket(t, c, "b")
	for v := uint32(1); v <= 2; v++ {
		j := newID()
		mustNot(t, "BeginPut journal", c.BeginPut(ctx, Pending{ObjectID: j, Kind: KindJournal, Owner: "o"}))
		k := BucketKey{BucketID: b.ID, Version: v, Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit,
			KEKVersion: 1, Data: bytes.Repeat([]byte{byte(v)}, keys.WrappedLenHKDFGCMCommit)}, KeyCheck: bytes.Repeat([]byte{7}, 32),
			Created: time.Unix(1700000000+int64(v), 0).UTC(), JournalID: j, State: KeyActive}
		mustNot(t, "CommitBucketKey", c.CommitBucketKey(ctx, SystemObject{ObjectID: j, Kind: KindJournal, Created: time.Now()}, k))
	}
	return c, b
}

func pendingSystem(t *testing.T, c Catalog) SystemObject {
	t.Helper()
	s := SystemObject{ObjectID: newID(), Kind: KindJournal, Created: time.Now()}
	mustNot(t, "BeginPut", c.BeginPut(context.Background(), Pending{ObjectID: s.ObjectID, Kind: KindJournal, Owner: "o"}))
	return s
}

func TestRetireBucketKey(t *testing.T) {
	ctx := context.Background()
	c, b := keyWorld(t)
	e := putNext(t, c, "b", "k") // key version 1 (mkEntry)

	// The primary version is refused, and so is a version that still
	// wraps a data key.
	_, err := c.RetireBucketKey(ctx, b.ID, 2, false)
	wantErr(t, "retire the primary", err, ErrKeyInUse)
	_, err = c.RetireBucketKey(ctx, b.ID, 1, false)
	wantErr(t, "retire a version in use", err, ErrKeyInUse)
	u, err := c.KeyVersionUse(ctx, b.ID, 1)
	mustNot(t, "KeyVersionUse", err)
	if u != (KeyUse{Objects: 1}) {
		t.Errorf("use of v1: %+v", u)
	}

	// Rewrapped under version 2 (with the batch entry that says so), v1
	// protects nothing.
	s := pendingSystem(t, c)
	n, err := c.CommitRewrapBatch(ctx, s, b.ID, 2, []Rewrap{{Bucket: "b", Key: "k", ObjectID: e.ObjectID, Wrapped: []byte("new wrap")}})
	mustNot(t, "CommitRewrapBatch", err)
	if n != 1 {
		t.Errorf("rewrapped %d entries, want 1", n)
	}
	if got := mustGet(t, c, "b", "k"); got.KeyVersion != 2 || string(got.Wrapped) != "new wrap" {
		t.Errorf("after rewrap: key version %d, wrap %q", got.KeyVersion, got.Wrapped)
	}
	batches, err := c.KeyBatches(ctx)
	mustNot(t, "KeyBatches", err)
	if want := []KeyBatch{{JournalID: s.ObjectID, BucketID: b.ID, KeyVersion: 2, Records: 1}}; !reflect.DeepEqual(batches, want) {
		t.Errorf("KeyBatches = %+v, want %+v", batches, want)
	}

	// A write in flight under v1 holds it; an upload under v1 too.
	p := Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "w", Owner: "o", KeyVersion: 1}
	mustNot(t, "BeginPut under v1", c.BeginPut(ctx, p))
	_, err = c.RetireBucketKey(ctx, b.ID, 1, false)
	wantErr(t, "retire with a write in flight", err, ErrKeyInUse)
	mustNot(t, "AbortPut", c.AbortPut(ctx, p.ObjectID))
	up := mkUpload("b", "up")
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, up, "o"))
	_, err = c.RetireBucketKey(ctx, b.ID, 1, false)
	wantErr(t, "retire with an upload in progress", err, ErrKeyInUse)
	if _, _, err := c.DeleteUpload(ctx, up.ID); err != nil {
		t.Fatal(err)
	}

	// Now it goes: its journal entry to garbage, its material zeroed.
	bks, _ := c.BucketKeys(ctx, b.ID)
	gone, err := c.RetireBucketKey(ctx, b.ID, 1, false)
	mustNot(t, "RetireBucketKey", err)
	if len(gone) != 1 || gone[0] != bks[0].JournalID {
		t.Errorf("retire sent %x to garbage, want the journal entry %x", gone, bks[0].JournalID)
	}
	if k, _ := c.Lookup(ctx, bks[0].JournalID); k != KnownGarbage {
		t.Errorf("v1's journal entry is %v, want garbage", k)
	}
	bks, _ = c.BucketKeys(ctx, b.ID)
	if bks[0].State != KeyDestroyed || !bytes.Equal(bks[0].Wrapped.Data, make([]byte, keys.WrappedLenHKDFGCMCommit)) ||
		!bytes.Equal(bks[0].KeyCheck, make([]byte, 32)) {
		t.Errorf("v1 after retire: %+v", bks[0])
	}
	if bks[1].State != KeyActive || bks[1].Wrapped.Data[0] != 2 {
		t.Errorf("v2 changed: %+v", bks[1])
	}
	if again, err := c.RetireBucketKey(ctx, b.ID, 1, false); err != nil || len(again) != 0 {
		t.Errorf("retiring again: %v, %x", err, again)
	}

	// Writes under the retired version are refused before they start;
	// under the primary (the control) they go through.
	p = Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "w", Owner: "o", KeyVersion: 1}
	wantErr(t, "BeginPut under a retired version", c.BeginPut(ctx, p), ErrKeyRetired)
	wantErr(t, "BeginPutBatch under a retired version", c.BeginPutBatch(ctx, []Pending{p}), ErrKeyRetired)
	up = mkUpload("b", "up2")
	wantErr(t, "CreateUpload under a retired version", c.CreateUpload(ctx, up, "o"), ErrKeyRetired)
	p.KeyVersion = 2
	mustNot(t, "BeginPut under the primary", c.BeginPut(ctx, p))
	q := Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "w2", Owner: "o", KeyVersion: 2}
	mustNot(t, "BeginPutBatch under the primary", c.BeginPutBatch(ctx, []Pending{q}))
	ps, _ := c.ListPending(ctx)
	for _, x := range ps {
		if x.KeyVersion != 2 {
			t.Errorf("pending %x records key version %d, want 2", x.ObjectID, x.KeyVersion)
		}
	}
	s = pendingSystem(t, c)
	_, err = c.CommitRewrapBatch(ctx, s, b.ID, 1, nil)
	wantErr(t, "rewrap under a retired version", err, ErrKeyRetired)

	// The whole bucket's last version goes only when asked for.
	_, err = c.RetireBucketKey(ctx, b.ID, 2, true)
	wantErr(t, "retire the primary in use", err, ErrKeyInUse)
}

// TestRewrapBatchSkipsReplaced: an entry replaced after the rewrap read it
// keeps its successor's key.
func TestRewrapBatchSkipsReplaced(t *testing.T) {
	ctx := context.Background()
	c, b := keyWorld(t)
	old := putNext(t, c, "b", "k")
	newer := putNext(t, c, "b", "k")
	s := pendingSystem(t, c)
	n, err := c.CommitRewrapBatch(ctx, s, b.ID, 2, []Rewrap{{Bucket: "b", Key: "k", ObjectID: old.ObjectID, Wrapped: []byte("x")}})
	mustNot(t, "CommitRewrapBatch", err)
	if got := mustGet(t, c, "b", "k"); n != 0 || !reflect.DeepEqual(got, newer) {
		t.Errorf("rewrap of a replaced entry changed %d: %+v", n, got)
	}
	// The control: the current one is rewrapped.
	s = pendingSystem(t, c)
	n, err = c.CommitRewrapBatch(ctx, s, b.ID, 2, []Rewrap{{Bucket: "b", Key: "k", ObjectID: newer.ObjectID, Wrapped: []byte("x")}})
	mustNot(t, "CommitRewrapBatch", err)
	if n != 1 {
		t.Errorf("rewrap of the current entry changed %d", n)
	}
}

func TestRewrapBucketKeyAndReplace(t *testing.T) {
	ctx := context.Background()
	c, b := keyWorld(t)
	bks, _ := c.BucketKeys(ctx, b.ID)
	k := bks[0]
	oldJournal := k.JournalID
	k.Wrapped.KEKVersion, k.Wrapped.Data = 2, bytes.Repeat([]byte{9}, keys.WrappedLenHKDFGCMCommit)
	s := pendingSystem(t, c)
	mustNot(t, "RewrapBucketKey", c.RewrapBucketKey(ctx, s, k))
	bks, _ = c.BucketKeys(ctx, b.ID)
	if bks[0].JournalID != s.ObjectID || bks[0].Wrapped.KEKVersion != 2 {
		t.Errorf("after rewrap: %+v", bks[0])
	}
	if kn, _ := c.Lookup(ctx, oldJournal); kn != KnownGarbage {
		t.Errorf("old journal entry is %v, want garbage", kn)
	}
	// A batch entry re-sealed under another root.
	e := putNext(t, c, "b", "k")
	s1 := pendingSystem(t, c)
	if _, err := c.CommitRewrapBatch(ctx, s1, b.ID, 2, []Rewrap{{Bucket: "b", Key: "k", ObjectID: e.ObjectID, Wrapped: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	s2 := pendingSystem(t, c)
	mustNot(t, "ReplaceKeyBatch", c.ReplaceKeyBatch(ctx, s1.ObjectID, s2))
	batches, _ := c.KeyBatches(ctx)
	if len(batches) != 1 || batches[0].JournalID != s2.ObjectID {
		t.Errorf("batches after replace: %+v", batches)
	}
	wantErr(t, "replace a batch that is not one", c.ReplaceKeyBatch(ctx, s1.ObjectID, pendingSystem(t, c)), ErrNotFound)
	// Recovery restores batches; one already recorded is refused.
	restored := KeyBatch{JournalID: newID(), BucketID: b.ID, KeyVersion: 2, Records: 7}
	mustNot(t, "RestoreKeyBatches", c.RestoreKeyBatches(ctx, []KeyBatch{restored}))
	wantErr(t, "RestoreKeyBatches twice", c.RestoreKeyBatches(ctx, []KeyBatch{restored}), ErrExists)
	if batches, _ = c.KeyBatches(ctx); len(batches) != 2 {
		t.Errorf("batches after restore: %+v", batches)
	}
	// The marker rewritten in place.
	s2.Pin[0] = 1
	mustNot(t, "ReplaceSystem", c.ReplaceSystem(ctx, s2))
	wantErr(t, "ReplaceSystem of an unknown id", c.ReplaceSystem(ctx, SystemObject{ObjectID: newID()}), ErrNotFound)
}

// TestSchemaMigratesToKeyVersions: a version-2 catalog opens as version 3
// with its pending writes intact (key version 0) and batches usable.
func TestSchemaMigratesToKeyVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	c := openAt(t, path)
	mustCreateBucket(t, c, "b")
	p := Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k", Owner: "o", KeyVersion: 3}
	mustNot(t, "BeginPut", c.BeginPut(ctx, p))
	mustNot(t, "Close", c.Close())
	db, err := sql.Open("sqlite", path)
	mustNot(t, "sql.Open", err)
	for _, q := range undoV3 {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()
	c = openAt(t, path)
	if v, err := c.GetMeta(ctx, metaSchemaVersion); err != nil || string(v) != fmt.Sprint(schemaVersion) {
		t.Fatalf("schema version after migration: %q (%v)", v, err)
	}
	ps, err := c.ListPending(ctx)
	mustNot(t, "ListPending", err)
	if len(ps) != 1 || ps[0].ObjectID != p.ObjectID || ps[0].KeyVersion != 0 {
		t.Fatalf("pending after migration: %+v", ps)
	}
	if _, err := c.KeyBatches(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRetireRoot(t *testing.T) {
	ctx := context.Background()
	c, b := keyWorld(t) // both bucket key versions under root 1
	wantErr(t, "retire a root that wraps bucket keys", c.RetireRoot(ctx, 1), ErrKeyInUse)
	bks, _ := c.BucketKeys(ctx, b.ID)
	for _, k := range bks {
		k.Wrapped.KEKVersion = 2
		mustNot(t, "RewrapBucketKey", c.RewrapBucketKey(ctx, pendingSystem(t, c), k))
	}
	mustNot(t, "RetireRoot", c.RetireRoot(ctx, 1))
	mustNot(t, "RetireRoot again", c.RetireRoot(ctx, 1))
	if rs, err := c.RetiredRoots(ctx); err != nil || !reflect.DeepEqual(rs, []uint32{1}) {
		t.Fatalf("RetiredRoots = %v, %v", rs, err)
	}
	// Nothing sealed under root 1 commits any more; under root 2 (the
	// control) it does.
	s := pendingSystem(t, c)
	s.RootVersion = 1
	wantErr(t, "a system object under a retired root", c.CommitSystem(ctx, s), ErrKeyRetired)
	s.RootVersion = 2
	mustNot(t, "a system object under the primary root", c.CommitSystem(ctx, s))
	k := BucketKey{BucketID: b.ID, Version: 3, Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit,
		KEKVersion: 1, Data: make([]byte, keys.WrappedLenHKDFGCMCommit)}, KeyCheck: make([]byte, 32), Created: time.Now(), State: KeyActive}
	j := pendingSystem(t, c)
	wantErr(t, "a bucket key under a retired root", c.CommitBucketKey(ctx, j, k), ErrKeyRetired)
	k.Wrapped.KEKVersion = 2
	mustNot(t, "a bucket key under the primary root", c.CommitBucketKey(ctx, j, k))
	if err := c.SetMeta(ctx, metaRetiredRoots, []byte("")); err == nil {
		t.Error("SetMeta may overwrite the retired root versions")
	}
}
