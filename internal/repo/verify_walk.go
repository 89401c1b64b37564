package repo

// How verify scales: it never holds the catalog or the store listing in
// memory. The catalog's current entries are read in pages in object id
// order (catalog.EntriesAfter), which is the lexical order of their store
// names, the order in which every store lists; the few system objects and
// multipart uploads are merged in. One goroutine walks the listing and
// this merged stream side by side (a merge join): a name on both sides is
// an object to check, a name only in the catalog is one the listing did
// not show (checked anyway: it may have been written after the listing
// passed, or be missing), a name only in the listing is one the catalog
// does not know. Each object goes to a bounded pool of workers, and the
// results are taken back in name order, so that findings are reported in
// a stable order and "everything up to this name is done" is a resumable
// checkpoint. The window between the walk and the results is bounded, so
// memory does not grow with the number of objects.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/store"
)

// verifyPage is how many catalog entries the walk reads at a time.
const verifyPage = 1000

// maxUncheckedRun is how many objects in a row may fail to be checked
// (the store did not answer) before verify stops: past it the store is
// down, not flaky, and going on would only wait out every retry.
const maxUncheckedRun = 32

// Checkpoints are written after this many objects or this long, whichever
// comes first (and when a run stops early).
const (
	checkpointEvery    = 5000
	checkpointInterval = 2 * time.Second
)

type itemKind int

const (
	itemEntry  itemKind = iota // a current catalog entry
	itemSystem                 // marker, key journal record or catalog backup
	itemUpload                 // a multipart upload in progress
	itemExtra                  // listed, unknown to the walk's view of the catalog
)

// verifyItem is one store name with what the catalog and the listing say
// about it.
type verifyItem struct {
	kind   itemKind
	name   string
	entry  catalog.Entry
	sys    catalog.SystemObject
	upload Finding
	listed bool
	size   int64 // listed size
}

// verifyResult is the check of one item.
type verifyResult struct {
	name      string
	skip      bool // not counted: a concurrent write of ours explains it
	finding   Finding
	bytes     int64
	unsampled bool
	cleaned   int
	err       error // could not check, and not for this object alone: stop
}

// verifyRun is one run of verify.
type verifyRun struct {
	r      *Repo
	o      VerifyOptions
	report func(Finding)
	sum    VerifySummary
	seed   []byte
	cursor string // every name up to and including it is done
	cp     *checkpointer
}

// expected merges the catalog's entries, read in pages, with the system
// objects and uploads (few, sorted in memory), in store name order,
// leaving out names up to the cursor.
type expected struct {
	ctx    context.Context
	cat    catalog.Catalog
	after  []byte
	page   []verifyItem
	done   bool
	small  []verifyItem
	cursor string

	head      verifyItem
	have      bool
	fromSmall bool
}

// peek returns the next expected item, or false at the end.
func (x *expected) peek() (verifyItem, bool, error) {
	for !x.have {
		if len(x.page) == 0 && !x.done {
			es, err := x.cat.EntriesAfter(x.ctx, x.after, verifyPage)
			if err != nil {
				return verifyItem{}, false, err
			}
			x.done = len(es) < verifyPage
			x.page = make([]verifyItem, len(es))
			for i, e := range es {
				x.page[i] = verifyItem{kind: itemEntry, name: format.StoreName(e.ObjectID), entry: e}
			}
			if len(es) > 0 {
				last := es[len(es)-1].ObjectID
				x.after = last[:]
			}
		}
		switch {
		case len(x.page) > 0 && (len(x.small) == 0 || x.page[0].name < x.small[0].name):
			x.head, x.fromSmall = x.page[0], false
			x.page = x.page[1:]
		case len(x.small) > 0:
			x.head, x.fromSmall = x.small[0], true
			x.small = x.small[1:]
		default:
			return verifyItem{}, false, nil
		}
		x.have = x.head.name > x.cursor
	}
	return x.head, true, nil
}

// pop drops the item peek returned.
func (x *expected) pop() { x.have = false }

// run walks, checks and collects; see the top of this file.
func (v *verifyRun) run(parent context.Context) (VerifySummary, error) {
	x, err := v.expected(parent)
	if err != nil {
		return v.sum, err
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	order := make(chan chan verifyResult, 4*v.o.Jobs+256)
	sem := make(chan struct{}, v.o.Jobs)
	var workers sync.WaitGroup
	var walkErr error
	walked := make(chan struct{})
	go func() {
		defer close(walked)
		defer close(order)
		walkErr = v.walk(ctx, x, x.cursor, v.dispatcher(ctx, order, sem, &workers))
	}()

	var runErr error
	stop := func(err error) {
		if runErr == nil {
			runErr = err
			cancel(err)
		}
	}
	uncheckedRun, sinceCP, lastCP := 0, 0, time.Now()
	for ch := range order {
		res := <-ch
		switch {
		case runErr != nil:
			continue // draining after a stop
		case parent.Err() != nil:
			stop(parent.Err())
			continue
		case res.err != nil:
			stop(res.err)
			continue
		}
		v.apply(res)
		if res.skip {
			continue
		}
		if res.finding.Status == StatusUnchecked {
			if uncheckedRun++; uncheckedRun >= maxUncheckedRun {
				stop(fmt.Errorf("verify: %d objects in a row could not be checked, stopping (last: %s): %w",
					uncheckedRun, res.finding.Detail, store.ErrUnavailable))
				continue
			}
		} else {
			uncheckedRun = 0
		}
		if v.o.Progress != nil {
			v.o.Progress(v.sum.Checked, v.sum.Bytes)
		}
		if sinceCP++; sinceCP >= checkpointEvery || time.Since(lastCP) >= checkpointInterval {
			if err := v.cp.save(v); err != nil {
				stop(err)
				continue
			}
			sinceCP, lastCP = 0, time.Now()
		}
	}
	<-walked
	workers.Wait()
	if runErr == nil {
		runErr = walkErr
	}
	if runErr == nil {
		runErr = v.strangers(parent)
	}
	if runErr != nil {
		// What is done stays done: a run with --resume carries on from here.
		if err := v.cp.save(v); err != nil {
			return v.sum, errors.Join(runErr, err)
		}
		return v.sum, runErr
	}
	return v.sum, v.cp.finish()
}

// strangers reports what the store holds under names Holdfast never
// writes (store.StrangerLister): an S3 "folder", a file of another shape
// in a local store. No read serves them, but only the provider can have
// put them there. They are listed once the walk is done, outside its
// name order.
func (v *verifyRun) strangers(ctx context.Context) error {
	sl, ok := v.r.st.(store.StrangerLister)
	if !ok {
		return nil
	}
	return sl.ListStrangers(ctx, func(name string, size int64) error {
		f := Finding{Kind: "unknown", Name: name, Status: StatusUnknown,
			Detail: fmt.Sprintf("%d bytes under a name Holdfast never writes: put there by someone else", size)}
		v.sum.Checked++
		v.sum.Counts[f.Status]++
		v.report(f)
		v.cp.add(f)
		return nil
	})
}

// expected reads the system objects and uploads and sets up the walk of
// the catalog's entries, from the cursor on.
func (v *verifyRun) expected(ctx context.Context) (*expected, error) {
	x := &expected{ctx: ctx, cat: v.r.cat, cursor: v.cursor}
	if id, ok := format.ParseStoreName(v.cursor); ok {
		x.after = id[:]
	}
	sys, err := v.r.cat.SystemObjects(ctx)
	if err != nil {
		return nil, err
	}
	for _, so := range sys {
		name := format.StoreName(so.ObjectID)
		if so.Kind == int(format.KindMarker) {
			name = format.MarkerName(v.r.id)
		}
		x.small = append(x.small, verifyItem{kind: itemSystem, name: name, sys: so})
	}
	// Multipart uploads in progress are pending, whether or not the store
	// shows their object yet.
	ufs, err := v.r.uploadFindings(ctx, map[string]int64{})
	if err != nil {
		return nil, err
	}
	for _, f := range ufs {
		x.small = append(x.small, verifyItem{kind: itemUpload, name: f.Name, upload: f})
	}
	sort.SliceStable(x.small, func(i, j int) bool { return x.small[i].name < x.small[j].name })
	return x, nil
}

// walk lists the store and merges the listing with x, handing every item
// after start to dispatch in name order. (It runs beside the collector,
// which moves v.cursor on: the walk has its own copy of where it began.)
func (v *verifyRun) walk(ctx context.Context, x *expected, start string, dispatch func(verifyItem) error) error {
	prev := ""
	err := v.r.st.List(ctx, "", func(oi store.ObjectInfo) error {
		if prev != "" && oi.Name <= prev {
			return fmt.Errorf("verify: the store listed %q after %q, out of name order; cannot match it against the catalog", oi.Name, prev)
		}
		prev = oi.Name
		if oi.Name <= start {
			return nil
		}
		matched := false
		for {
			it, ok, err := x.peek()
			if err != nil {
				return err
			}
			if !ok || it.name > oi.Name {
				break
			}
			x.pop()
			if it.name == oi.Name {
				it.listed, it.size, matched = true, oi.Size, true
			}
			if err := dispatch(it); err != nil {
				return err
			}
		}
		if !matched {
			return dispatch(verifyItem{kind: itemExtra, name: oi.Name, listed: true, size: oi.Size})
		}
		return nil
	})
	if err != nil {
		return err
	}
	// What the catalog expects past the end of the listing.
	for {
		it, ok, err := x.peek()
		if err != nil || !ok {
			return err
		}
		x.pop()
		if err := dispatch(it); err != nil {
			return err
		}
	}
}

// dispatcher returns the function that queues an item's result slot in
// name order and has the item checked, inline if that needs no I/O, else
// by a worker of the pool.
func (v *verifyRun) dispatcher(ctx context.Context, order chan<- chan verifyResult, sem chan struct{}, workers *sync.WaitGroup) func(verifyItem) error {
	return func(it verifyItem) error {
		ch := make(chan verifyResult, 1)
		select {
		case order <- ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		// From here on ch must get a result: the collector waits for it.
		if res, ok := v.trivial(it); ok {
			ch <- res
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			ch <- verifyResult{name: it.name, err: context.Cause(ctx)}
			return context.Cause(ctx)
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer func() { <-sem }()
			ch <- v.check(ctx, it)
		}()
		return nil
	}
}

// apply adds a result to the summary and reports its finding.
func (v *verifyRun) apply(res verifyResult) {
	v.cursor = res.name
	v.sum.Cleaned += res.cleaned
	if res.skip {
		return
	}
	v.sum.Checked++
	v.sum.Bytes += res.bytes
	if res.unsampled {
		v.sum.Unsampled++
		return
	}
	v.sum.Counts[res.finding.Status]++
	if res.finding.Status != StatusOK {
		v.report(res.finding)
		v.cp.add(res.finding)
	}
}

// trivial returns the result of an item that needs no I/O: an upload in
// progress, or a data object outside the sample that is listed at its
// recorded length.
func (v *verifyRun) trivial(it verifyItem) (verifyResult, bool) {
	switch {
	case it.kind == itemUpload:
		return verifyResult{name: it.name, finding: it.upload}, true
	case it.kind == itemEntry && it.listed && it.size == it.entry.StoredLen && !v.sampled(it.name):
		return verifyResult{name: it.name, unsampled: true}, true
	}
	return verifyResult{}, false
}

// sampled reports whether name's stored bytes are checked in this run.
func (v *verifyRun) sampled(name string) bool {
	return v.o.Sample == 0 || inSample(v.seed, name, v.o.Sample)
}

func (v *verifyRun) check(ctx context.Context, it verifyItem) verifyResult {
	switch it.kind {
	case itemEntry:
		return v.checkEntryItem(ctx, it)
	case itemSystem:
		return v.checkSystemItem(ctx, it)
	default:
		return v.checkExtra(ctx, it)
	}
}

func (v *verifyRun) checkEntryItem(ctx context.Context, it verifyItem) verifyResult {
	e := it.entry
	f := Finding{Bucket: e.Bucket, Key: e.Key, Kind: format.KindData.String(), Name: it.name, Status: StatusOK}
	res := verifyResult{name: it.name, bytes: e.StoredLen}
	// Not listed: read it anyway. Written after the listing passed its
	// name, it is there and checks; gone, the check says missing.
	err := v.r.checkEntry(ctx, e, v.o.Quick)
	if err == nil {
		res.finding = f
		return res
	}
	if ctx.Err() != nil {
		return verifyResult{name: it.name, err: context.Cause(ctx)}
	}
	// A concurrent writer may have replaced or removed the entry since
	// the catalog was read: then its old object is gone by our own hand,
	// not the provider's.
	if now, gerr := v.r.cat.Get(ctx, e.Bucket, e.Key); errors.Is(gerr, catalog.ErrNotFound) || (gerr == nil && now.ObjectID != e.ObjectID) {
		return verifyResult{name: it.name, skip: true}
	}
	derr := v.r.damage(ctx, e, err)
	var de *DamageError
	switch {
	case errors.As(derr, &de):
		f.Status, f.Layer, f.Detail = de.Status, string(de.Layer), err.Error()
	case errors.Is(derr, keys.ErrUnavailable):
		// The key source is down: no object can be checked, stop here.
		return verifyResult{name: it.name, err: derr}
	default:
		// The store could not be reached, or answered for this object with
		// an error that says nothing about the data (on a local store:
		// something other than a file where the object should be). The
		// object could not be checked; the run goes on to the others.
		f.Status, f.Detail = StatusUnchecked, derr.Error()
	}
	res.finding = f
	return res
}

func (v *verifyRun) checkSystemItem(ctx context.Context, it verifyItem) verifyResult {
	so := it.sys
	f := Finding{Kind: format.Kind(so.Kind).String(), Name: it.name, Status: StatusOK}
	err := v.r.checkSystem(ctx, so, it.name)
	if err == nil {
		return verifyResult{name: it.name, finding: f}
	}
	if ctx.Err() != nil {
		return verifyResult{name: it.name, err: context.Cause(ctx)}
	}
	// An old catalog backup retired by a concurrent backup is ours to delete.
	if k, lerr := v.r.cat.Lookup(ctx, so.ObjectID); lerr == nil && k != catalog.KnownSystem {
		return verifyResult{name: it.name, skip: true}
	}
	st, cerr := v.r.classifySystem(ctx, so, it.name, err)
	f.What = v.r.systemWhat(ctx, so)
	switch {
	case cerr == nil:
		f.Status, f.Layer, f.Detail = st, string(format.LayerOf(err)), err.Error()
	case errors.Is(cerr, keys.ErrUnavailable): // see checkEntryItem
		return verifyResult{name: it.name, err: cerr}
	default:
		f.Status, f.Detail = StatusUnchecked, fmt.Sprintf("%s: %v", it.name, cerr)
	}
	return verifyResult{name: it.name, finding: f}
}

// checkExtra judges a listed name the catalog walk did not expect.
func (v *verifyRun) checkExtra(ctx context.Context, it verifyItem) verifyResult {
	res := verifyResult{name: it.name}
	f := Finding{Kind: "unknown", Name: it.name, Status: StatusUnknown}
	id, ok := format.ParseStoreName(it.name)
	if !ok {
		res.finding = f
		return res
	}
	k, err := v.r.cat.Lookup(ctx, id)
	if err != nil {
		return verifyResult{name: it.name, err: err}
	}
	switch k {
	case catalog.KnownPending:
		f.Status = StatusPending
	case catalog.KnownGarbage:
		// Our own superseded version whose deletion was interrupted: remove
		// it now, or leave it for the next run (harmless garbage). One this
		// process is reading goes when the read ends (retire).
		if v.r.pinned(id) {
			res.skip = true
			return res
		}
		if err := v.r.st.Delete(ctx, it.name); err == nil || isNotExist(err) {
			_ = v.r.cat.ForgetGarbage(ctx, id)
			res.cleaned = 1
		}
		res.skip = true
		return res
	case catalog.KnownHistory:
		// A concurrent writer may have just deleted it (it was in the
		// listing, then left garbage): gone now means ours.
		if _, err := v.r.st.Stat(ctx, it.name); isNotExist(err) {
			res.skip = true
			return res
		}
		// An old version that was deleted from the store once and is back:
		// the provider kept it and put it back. It can never be served (the
		// catalog points elsewhere); report and remove it.
		if he, err := v.r.cat.HistoryByObjectID(ctx, id); err == nil {
			f.Bucket, f.Key = he.Bucket, he.Key
		}
		f.Detail = "an old version, deleted before, put back by the provider; removed"
		_ = v.r.st.Delete(ctx, it.name)
	case catalog.KnownCurrent, catalog.KnownSystem:
		// Written while verify walked the store.
		res.skip = true
		return res
	case catalog.KnownNone:
		// A write that was pending when the store was listed may have
		// failed since and removed its object (the store first, then its
		// pending record): gone now means ours, not injected.
		if _, err := v.r.st.Stat(ctx, it.name); isNotExist(err) {
			res.skip = true
			return res
		}
		// Sealed for this repository under its root keys? Then say what
		// it is.
		if s, ok := v.r.identify(ctx, it.name, id, it.size); ok {
			f.Kind, f.What = s.kind.String(), s.what
			res.bytes = s.sys.StoredLen
			f.Detail = "authentic under this repository's root keys, but this home's catalog does not list it: another home with the same keys wrote it, and the two homes' catalogs have parted"
		}
	}
	res.finding = f
	return res
}
