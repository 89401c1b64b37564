package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSchemaMigratesToHeads: a version-3 catalog (before the head) opens
// as version 4 with its data intact, at head 0, and its next write is head
// 1; the control is the catalog created at version 4, at head 0 too.
func TestSchemaMigratesToHeads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	c := openAt(t, path)
	mustCreateBucket(t, c, "b")
	e := putNext(t, c, "b", "k")
	if h := mustHead(t, c); h.Seq != 3 {
		t.Fatalf("control: head %+v after 3 writes", h)
	}
	mustNot(t, "Close", c.Close())
	db, err := sql.Open("sqlite", path)
	mustNot(t, "sql.Open", err)
	for _, q := range undoV4 {
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
	if h := mustHead(t, c); h != (Head{}) {
		t.Fatalf("head after migration: %+v", h)
	}
	r := record(t, c)
	mustNot(t, "SetMeta", c.SetMeta(ctx, "x", []byte("y")))
	if hs := r.all(); len(hs) != 1 || hs[0].Seq != 1 || hs[0] != mustHead(t, c) {
		t.Fatalf("first write after migration: %+v", hs)
	}
}

// TestSchemaMigratesToPartChecksums: a version-4 catalog (before part
// checksums) with an upload in progress opens as version 5: its part
// reads back with no checksum, and a part recorded after the migration
// keeps its checksum, as in a catalog created at version 5 (the control).
func TestSchemaMigratesToPartChecksums(t *testing.T) {
	ctx := context.Background()
	for _, migrated := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "c.db")
		c := openAt(t, path)
		mustCreateBucket(t, c, "b")
		u := mkUpload("b", "k")
		mustNot(t, "CreateUpload", c.CreateUpload(ctx, u, "o"))
		p1 := mkPart(1, 10)
		if !migrated {
			p1.Checksum = "CRC32 AAAAAA=="
		}
		if _, err := c.PutUploadPart(ctx, u.ID, p1); err != nil {
			t.Fatal(err)
		}
		if migrated {
			mustNot(t, "Close", c.Close())
			db, err := sql.Open("sqlite", path)
			mustNot(t, "sql.Open", err)
			for _, q := range undoV5 {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(q, err)
				}
			}
			db.Close()
			c = openAt(t, path)
		}
		if v, err := c.GetMeta(ctx, metaSchemaVersion); err != nil || string(v) != fmt.Sprint(schemaVersion) {
			t.Fatalf("migrated %v: schema version %q (%v)", migrated, v, err)
		}
		p2 := mkPart(2, 20)
		p2.Checksum = "SHA256 " + strings.Repeat("A", 43) + "="
		if _, err := c.PutUploadPart(ctx, u.ID, p2); err != nil {
			t.Fatal(err)
		}
		ps, err := c.UploadParts(ctx, u.ID)
		mustNot(t, "UploadParts", err)
		if len(ps) != 2 || ps[0].Checksum != p1.Checksum || ps[1].Checksum != p2.Checksum {
			t.Errorf("migrated %v: parts %+v", migrated, ps)
		}
	}
}
