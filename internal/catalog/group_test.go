package catalog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestGroupCommit: writes of one handle that queue while another holds
// the handle share one transaction — one commit, one head advance — and
// each keeps its own outcome: a write that fails (a stale version) is
// undone alone and gets its error, one whose caller gave up before it was
// taken never runs, the rest commit. The writes are queued while the test
// holds the handle's write slot, so the grouping is certain, not a matter
// of timing; the control is the same writes committed one at a time,
// which advance the head once each.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	sc := c.(*sqlCatalog)
	r := record(t, c)
	// Control: three writes one after another, three advances.
	start := mustHead(t, c)
	for i := range 3 {
		put(t, c, mkEntry("b", fmt.Sprint("serial", i), 1))
	}
	if h := mustHead(t, c); h.Seq != start.Seq+6 { // BeginPut and CommitPut each
		t.Fatalf("serial writes: head %d, want %d", h.Seq, start.Seq+6)
	}
	// The stale one: version 1 of "serial0" is taken.
	stale := mkEntry("b", "serial0", 1)
	mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: stale.ObjectID, Kind: KindObject, Bucket: "b", Key: "serial0", Owner: "t"}))

	before := mustHead(t, c)
	reported := len(r.all())
	sc.wsem <- struct{}{} // hold the write slot: the writes below queue
	const n = 6
	errs := make([]chan error, n)
	gone, cancel := context.WithCancel(ctx)
	for i := range n {
		errs[i] = make(chan error, 1)
		wctx := ctx
		if i == 4 {
			wctx = gone
		}
		go func() {
			var err error
			switch i {
			case 2:
				_, err = c.CommitPut(wctx, stale)
			default:
				err = c.CreateBucket(wctx, Bucket{Name: fmt.Sprint("grp", i), ID: newID(), Created: time.Unix(1700000000, 0).UTC()})
			}
			errs[i] <- err
		}()
	}
	queued := func() int { sc.gmu.Lock(); defer sc.gmu.Unlock(); return len(sc.queue) }
	for deadline := time.Now().Add(30 * time.Second); queued() < n; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writes queued", queued(), n)
		}
	}
	cancel() // write 4's caller gives up while it waits: not taken yet
	if err := <-errs[4]; !errors.Is(err, context.Canceled) {
		t.Fatalf("the write whose caller gave up: %v", err)
	}
	<-sc.wsem // let them go: the first to get the slot runs them all
	for i := range n {
		if i == 4 {
			continue
		}
		err := <-errs[i]
		switch {
		case i == 2 && !errors.Is(err, ErrStaleVersion):
			t.Fatalf("the stale commit in the group: %v", err)
		case i != 2 && err != nil:
			t.Fatalf("write %d in the group: %v", i, err)
		}
	}
	if h := mustHead(t, c); h.Seq != before.Seq+1 {
		t.Fatalf("the group advanced the head from %d to %d, want one commit", before.Seq, h.Seq)
	}
	if got := len(r.all()) - reported; got != 1 {
		t.Fatalf("%d heads reported for the group, want 1", got)
	}
	for i := range n {
		_, err := c.GetBucket(ctx, fmt.Sprint("grp", i))
		switch {
		case i == 2:
		case i == 4 && !errors.Is(err, ErrNotFound):
			t.Fatalf("the given-up write ran: %v", err)
		case i != 4 && err != nil:
			t.Fatalf("bucket grp%d not committed: %v", i, err)
		}
	}
	// The stale commit left nothing: the pending write is still pending.
	ps, err := c.ListPending(ctx)
	mustNot(t, "ListPending", err)
	found := false
	for _, p := range ps {
		found = found || p.ObjectID == stale.ObjectID
	}
	if !found {
		t.Fatal("the failed commit's pending record is gone: its undo reached beyond its own writes")
	}
}
