package catalog

import (
	"context"
	"reflect"
	"testing"
)

// TestCommitCreate: a create commits when the key has no current entry
// (first write, and after a delete) and fails, changing nothing, when it
// has one; of two racing creates of one key the second to commit fails.
func TestCommitCreate(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	mustCreateBucket(t, c, "inbox")
	begin := func(e Entry) {
		t.Helper()
		mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: e.Bucket, Key: e.Key, Version: e.Version, Owner: "test"}))
	}

	// Two writers reserve versions 1 and 2 of one new key; the first to
	// commit wins, whichever version it holds.
	a, b := mkEntry("inbox", "report.pdf", 1), mkEntry("inbox", "report.pdf", 2)
	begin(a)
	begin(b)
	mustNot(t, "CommitCreate of a new key", c.CommitCreate(ctx, b))
	if got := mustGet(t, c, "inbox", "report.pdf"); got.ObjectID != b.ObjectID {
		t.Fatalf("current is %x, want the created %x", got.ObjectID, b.ObjectID)
	}
	before := snapshot(t, c, "inbox", "report.pdf")
	a.Version = 3 // not stale: only the current entry stops it
	wantErr(t, "CommitCreate over a current entry", c.CommitCreate(ctx, a), ErrKeyExists)
	if after := snapshot(t, c, "inbox", "report.pdf"); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused create changed the catalog:\nbefore %+v\nafter  %+v", before, after)
	}
	// Control: the same entry through CommitPut replaces.
	if old, err := c.CommitPut(ctx, a); err != nil || old == nil || old.ObjectID != b.ObjectID {
		t.Fatalf("CommitPut of the same entry: replaced %v, %v", old, err)
	}

	// After a delete the key has no current entry: a create commits.
	if _, err := c.Delete(ctx, "inbox", "report.pdf"); err != nil {
		t.Fatal(err)
	}
	v, err := c.NextVersion(ctx, "inbox", "report.pdf")
	mustNot(t, "NextVersion", err)
	d := mkEntry("inbox", "report.pdf", v)
	begin(d)
	mustNot(t, "CommitCreate after a delete", c.CommitCreate(ctx, d))
}
