package catalog

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

func mustChanges(t testing.TB, c Catalog) uint64 {
	t.Helper()
	n, err := c.Changes(context.Background())
	mustNot(t, "Changes", err)
	return n
}

// TestChanges: every kind of change counts, in the same transaction;
// reads, refused writes and Restore do not.
func TestChanges(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t) // one bucket created: one change
	if n := mustChanges(t, c); n != 1 {
		t.Fatalf("after CreateBucket: %d changes", n)
	}
	for _, step := range []struct {
		name  string
		delta uint64
		do    func() error
	}{
		{"put", 1, func() error { putNext(t, c, "b", "x"); return nil }},
		{"overwrite", 1, func() error { putNext(t, c, "b", "x"); return nil }},
		{"batch of 3", 3, func() error {
			ps := []Pending{{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "p", Owner: "t"},
				{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "q", Owner: "t"},
				{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "r", Owner: "t"}}
			if err := c.BeginPutBatch(ctx, ps); err != nil {
				return err
			}
			var es []Entry
			for _, p := range ps {
				e := mkEntry(p.Bucket, p.Key, p.Version)
				e.ObjectID, e.Pin = p.ObjectID, pinOf(p.ObjectID)
				es = append(es, e)
			}
			_, err := c.CommitPutBatch(ctx, es)
			return err
		}},
		{"delete", 1, func() error { _, err := c.Delete(ctx, "b", "x"); return err }},
		{"refused delete", 0, func() error {
			_, err := c.Delete(ctx, "b", "x")
			wantErr(t, "delete of a deleted key", err, ErrNotFound)
			return nil
		}},
		{"rewrap", 1, func() error {
			e := mustGet(t, c, "b", "p")
			return c.Rewrap(ctx, "b", "p", e.ObjectID, 2, []byte("w2"))
		}},
		{"bucket key", 1, func() error {
			b, _ := c.GetBucket(ctx, "b")
			id := newID()
			if err := c.BeginPut(ctx, Pending{ObjectID: id, Kind: KindJournal, Owner: "t"}); err != nil {
				return err
			}
			return c.CommitBucketKey(ctx, SystemObject{ObjectID: id, Kind: KindJournal, Pin: pinOf(id)},
				BucketKey{BucketID: b.ID, Version: 1, Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 1, Data: []byte("w")},
					KeyCheck: make([]byte, 32), JournalID: id, State: 1})
		}},
		{"reads", 0, func() error {
			_, err := c.Count(ctx)
			return err
		}},
		{"new bucket", 1, func() error { mustCreateBucket(t, c, "e"); return nil }},
		{"delete bucket", 1, func() error { return c.DeleteBucket(ctx, "e") }},
	} {
		before := mustChanges(t, c)
		mustNot(t, step.name, step.do())
		if got := mustChanges(t, c) - before; got != step.delta {
			t.Errorf("%s: %d changes counted, want %d", step.name, got, step.delta)
		}
	}
	if err := c.SetMeta(ctx, metaChanges, []byte("0")); err == nil {
		t.Error("SetMeta of the change counter accepted")
	}
	r, _ := newEmptyCatalog(t)
	mustNot(t, "Restore", r.Restore(ctx, []Bucket{{Name: "b", ID: newID()}}, nil, []Entry{mkEntry("b", "k", 1)}, nil, nil))
	if n := mustChanges(t, r); n != 0 {
		t.Errorf("Restore counted %d changes", n)
	}
}

// TestView: a snapshot sees the catalog as of its first read while a
// writer commits (and is not blocked); the next snapshot sees the write.
func TestView(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	putNext(t, c, "b", "a")
	putNext(t, c, "b", "c")
	list := func(s Snapshot) []string {
		var ks []string
		mustNot(t, "All", s.All(func(e Entry) error { ks = append(ks, e.Key); return nil }))
		return ks
	}
	err := c.View(ctx, func(s Snapshot) error {
		before := list(s)
		n0, _ := s.Changes()
		putNext(t, c, "b", "b") // another writer, during the snapshot
		mustCreateBucket(t, c, "z")
		if got := list(s); len(got) != 2 || got[0] != "a" || got[1] != "c" || len(before) != 2 {
			t.Errorf("snapshot entries %v then %v", before, got)
		}
		if bs, _ := s.Buckets(); len(bs) != 1 {
			t.Errorf("snapshot buckets %v", bs)
		}
		if n, _ := s.Changes(); n != n0 {
			t.Errorf("snapshot changes moved from %d to %d", n0, n)
		}
		if n, _ := s.Count(); n != 2 {
			t.Errorf("snapshot count %d", n)
		}
		return nil
	})
	mustNot(t, "View", err)
	// Control: a new snapshot sees the write.
	mustNot(t, "View", c.View(ctx, func(s Snapshot) error {
		if got := list(s); len(got) != 3 || got[1] != "b" {
			t.Errorf("second snapshot entries %v", got)
		}
		return nil
	}))
}

// TestCommitBackup: a backup commits with its state only from a pending
// write and only with a sequence above the recorded one; a refusal
// changes nothing. Retiring it makes it garbage.
func TestCommitBackup(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	_, err := c.LastBackup(ctx)
	wantErr(t, "LastBackup of a new catalog", err, ErrNotFound)
	commit := func(seq uint64, pending bool) (BackupState, error) {
		id := newID()
		if pending {
			mustNot(t, "BeginPut", c.BeginPut(ctx, Pending{ObjectID: id, Kind: KindBackup, Owner: "t"}))
		}
		b := BackupState{Sequence: seq, Hash: pinOf(id), ObjectID: id, Created: time.Unix(100, int64(seq)).UTC(), Changes: seq * 10}
		return b, c.CommitBackup(ctx, SystemObject{ObjectID: id, Kind: KindBackup, Pin: pinOf(id), Created: b.Created}, b)
	}
	b1, err := commit(1, true)
	mustNot(t, "CommitBackup 1", err)
	if got, err := c.LastBackup(ctx); err != nil || got != b1 {
		t.Fatalf("LastBackup = %+v, %v; want %+v", got, err, b1)
	}
	for _, tc := range []struct {
		name    string
		seq     uint64
		pending bool
		want    error
	}{
		{"same sequence", 1, true, ErrStaleVersion},
		{"not pending", 2, false, ErrNotPending},
	} {
		sys, _ := c.SystemObjects(ctx)
		_, err := commit(tc.seq, tc.pending)
		wantErr(t, tc.name, err, tc.want)
		if got, _ := c.LastBackup(ctx); got != b1 {
			t.Fatalf("%s: refused commit changed the last backup", tc.name)
		}
		if after, _ := c.SystemObjects(ctx); len(after) != len(sys) {
			t.Fatalf("%s: refused commit added a system object", tc.name)
		}
	}
	b2, err := commit(2, true) // control
	mustNot(t, "CommitBackup 2", err)
	wantErr(t, "SetLastBackup back to 1", c.SetLastBackup(ctx, b1), ErrStaleVersion)
	if got, _ := c.LastBackup(ctx); got != b2 {
		t.Fatal("refused SetLastBackup changed the record")
	}
	if err := c.SetMeta(ctx, metaLastBackup, nil); err == nil {
		t.Error("SetMeta of the last backup accepted")
	}

	mustNot(t, "RetireSystem", c.RetireSystem(ctx, b1.ObjectID))
	if k, _ := c.Lookup(ctx, b1.ObjectID); k != KnownGarbage {
		t.Fatalf("retired backup: Known %d", k)
	}
	mustNot(t, "ForgetGarbage", c.ForgetGarbage(ctx, b1.ObjectID))
	if k, _ := c.Lookup(ctx, b1.ObjectID); k != KnownNone {
		t.Fatalf("forgotten backup: Known %d", k)
	}
	wantErr(t, "RetireSystem again", c.RetireSystem(ctx, b1.ObjectID), ErrNotFound)
	if k, _ := c.Lookup(ctx, b2.ObjectID); k != KnownSystem {
		t.Fatalf("the other backup: Known %d", k)
	}
}

// TestReservations: a snapshot names, per key that ever had a committed
// version, the highest one (deleted keys included), stopping below a
// version still pending; restored reservations keep versions from being
// assigned again.
func TestReservations(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	putNext(t, c, "b", "x")
	putNext(t, c, "b", "x") // v2
	if _, err := c.Delete(ctx, "b", "x"); err != nil {
		t.Fatal(err)
	}
	putNext(t, c, "b", "y")
	pend := []Pending{{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "y", Owner: "t"},
		{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "z", Owner: "t"}}
	mustNot(t, "BeginPutBatch", c.BeginPutBatch(ctx, pend)) // y v2, z v1: pending
	snapOf := func(c Catalog) []Reservation {
		var rs []Reservation
		mustNot(t, "View", c.View(ctx, func(s Snapshot) error {
			n, err := s.ReservationCount()
			if err != nil {
				return err
			}
			if err := s.Reservations(func(r Reservation) error { rs = append(rs, r); return nil }); err != nil {
				return err
			}
			if n != uint64(len(rs)) {
				t.Errorf("count %d, listed %d", n, len(rs))
			}
			return nil
		}))
		return rs
	}
	snap := func() []Reservation { return snapOf(c) }
	want := []Reservation{{"b", "x", 2}, {"b", "y", 1}}
	if got := snap(); !slices.Equal(got, want) {
		t.Fatalf("with y v2 and z v1 pending: %v, want %v", got, want)
	}
	// Control: once committed, the pending versions count.
	e := mkEntry("b", "y", pend[0].Version)
	e.ObjectID, e.Pin = pend[0].ObjectID, pinOf(pend[0].ObjectID)
	z := mkEntry("b", "z", pend[1].Version)
	z.ObjectID, z.Pin = pend[1].ObjectID, pinOf(pend[1].ObjectID)
	if _, err := c.CommitPutBatch(ctx, []Entry{e, z}); err != nil {
		t.Fatal(err)
	}
	want = []Reservation{{"b", "x", 2}, {"b", "y", 2}, {"b", "z", 1}}
	if got := snap(); !slices.Equal(got, want) {
		t.Fatalf("after commit: %v, want %v", got, want)
	}

	// A fresh catalog given those reservations never assigns them again,
	// and a lower one does not lower a reservation.
	d, _ := newCatalog(t)
	mustNot(t, "Restore", d.Restore(ctx, nil, nil, nil, nil, want))
	mustNot(t, "Restore", d.Restore(ctx, nil, nil, nil, nil, []Reservation{{"b", "x", 1}}))
	// After a recovery the history is empty: the restored reservation
	// alone carries a deleted key's versions, and a pending write that
	// reserves no version (version 0) must not hide it.
	mustNot(t, "BeginPut", d.BeginPut(ctx, Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "x", Owner: "t"}))
	if got := snapOf(d); !slices.Equal(got, want) {
		t.Fatalf("restored, with a version-0 pending write: %v, want %v", got, want)
	}
	if e := putNext(t, d, "b", "x"); e.Version != 3 {
		t.Fatalf("next version of x after restoring 2: %d", e.Version)
	}
	if e := putNext(t, d, "b", "new"); e.Version != 1 { // control
		t.Fatalf("next version of an unreserved key: %d", e.Version)
	}
}
