package catalog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder collects the heads a handle reports (HeadNotifier).
type recorder struct {
	mu    sync.Mutex
	heads []Head
}

func record(t testing.TB, c Catalog) *recorder {
	t.Helper()
	n, ok := c.(HeadNotifier)
	if !ok {
		t.Fatalf("%T is not a HeadNotifier", c)
	}
	r := &recorder{}
	n.SetOnCommit(func(h Head) {
		r.mu.Lock()
		r.heads = append(r.heads, h)
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) all() []Head {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.heads)
}

func mustHead(t testing.TB, c Catalog) Head {
	t.Helper()
	h, err := c.Head(context.Background())
	mustNot(t, "Head", err)
	return h
}

// TestHead: a new catalog is at head 0; every write advances the head by
// one and reports it; reads and opening do not advance it; a second
// catalog's heads differ (the fresh randomness).
func TestHead(t *testing.T) {
	ctx := context.Background()
	c, loc := newEmptyCatalog(t)
	if h := mustHead(t, c); h != (Head{}) {
		t.Fatalf("new catalog: head %+v, want seq 0 and the zero hash", h)
	}
	if hash, ok, err := c.HeadAt(ctx, 0); err != nil || !ok || hash != ([32]byte{}) {
		t.Fatalf("HeadAt(0) = %x, %v, %v", hash, ok, err)
	}
	r := record(t, c)
	b := mustCreateBucket(t, c, "b")
	e := putNext(t, c, "b", "k") // BeginPut, CommitPut
	mustNot(t, "SetMeta", c.SetMeta(ctx, "x", []byte("y")))
	got := r.all()
	if len(got) != 4 {
		t.Fatalf("%d heads reported for 4 writes: %+v", len(got), got)
	}
	for i, h := range got {
		if h.Seq != uint64(i+1) || h.Hash == ([32]byte{}) {
			t.Errorf("write %d: head %+v", i+1, h)
		}
		hash, ok, err := c.HeadAt(ctx, h.Seq)
		if err != nil || !ok || hash != h.Hash {
			t.Errorf("HeadAt(%d) = %x, %v, %v; reported %x", h.Seq, hash, ok, err, h.Hash)
		}
	}
	last := got[len(got)-1]
	if h := mustHead(t, c); h != last {
		t.Fatalf("Head = %+v, last reported %+v", h, last)
	}

	// Reads, including the serialised ones, and reopening change nothing.
	mustGet(t, c, "b", "k")
	if _, err := c.KeyVersionUse(ctx, b.ID, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RetiredRoots(ctx); err != nil {
		t.Fatal(err)
	}
	mustNot(t, "View", c.View(ctx, func(s Snapshot) error { _, err := s.Count(); return err }))
	c2 := openAt(t, loc)
	if h := mustHead(t, c2); h != last {
		t.Fatalf("after reads and a reopen: head %+v, want %+v", h, last)
	}
	if n := len(r.all()); n != 4 {
		t.Fatalf("reads reported heads: %d", n)
	}
	// The control: one more write on the second handle moves both.
	if _, err := c2.Delete(ctx, "b", e.Key); err != nil {
		t.Fatal(err)
	}
	if h := mustHead(t, c); h.Seq != last.Seq+1 {
		t.Fatalf("after a write through another handle: head %+v", h)
	}

	// The same writes on another catalog reach the same seqs with other
	// hashes.
	o, _ := newEmptyCatalog(t)
	mustCreateBucket(t, o, "b")
	h1, _, _ := o.HeadAt(ctx, 1)
	if h1 == got[0].Hash {
		t.Fatal("two catalogs made the same head hash")
	}
}

// TestHeadNotRolledBack: a write that fails, before or after it changed
// rows, leaves the head where it was and reports nothing; the successful
// write after it (the control) advances it by one.
func TestHeadNotRolledBack(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	r := record(t, c)
	before := mustHead(t, c)
	b := Bucket{Name: "b", ID: newID()}
	wantErr(t, "CreateBucket twice", c.CreateBucket(ctx, b), ErrExists)
	// A batch whose second entry fails after the first one's rows were
	// written: the whole transaction rolls back.
	e1, e2 := mkEntry("b", "k1", 1), mkEntry("b", "k2", 1)
	pend(t, c, e1)
	r.mu.Lock()
	r.heads = nil
	r.mu.Unlock()
	before = mustHead(t, c)
	if _, err := c.CommitPutBatch(ctx, []Entry{e1, e2}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("CommitPutBatch with an entry not pending: %v", err)
	}
	if h := mustHead(t, c); h != before {
		t.Fatalf("failed writes moved the head from %+v to %+v", before, h)
	}
	if got := r.all(); len(got) != 0 {
		t.Fatalf("failed writes reported heads %+v", got)
	}
	if _, err := c.CommitPutBatch(ctx, []Entry{e1}); err != nil {
		t.Fatal(err)
	}
	after := mustHead(t, c)
	if after.Seq != before.Seq+1 {
		t.Fatalf("control: head %d after %d", after.Seq, before.Seq)
	}
	if got := r.all(); !reflect.DeepEqual(got, []Head{after}) {
		t.Fatalf("reported %+v, want %+v", got, after)
	}
}

// TestHeadAt: past heads are found until pruned; the future is not.
func TestHeadAt(t *testing.T) {
	ctx := context.Background()
	kept, every := headsKept, headsPruneEvery
	headsKept, headsPruneEvery = 8, 4
	t.Cleanup(func() { headsKept, headsPruneEvery = kept, every })

	c, _ := newEmptyCatalog(t)
	r := record(t, c)
	for i := range 21 {
		mustNot(t, "SetMeta", c.SetMeta(ctx, "n", []byte(fmt.Sprint(i))))
	}
	hs := r.all()
	cur := mustHead(t, c)
	if cur.Seq != 21 || hs[20] != cur {
		t.Fatalf("head %+v after 21 writes, last reported %+v", cur, hs[20])
	}
	// Pruned at seq 20: everything up to 20-8 = 12 is gone.
	for seq := uint64(0); seq <= 21; seq++ {
		hash, ok, err := c.HeadAt(ctx, seq)
		mustNot(t, "HeadAt", err)
		switch {
		case seq <= 12 && ok:
			t.Errorf("HeadAt(%d) found a pruned head", seq)
		case seq > 12 && (!ok || hash != hs[seq-1].Hash):
			t.Errorf("HeadAt(%d) = %x, %v; reported %x", seq, hash, ok, hs[seq-1].Hash)
		}
	}
	for _, seq := range []uint64{22, 1000, math.MaxInt64, math.MaxUint64} {
		if _, ok, err := c.HeadAt(ctx, seq); ok || err != nil {
			t.Errorf("HeadAt(%d) beyond the head: %v, %v", seq, ok, err)
		}
	}
}

// TestHeadConcurrentHandles: two handles (two gateways) write at once,
// many to the same key; every committed write advances the head by
// exactly one (the seqs reported cover the range once, each handle's in
// order), failed ones not at all, and both handles read the same head.
func TestHeadConcurrentHandles(t *testing.T) {
	ctx := context.Background()
	c1, loc := newCatalog(t)
	c2 := openAt(t, loc)
	r1, r2 := record(t, c1), record(t, c2)
	start := mustHead(t, c1)

	// Both gateways reserve the same next version: one wins.
	v, err := c1.NextVersion(ctx, "b", "k")
	mustNot(t, "NextVersion", err)
	e := mkEntry("b", "k", v)
	mustNot(t, "BeginPut", c1.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: "k", Version: v, Owner: "g1"}))
	wantErr(t, "the other gateway's BeginPut of the same version",
		c2.BeginPut(ctx, Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: "k", Version: v, Owner: "g2"}), ErrStaleVersion)
	if _, err := c1.CommitPut(ctx, e); err != nil {
		t.Fatal(err)
	}

	commits := map[string]*atomic.Int64{"k": {}, "shared": {}}
	commits["k"].Add(1)
	var writes sync.Map // handle → committed write calls
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for h, c := range []Catalog{c1, c2} {
		for w := range 4 {
			wg.Go(func() {
				n := 0
				defer func() { writes.Store(fmt.Sprint(h, w), n) }()
				for i := range 10 {
					key := []string{"k", "shared"}[i%2]
					for {
						v, err := c.NextVersion(ctx, "b", key)
						if err != nil {
							errs <- err
							return
						}
						e := mkEntry("b", key, v)
						err = c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: key, Version: v, Owner: "w"})
						if errors.Is(err, ErrStaleVersion) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						n++
						if _, err = c.CommitPut(ctx, e); errors.Is(err, ErrStaleVersion) {
							if err := c.AbortPut(ctx, e.ObjectID); err != nil {
								errs <- err
								return
							}
							n++
							continue
						} else if err != nil {
							errs <- err
							return
						}
						n++
						commits[key].Add(1)
						break
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	writes.Range(func(_, n any) bool { total += n.(int); return true })

	end := mustHead(t, c1)
	if h2 := mustHead(t, c2); h2 != end {
		t.Fatalf("the handles read different heads: %+v and %+v", end, h2)
	}
	all := append(r1.all(), r2.all()...)
	// The 2 writes committed before the race (the refused BeginPut is
	// not one), then every committed one — concurrent writes of one
	// handle may share a transaction (group commit), and the head
	// advances once per transaction: every advance reported, at most one
	// per write.
	if end.Seq != start.Seq+uint64(len(all)) || len(all) > 2+total || len(all) < 2 {
		t.Fatalf("head %d after %d committed writes from %d (%d reported): want one advance per reported commit, at most one per write", end.Seq, 2+total, start.Seq, len(all))
	}
	for _, r := range []*recorder{r1, r2} {
		hs := r.all()
		if !slices.IsSortedFunc(hs, func(a, b Head) int { return int(a.Seq) - int(b.Seq) }) {
			t.Error("a handle reported its heads out of order")
		}
	}
	slices.SortFunc(all, func(a, b Head) int { return int(a.Seq) - int(b.Seq) })
	for i, h := range all {
		if h.Seq != start.Seq+uint64(i)+1 {
			t.Fatalf("reported seqs are not %d..%d once each: %d at %d", start.Seq+1, end.Seq, h.Seq, i)
		}
		// Either handle finds the hash the other reported.
		for _, c := range []Catalog{c1, c2} {
			if hash, ok, err := c.HeadAt(ctx, h.Seq); err != nil || !ok || hash != h.Hash {
				t.Fatalf("HeadAt(%d) = %x, %v, %v; reported %x", h.Seq, hash, ok, err, h.Hash)
			}
		}
	}
	if all[len(all)-1] != end {
		t.Fatalf("last reported %+v, head %+v", all[len(all)-1], end)
	}
	// No version lost: per key, every committed version is current or in
	// history, once.
	g, err := c1.Garbage(ctx)
	mustNot(t, "Garbage", err)
	hist := map[string][]uint64{}
	for _, id := range g {
		h, err := c1.HistoryByObjectID(ctx, id)
		mustNot(t, "HistoryByObjectID", err)
		hist[h.Key] = append(hist[h.Key], h.Version)
	}
	for _, key := range []string{"k", "shared"} {
		cur := mustGet(t, c1, "b", key)
		vs := append(hist[key], cur.Version)
		slices.Sort(vs)
		if n := len(slices.Compact(slices.Clone(vs))); n != len(vs) || vs[len(vs)-1] != cur.Version {
			t.Errorf("%s: versions %v, current %d", key, vs, cur.Version)
		}
		if want := int(commits[key].Load()); len(vs) != want {
			t.Errorf("%s: %d versions recorded, %d committed", key, len(vs), want)
		}
	}
	if ps, _ := c1.ListPending(ctx); len(ps) != 0 {
		t.Errorf("%d pending rows left", len(ps))
	}
}

// TestOpenConcurrently: handles opening one empty database at once create
// the schema once, and all work.
func TestOpenConcurrently(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t)
	var wg sync.WaitGroup
	cs := make([]Catalog, 4)
	errs := make([]error, 4)
	for i := range cs {
		wg.Go(func() { cs[i], errs[i] = openLocation(ctx, loc) })
	}
	wg.Wait()
	for i, c := range cs {
		if errs[i] != nil {
			t.Fatalf("handle %d: %v", i, errs[i])
		}
		t.Cleanup(func() { c.Close() })
	}
	mustCreateBucket(t, cs[0], "b")
	for i, c := range cs {
		if h := mustHead(t, c); h.Seq != 1 {
			t.Errorf("handle %d: head %+v", i, h)
		}
		if v, err := c.GetMeta(ctx, metaSchemaVersion); err != nil || string(v) != fmt.Sprint(schemaVersion) {
			t.Errorf("handle %d: schema version %q, %v", i, v, err)
		}
	}
}

func TestDollarPlaceholders(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`a = ?1 OR b = ?1 AND c = ?2`, `a = $1 OR b = $1 AND c = $2`},
		{`a = ?2 AND b = ?`, `a = $2 AND b = $3`},
		{`x = '?' AND y = ? AND "q?" = ?`, `x = '?' AND y = $1 AND "q?" = $2`},
		{`v = 'it''s ?' AND w = ?`, `v = 'it''s ?' AND w = $1`},
	} {
		if got := dollarPlaceholders(tc.in); got != tc.want {
			t.Errorf("dollarPlaceholders(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
