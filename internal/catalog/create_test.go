package catalog

import (
	"context"
	"errors"
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

	// Two writers reserve versions 1 and 2 of one new key; the first to
	// commit wins, whichever version it holds.
	a, b := mkEntry("inbox", "report.pdf", 1), mkEntry("inbox", "report.pdf", 2)
	begin(t, c, a)
	begin(t, c, b)
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
	begin(t, c, d)
	mustNot(t, "CommitCreate after a delete", c.CommitCreate(ctx, d))
}

// TestCommitReplace: a write that must replace one object commits over
// it, and fails with ErrStaleVersion, changing nothing, when the key was
// written or deleted since that object was read — even by a write whose
// version is lower than its own, which CommitPut lets it replace (the
// control, with the same entry).
func TestCommitReplace(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	a := putNext(t, c, "b", "k")

	// Another write reserves version 2 and this one version 3; the other
	// commits first.
	other, r := mkEntry("b", "k", 2), mkEntry("b", "k", 3)
	begin(t, c, other)
	begin(t, c, r)
	mustNot(t, "CommitPut of the other write", func() error { _, err := c.CommitPut(ctx, other); return err }())
	before := snapshot(t, c, "b", "k")
	_, err := c.CommitReplace(ctx, r, a.ObjectID)
	wantErr(t, "CommitReplace over a replaced object", err, ErrStaleVersion)
	if after := snapshot(t, c, "b", "k"); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused replace changed the catalog:\nbefore %+v\nafter  %+v", before, after)
	}
	// Control: over the object that is current, it commits and returns it.
	if old, err := c.CommitReplace(ctx, r, other.ObjectID); err != nil || old == nil || old.ObjectID != other.ObjectID {
		t.Fatalf("CommitReplace over the current object: replaced %v, %v", old, err)
	}

	// A delete in between: no current object to replace.
	v, err := c.NextVersion(ctx, "b", "k")
	mustNot(t, "NextVersion", err)
	d := mkEntry("b", "k", v)
	begin(t, c, d)
	if _, err := c.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	_, err = c.CommitReplace(ctx, d, r.ObjectID)
	wantErr(t, "CommitReplace after a delete", err, ErrStaleVersion)
	if _, err := c.Get(ctx, "b", "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted key after a refused replace: %v", err)
	}
	// Control: CommitPut of the same entry commits.
	if _, err := c.CommitPut(ctx, d); err != nil {
		t.Fatalf("CommitPut after the delete: %v", err)
	}
}
