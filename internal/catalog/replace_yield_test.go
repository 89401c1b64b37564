package catalog

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestCommitReplaceYields: a replacement (a reseal) does not commit over
// a write of the key that began before it and has not committed — a
// PUT's pending record, or a multipart upload being completed — since
// that write's version would then be stale and fail. Each refusal changes
// nothing; the control is the same replacement once the earlier write has
// committed.
func TestCommitReplaceYields(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)

	// A PUT reserved version 2 before the reseal reserved 3.
	a := putNext(t, c, "b", "k")
	put, reseal := mkEntry("b", "k", 2), mkEntry("b", "k", 3)
	begin(t, c, put)
	begin(t, c, reseal)
	before := snapshot(t, c, "b", "k")
	_, err := c.CommitReplace(ctx, reseal, a.ObjectID)
	wantErr(t, "CommitReplace over an earlier write in progress", err, ErrStaleVersion)
	if after := snapshot(t, c, "b", "k"); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused replace changed the catalog:\nbefore %+v\nafter  %+v", before, after)
	}
	// The reseal gives up (as Reseal does: AbortPut) and the PUT commits,
	// as it would have without it.
	mustNot(t, "AbortPut of the refused reseal", c.AbortPut(ctx, reseal.ObjectID))
	mustNot(t, "the earlier PUT's commit", func() error { _, err := c.CommitPut(ctx, put); return err }())
	// Control: a reseal of the PUT's object that began after it commits.
	again := mkEntry("b", "k", 4)
	begin(t, c, again)
	if old, err := c.CommitReplace(ctx, again, put.ObjectID); err != nil || old == nil || old.ObjectID != put.ObjectID {
		t.Fatalf("CommitReplace with no earlier write in progress: replaced %v, %v", old, err)
	}

	// A multipart upload of the key being completed, with its version
	// reserved before the reseal's.
	cur, err := c.Get(ctx, "b", "k")
	mustNot(t, "Get", err)
	u := mkUpload("b", "k")
	mustNot(t, "CreateUpload", c.CreateUpload(ctx, u, "o"))
	if _, err := c.PutUploadPart(ctx, u.ID, mkPart(1, 10)); err != nil {
		t.Fatal(err)
	}
	cu, err := c.BeginComplete(ctx, u.ID, []int{1}, time.Unix(1700000300, 0).UTC())
	mustNot(t, "BeginComplete", err)
	late, err := c.NextVersion(ctx, "b", "k")
	mustNot(t, "NextVersion", err)
	if late <= cu.Version {
		t.Fatalf("the reseal's version %d is not after the completion's %d", late, cu.Version)
	}
	r2 := mkEntry("b", "k", late)
	begin(t, c, r2)
	_, err = c.CommitReplace(ctx, r2, cur.ObjectID)
	wantErr(t, "CommitReplace over a completion in progress", err, ErrStaleVersion)
	if now, err := c.Get(ctx, "b", "k"); err != nil || now.ObjectID != cur.ObjectID {
		t.Fatalf("after the refused replace the key holds %x (%v), want %x", now.ObjectID, err, cur.ObjectID)
	}
}
