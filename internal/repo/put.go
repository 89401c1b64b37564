package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// PutOptions carry an object's metadata.
type PutOptions struct {
	ContentType string
	Meta        map[string]string // user metadata; no name may start with AttrPrefix
	// Attrs are Holdfast's own attributes of the object (the gateway's
	// ETag and HTTP headers such as Content-Encoding), kept with the user
	// metadata under names that start with AttrPrefix: encrypted in the
	// manifest like it, so the catalog can be rebuilt from the store.
	// Put reads Attrs when src is exhausted, so the caller may fill in
	// values computed from the body (its digest) while Put reads it; empty
	// values are dropped. Put checks the size of the metadata before it
	// reads src too, with Attrs as they are then: a caller that puts in a
	// placeholder as long as the value to come learns early, before the
	// body is read, that the metadata will not fit.
	//
	// Metadata that does not fit fails with ErrMetadataTooLarge.
	Attrs map[string]string
	// CompleteRoom (CreateUpload only) are the attributes the upload's
	// completion will set (CompleteOptions.Attrs), each at its longest:
	// CreateUpload refuses metadata that would not fit with them
	// (ErrMetadataTooLarge), so that the completion cannot fail for it.
	// They are not stored.
	CompleteRoom map[string]string
	Modified     time.Time // default: now
	Seal         object.SealOptions
	// CreateOnly stores the object only if bucket/key has no current
	// object (S3's If-None-Match: *, a write-only inbox key); otherwise Put
	// fails with an error wrapping ErrKeyExists and leaves nothing behind.
	// The check is part of the catalog commit, so of two racing creates of
	// one key exactly one succeeds.
	CreateOnly bool
}

// ErrKeyExists: a create-only write found the key with an object.
var ErrKeyExists = catalog.ErrKeyExists

// AttrPrefix starts the metadata names of PutOptions.Attrs. HTTP header
// names cannot contain ':', so no S3 user metadata name starts with it.
const AttrPrefix = ":"

// Attr returns the attribute name of e (see PutOptions.Attrs), or "".
func Attr(e catalog.Entry, name string) string { return e.Meta[AttrPrefix+name] }

// UserMeta returns e's user metadata, without its attributes.
func UserMeta(e catalog.Entry) map[string]string {
	m := make(map[string]string, len(e.Meta))
	for k, v := range e.Meta {
		if !strings.HasPrefix(k, AttrPrefix) {
			m[k] = v
		}
	}
	return m
}

// Put stores src as the new version of bucket/key. The order is: pending
// record, store write under a fresh name, catalog commit, deletion of the
// previous version. A crash anywhere leaves the previous version readable;
// the next Cleanup removes what the crash left.
func (r *Repo) Put(ctx context.Context, bucket, key string, src io.Reader, o PutOptions) (catalog.Entry, error) {
	if err := ValidateKey(key); err != nil {
		return catalog.Entry{}, err
	}
	w, err := r.writer(ctx, bucket)
	if err != nil {
		return catalog.Entry{}, err
	}
	id, err := newID()
	if err != nil {
		return catalog.Entry{}, err
	}
	// The catalog assigns and reserves the version with the pending record,
	// so two writers of one key never seal the same version.
	ps := []catalog.Pending{{ObjectID: id, Kind: int(format.KindData), Bucket: bucket, Key: key,
		Owner: ownerToken(), Started: time.Now()}}
	if err := r.begin(ctx, &w, ps); err != nil {
		return catalog.Entry{}, err
	}
	ver := ps[0].Version
	r.hooks.at("put:pending")
	e, err := w.store(ctx, key, ver, id, src, o)
	if err != nil {
		r.discard(ctx, id, format.StoreName(id))
		return catalog.Entry{}, err
	}
	r.hooks.at("put:stored")
	var old *catalog.Entry
	if o.CreateOnly {
		err = r.cat.CommitCreate(ctx, e)
	} else {
		old, err = r.cat.CommitPut(ctx, e)
	}
	if err != nil {
		switch committed, known := r.commitOutcome(ctx, id); {
		case committed:
			// Committed after all: the write stands. The version it
			// replaced, if any, is the catalog's garbage, which Cleanup
			// removes.
			return e, nil
		case known:
			r.discard(ctx, id, format.StoreName(id))
		}
		return catalog.Entry{}, fmt.Errorf("recording %s/%s: %w", bucket, key, err)
	}
	r.hooks.at("put:committed")
	if old != nil {
		r.retire(ctx, old.ObjectID)
	}
	r.hooks.at("put:done")
	return e, nil
}

// bucketWriter seals and stores objects of one bucket under its primary
// bucket key.
type bucketWriter struct {
	r      *Repo
	bucket catalog.Bucket
	bk     catalog.BucketKey
	dk     dataKeys // wraps data keys under bk (datakeys.go)
	// deferSync, when set, stores without per-object fsyncs; the caller
	// calls Sync before recording the objects in the catalog.
	deferSync store.DeferredSyncer
}

func (r *Repo) writer(ctx context.Context, bucket string) (*bucketWriter, error) {
	if err := ValidateBucket(bucket); err != nil {
		return nil, err
	}
	b, bk, err := r.ensureBucket(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return r.writerFor(ctx, b, bk)
}

// writerFor is the writer of bucket b, which exists, under its bucket
// key bk.
func (r *Repo) writerFor(ctx context.Context, b catalog.Bucket, bk catalog.BucketKey) (*bucketWriter, error) {
	dk, err := r.dataKeysFor(ctx, bk)
	if err != nil {
		return nil, err
	}
	return &bucketWriter{r: r, bucket: b, bk: bk, dk: dk}, nil
}

// begin records the pending writes ps under the bucket key version of *w.
// If another process retired that version meanwhile (keys retire beside a
// running serve), the bucket's primary key takes its place and the
// writes are recorded under it: nothing has been read or stored yet, so
// the caller's request does not fail.
func (r *Repo) begin(ctx context.Context, w **bucketWriter, ps []catalog.Pending) error {
	for attempt := 0; ; attempt++ {
		for i := range ps {
			ps[i].KeyVersion = (*w).bk.Version
		}
		err := r.cat.BeginPutBatch(ctx, ps)
		if !errors.Is(err, catalog.ErrKeyRetired) || attempt == 3 {
			return err
		}
		r.forgetBucketKey((*w).bucket.ID, (*w).bk.Version)
		nw, werr := r.writer(ctx, (*w).bucket.Name)
		if werr != nil {
			return werr
		}
		nw.deferSync = (*w).deferSync
		*w = nw
	}
}

// store seals src as version ver of key under object id id, writes it to
// the store and returns the catalog entry to commit. The caller has
// recorded the pending write.
func (w *bucketWriter) store(ctx context.Context, key string, ver uint64, id keys.ID, src io.Reader, o PutOptions) (catalog.Entry, error) {
	r, b, bk := w.r, w.bucket, w.bk
	// Fail before reading src; the attributes filled in at its end may
	// still take the metadata over (unless the caller gave placeholders of
	// their largest size: see PutOptions.Attrs).
	if _, err := metaPairs(o.Meta, o.Attrs); err != nil {
		return catalog.Entry{}, err
	}
	mod := o.Modified
	if mod.IsZero() {
		mod = time.Now()
	}
	ident := object.Identity{Kind: format.KindData, Repo: r.id, Object: id, Bucket: b.ID, KeyVersion: bk.Version,
		BucketName: b.Name, Key: key, ObjectVersion: ver}
	ad := r.dataAD(b.ID, bk.Version, id)
	wrap := func(dek secret.Key) (keys.Alg, []byte, error) {
		wr, err := w.dk.wrap(ctx, ad, dek, o.Seal.Rand)
		return keys.AlgHKDFGCMCommit, wr, err
	}
	atEnd := func() ([]format.MetaPair, error) { return metaPairs(o.Meta, o.Attrs) }
	s, err := object.NewSealer(src, ident, object.Attrs{Modified: mod, ContentType: o.ContentType, MetaAtEnd: atEnd}, wrap, o.Seal)
	if err != nil {
		return catalog.Entry{}, err
	}
	defer s.Close()
	put := r.st.Put
	if w.deferSync != nil {
		put = w.deferSync.PutNoSync
	}
	if err := put(ctx, format.StoreName(id), s, store.UnknownSize); err != nil {
		return catalog.Entry{}, fmt.Errorf("storing %s/%s: %w", b.Name, key, err)
	}
	res := s.Result()
	return catalog.Entry{
		Bucket: b.Name, Key: key, Version: ver, ObjectID: id, Size: int64(res.Manifest.Length),
		StoredLen: int64(res.Sizes.Stored), ManifestOff: int64(res.Sizes.ManifestOff), ManifestLen: int64(res.Sizes.ManifestLen),
		Pin: res.Pin, Commit: res.Commit, KeyVersion: bk.Version, Wrapped: res.Wrapped,
		Modified: time.Unix(0, int64(res.Manifest.Modified)), ContentType: o.ContentType, Meta: metaMap(res.Manifest.Meta),
		Segments: len(res.Manifest.Segments),
	}, nil
}

// PutItem is one object of a PutMany.
type PutItem struct {
	Key  string
	Open func() (io.ReadCloser, error)
	Opts PutOptions
}

// putBatch is how many objects PutMany records per catalog transaction
// (a variable so that tests can use small batches).
var putBatch = 512

// PutMany stores many objects in one bucket with the same order of
// operations as Put, batched and overlapped: one catalog transaction
// records a batch's pending writes, the store writes run on every core,
// the batch is made durable (one sync for stores that implement
// store.DeferredSyncer) and committed in one transaction, then the
// replaced versions are deleted — while the next batch is already being
// stored. If any object of a batch fails, that batch's store writes are
// removed and nothing of it is committed; earlier batches stay committed.
// done is called, from one goroutine, after each committed object.
func (r *Repo) PutMany(ctx context.Context, bucket string, items []PutItem, done func(catalog.Entry)) error {
	return r.putMany(ctx, bucket, items, done, nil)
}

// PutManySkipping is PutMany, except that an item whose source cannot be
// opened or read (its Open fails, or its reader returns an error) is left
// out instead of failing its batch: nothing of it is stored or recorded,
// skipped is called with it and the source's error (from one goroutine,
// possibly while done runs in another), and the rest of the batch is
// committed. Store and catalog errors still fail the batch and end the
// call.
func (r *Repo) PutManySkipping(ctx context.Context, bucket string, items []PutItem, done func(catalog.Entry), skipped func(PutItem, error)) error {
	if skipped == nil {
		return errors.New("PutManySkipping needs a skipped function")
	}
	return r.putMany(ctx, bucket, items, done, skipped)
}

// sourceReader records the first error its source returns.
type sourceReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return n, err
}

func (s *sourceReader) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (r *Repo) putMany(ctx context.Context, bucket string, items []PutItem, done func(catalog.Entry), skipped func(PutItem, error)) error {
	for _, it := range items {
		if err := ValidateKey(it.Key); err != nil {
			return err
		}
	}
	w, err := r.writer(ctx, bucket)
	if err != nil {
		return err
	}
	w.deferSync, _ = r.st.(store.DeferredSyncer)
	owner := ownerToken()

	type stored struct {
		ps      []catalog.Pending
		entries []catalog.Entry
	}
	discard := func(ps []catalog.Pending) {
		for _, p := range ps {
			r.discard(ctx, p.ObjectID, format.StoreName(p.ObjectID))
		}
	}
	// The committer makes each stored batch durable and records it while
	// the loop below stores the next one.
	toCommit := make(chan stored, 1)
	commitDone := make(chan error, 1)
	go func() {
		var failed error
		for b := range toCommit {
			if failed != nil {
				discard(b.ps)
				continue
			}
			if w.deferSync != nil {
				// The batch's objects are durable before the catalog
				// records them.
				if err := w.deferSync.Sync(ctx); err != nil {
					failed = err
					discard(b.ps)
					continue
				}
			}
			r.hooks.at("putmany:synced")
			replaced, err := r.cat.CommitPutBatch(ctx, b.entries)
			if err != nil {
				// The batch is one transaction: its first write tells
				// what became of all (commitOutcome).
				committed, known := len(b.ps) > 0, true
				if committed {
					committed, known = r.commitOutcome(ctx, b.ps[0].ObjectID)
				}
				if !committed {
					failed = err
					if known {
						discard(b.ps)
					}
					continue
				}
				// Committed after all: it stands; what it replaced is
				// garbage for Cleanup.
				replaced = make([]*catalog.Entry, len(b.entries))
			}
			r.hooks.at("putmany:committed")
			for i, old := range replaced {
				if old != nil {
					r.retire(ctx, old.ObjectID)
				}
				if done != nil {
					done(b.entries[i])
				}
			}
		}
		commitDone <- failed
	}()
	finish := func(err error) error {
		close(toCommit)
		return errors.Join(err, <-commitDone)
	}

	for len(items) > 0 {
		n := min(len(items), putBatch)
		batch := items[:n]
		items = items[n:]
		ps := make([]catalog.Pending, n)
		for i, it := range batch {
			id, err := newID()
			if err != nil {
				return finish(err)
			}
			ps[i] = catalog.Pending{ObjectID: id, Kind: int(format.KindData), Bucket: bucket, Key: it.Key, Owner: owner, Started: time.Now()}
		}
		if err := r.begin(ctx, &w, ps); err != nil {
			return finish(err)
		}
		entries := make([]catalog.Entry, n)
		errs := make([]error, n)
		srcErrs := make([]error, n) // the source's own failure, if any
		var wg sync.WaitGroup
		next := make(chan int)
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					rc, err := batch[i].Open()
					if err != nil {
						srcErrs[i] = err
					} else {
						src := &sourceReader{r: rc}
						o := batch[i].Opts
						o.Seal.Workers = 1 // parallel across objects instead
						entries[i], err = w.store(ctx, batch[i].Key, ps[i].Version, ps[i].ObjectID, src, o)
						rc.Close()
						if err != nil {
							srcErrs[i] = src.failed()
						}
					}
					errs[i] = err
				}
			}()
		}
		for i := range batch {
			next <- i
		}
		close(next)
		wg.Wait()
		if skipped != nil {
			// Leave out the items whose source failed; any other error
			// still fails the batch.
			var keepPs []catalog.Pending
			var keep []catalog.Entry
			for i := range batch {
				if errs[i] != nil && srcErrs[i] != nil {
					r.discard(ctx, ps[i].ObjectID, format.StoreName(ps[i].ObjectID))
					skipped(batch[i], srcErrs[i])
					errs[i] = nil
					continue
				}
				keepPs, keep = append(keepPs, ps[i]), append(keep, entries[i])
			}
			ps, entries = keepPs, keep
		}
		if err := errors.Join(errs...); err != nil {
			discard(ps)
			return finish(err)
		}
		r.hooks.at("putmany:stored")
		if len(entries) > 0 {
			toCommit <- stored{ps, entries}
		}
	}
	return finish(nil)
}

// removeGarbage deletes a superseded or deleted version from the store and
// forgets it. A failure is left for the next Cleanup.
func (r *Repo) removeGarbage(ctx context.Context, id keys.ID) {
	err := r.st.Delete(ctx, format.StoreName(id))
	if err == nil || isNotExist(err) {
		_ = r.cat.ForgetGarbage(ctx, id)
	}
}

// Delete removes bucket/key: the catalog first (so the object is gone for
// readers at once), then the store object.
func (r *Repo) Delete(ctx context.Context, bucket, key string) (catalog.Entry, error) {
	e, err := r.cat.Delete(ctx, bucket, key)
	if errors.Is(err, catalog.ErrNotFound) {
		return e, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	if err != nil {
		return e, err
	}
	r.hooks.at("rm:committed")
	r.retire(ctx, e.ObjectID)
	return e, nil
}

// metaMap is the catalog's form of a manifest's metadata (nil if none).
func metaMap(ps []format.MetaPair) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

// maxMetaSize bounds an object's metadata: the bytes of its names and
// values, user metadata and attributes together.
const maxMetaSize = 2048

func metaPairs(m, attrs map[string]string) ([]format.MetaPair, error) {
	if len(m)+len(attrs) == 0 {
		return nil, nil
	}
	ps := make([]format.MetaPair, 0, len(m)+len(attrs))
	size := 0
	for k, v := range m {
		if strings.HasPrefix(k, AttrPrefix) {
			return nil, fmt.Errorf("metadata name %q: names may not start with %q", k, AttrPrefix)
		}
		ps = append(ps, format.MetaPair{Name: k, Value: v})
		size += len(k) + len(v)
	}
	for k, v := range attrs {
		if k == "" || v == "" {
			continue
		}
		ps = append(ps, format.MetaPair{Name: AttrPrefix + k, Value: v})
		size += len(AttrPrefix) + len(k) + len(v)
	}
	if size > maxMetaSize {
		return nil, fmt.Errorf("%w: user metadata and attributes are %d bytes; at most %d are allowed", ErrMetadataTooLarge, size, maxMetaSize)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps, nil
}
