package repo

// The key version lifecycle after rotation (docs/keys.md): rewrap moves
// whatever an old version protects under the primary one without touching
// an object body; retire destroys a version nothing depends on; shred
// destroys every version that ever protected some data.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
)

var (
	// ErrKeyRetired: the key version was retired (destroyed).
	ErrKeyRetired = catalog.ErrKeyRetired
	// ErrKeyInUse: retire found something the version still protects.
	ErrKeyInUse = catalog.ErrKeyInUse
	// ErrUploadsInProgress: shred found multipart uploads in the bucket.
	ErrUploadsInProgress = errors.New("multipart uploads are in progress")
)

// rewrapBatch is how many data key rewraps one key journal entry holds (a
// variable so that tests can use small batches). At about 200 bytes a
// record, a full batch is some 200 KB in one padded entry.
var rewrapBatch = 1024

// forgetBucketKey wipes this process's copy of a bucket key version.
func (r *Repo) forgetBucketKey(bucket keys.ID, version uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := bkRef{bucket, version}
	if k, ok := r.bkeys[ref]; ok {
		k.Wipe()
		delete(r.bkeys, ref)
	}
}

// RewrapReport says what a rewrap did.
type RewrapReport struct {
	// Objects: data keys rewrapped under a bucket's primary key version.
	Objects int
	// BucketKeys: bucket key versions rewrapped under the primary root key.
	BucketKeys int
	// SystemObjects: key journal batches and the marker sealed again under
	// the primary root key.
	SystemObjects int
	// Entries: key journal entries written.
	Entries int
	// Skipped: objects replaced or deleted while the rewrap ran (their
	// successors were written under the primary version).
	Skipped int
}

// RewrapProgress is called after each committed batch of a bucket.
type RewrapProgress func(bucket string, done int)

// RewrapBucket rewraps the data key of every current object of bucket
// that is wrapped under an older bucket key version, under the primary
// version: one key journal entry per batch of records, and the catalog's
// records in the same transaction. No object body is read or written.
// Objects written or replaced meanwhile are left alone: they are written
// under the primary version already, or replaced.
func (r *Repo) RewrapBucket(ctx context.Context, bucket string, progress RewrapProgress) (RewrapReport, error) {
	var rep RewrapReport
	b, err := r.cat.GetBucket(ctx, bucket)
	if errors.Is(err, catalog.ErrNotFound) {
		return rep, fmt.Errorf("bucket %q: %w", bucket, ErrNotFound)
	}
	if err != nil {
		return rep, err
	}
	pk, err := r.primaryBucketKey(ctx, b)
	if err != nil {
		return rep, err
	}
	pdk, err := r.dataKeysFor(ctx, pk)
	if err != nil {
		return rep, err
	}
	bks, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		return rep, err
	}
	byVersion := map[uint32]catalog.BucketKey{}
	for _, k := range bks {
		byVersion[k.Version] = k
	}
	var todo []catalog.Entry
	flush := func() error {
		if len(todo) == 0 {
			return nil
		}
		n, err := r.rewrapEntries(ctx, b, pk, pdk, byVersion, todo)
		if err != nil {
			return err
		}
		rep.Objects += n
		rep.Skipped += len(todo) - n
		rep.Entries++
		todo = todo[:0]
		if progress != nil {
			progress(bucket, rep.Objects+rep.Skipped)
		}
		return nil
	}
	// The listing holds no catalog resources while fn runs; batches are
	// committed as they fill.
	err = r.cat.List(ctx, bucket, "", "", func(e catalog.Entry) error {
		if e.KeyVersion >= pk.Version {
			return nil
		}
		todo = append(todo, e)
		if len(todo) >= rewrapBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return rep, fmt.Errorf("rewrapping bucket %q: %w", bucket, err)
	}
	return rep, nil
}

// rewrapEntries rewraps es' data keys under pk (wrapped through pdk) and
// records them: a batch entry in the store, then the catalog's records
// with it.
func (r *Repo) rewrapEntries(ctx context.Context, b catalog.Bucket, pk catalog.BucketKey, pdk dataKeys, byVersion map[uint32]catalog.BucketKey, es []catalog.Entry) (int, error) {
	recs := make([]format.KeyRecord, 0, len(es))
	items := make([]catalog.Rewrap, 0, len(es))
	now := uint64(time.Now().UnixNano())
	for _, e := range es {
		old, ok := byVersion[e.KeyVersion]
		if !ok {
			return 0, fmt.Errorf("%s/%s: bucket key v%d is not in the catalog", e.Bucket, e.Key, e.KeyVersion)
		}
		dk, err := r.dataKeysFor(ctx, old)
		if err != nil {
			return 0, fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, err)
		}
		dek, err := dk.unwrap(ctx, r.dataAD(b.ID, e.KeyVersion, e.ObjectID), e.Wrapped)
		if errors.Is(err, keys.ErrNotMyKey) {
			return 0, fmt.Errorf("%s/%s: the catalog's data key record does not open: %w", e.Bucket, e.Key, err)
		}
		if err != nil { // the key source could not answer
			return 0, fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, err)
		}
		// The key must be the one the body was sealed with: its commitment
		// is the header's, which the catalog keeps.
		c, err := object.Commitment(dek)
		if err != nil || subtle.ConstantTimeCompare(c[:], e.Commit[:]) != 1 {
			dek.Wipe()
			return 0, fmt.Errorf("%s/%s: the catalog's data key does not match the object's commitment: %w", e.Bucket, e.Key, keys.ErrNotMyKey)
		}
		wr, werr := pdk.wrap(ctx, r.dataAD(b.ID, pk.Version, e.ObjectID), dek, nil)
		kc, kerr := keys.KeyCheck(dek)
		dek.Wipe()
		if err := errors.Join(werr, kerr); err != nil {
			return 0, err
		}
		rec := format.KeyRecord{Type: format.RecordDataKey, Bucket: b.ID, BucketName: b.Name, KeyVersion: pk.Version, Object: e.ObjectID,
			Wrapped: keys.Wrapped{Source: r.src.Kind(), Alg: keys.AlgHKDFGCMCommit, KEKVersion: pk.Version, Data: wr}, Created: now}
		copy(rec.KeyCheck[:], kc)
		recs = append(recs, rec)
		items = append(items, catalog.Rewrap{Bucket: e.Bucket, Key: e.Key, ObjectID: e.ObjectID, Wrapped: wr})
	}
	slices.SortFunc(recs, func(a, b format.KeyRecord) int { return bytes.Compare(a.Object[:], b.Object[:]) })
	plain, err := format.MarshalKeyBatch(recs)
	if err != nil {
		return 0, err
	}
	n := 0
	_, err = r.writeSystem(ctx, format.KindJournal, nil, plain, func(so catalog.SystemObject) (err error) {
		n, err = r.cat.CommitRewrapBatch(ctx, so, b.ID, pk.Version, items)
		return err
	})
	return n, err
}

// RewrapRoot rewraps every live bucket key version wrapped under an older
// root key version under the primary one (a new key journal entry each;
// the old entry is deleted), and seals the key journal's rewrap batches
// and the repository marker again under the primary root key where an
// older one sealed them. Catalog backups are not rewritten: the next
// backup is sealed under the primary version (RetireRootKey writes one).
func (r *Repo) RewrapRoot(ctx context.Context) (RewrapReport, error) {
	var rep RewrapReport
	root := r.src.Primary()
	bks, err := r.cat.AllBucketKeys(ctx)
	if err != nil {
		return rep, err
	}
	buckets := map[keys.ID]string{}
	if bl, err := r.cat.Buckets(ctx); err == nil {
		for _, b := range bl {
			buckets[b.ID] = b.Name
		}
	} else {
		return rep, err
	}
	for _, bk := range bks {
		if bk.State == catalog.KeyDestroyed || bk.Wrapped.KEKVersion == root {
			continue
		}
		if err := r.rewrapBucketKey(ctx, bk, root, buckets[bk.BucketID]); err != nil {
			return rep, fmt.Errorf("rewrapping bucket key v%d of %x: %w", bk.Version, bk.BucketID, err)
		}
		rep.BucketKeys++
		rep.Entries++
	}
	// Batches and the marker: sealed again if an older root sealed them.
	batches, err := r.cat.KeyBatches(ctx)
	if err != nil {
		return rep, err
	}
	sos, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return rep, err
	}
	sysByID := map[keys.ID]catalog.SystemObject{}
	for _, so := range sos {
		sysByID[so.ObjectID] = so
	}
	for _, kb := range batches {
		so, ok := sysByID[kb.JournalID]
		if !ok {
			continue
		}
		plain, ver, err := r.readSystem(ctx, so)
		if err != nil {
			return rep, fmt.Errorf("reading key journal batch %s: %w", format.StoreName(so.ObjectID), err)
		}
		if ver == root {
			continue
		}
		old := so.ObjectID
		if _, err := r.writeSystem(ctx, format.KindJournal, nil, plain, func(n catalog.SystemObject) error {
			return r.cat.ReplaceKeyBatch(ctx, old, n)
		}); err != nil {
			return rep, fmt.Errorf("sealing key journal batch %s again: %w", format.StoreName(old), err)
		}
		r.removeGarbage(ctx, old)
		rep.SystemObjects++
		rep.Entries++
	}
	// Audit checkpoints: sealed again under a fresh id, keeping when they
	// were stored (pruning goes by it); the old object is deleted. One
	// that does not open is left as it is: verify reports it.
	for _, so := range sos {
		if so.Kind != catalog.KindCheckpoint {
			continue
		}
		plain, ver, err := r.readSystem(ctx, so)
		if errors.Is(err, format.ErrCorrupt) || isNotExist(err) || errors.Is(err, store.ErrInvalidRange) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("reading audit checkpoint %s: %w", format.StoreName(so.ObjectID), err)
		}
		if ver == root {
			continue
		}
		old, created := so.ObjectID, so.Created
		if _, err := r.writeSystem(ctx, format.KindCheckpoint, nil, plain, func(n catalog.SystemObject) error {
			n.Created = created
			return r.cat.CommitSystem(ctx, n)
		}); err != nil {
			return rep, fmt.Errorf("sealing audit checkpoint %s again: %w", format.StoreName(old), err)
		}
		if err := r.cat.RetireSystem(ctx, old); err == nil {
			r.removeGarbage(ctx, old)
		}
		rep.SystemObjects++
	}
	if so, ok := sysByID[r.id]; ok {
		plain, ver, err := r.readSystem(ctx, so)
		if pe := (*object.PinError)(nil); errors.As(err, &pe) {
			// The marker is rewritten in place, so a reseal whose store
			// write landed while its catalog record did not (a crash, or
			// an answer lost on the way back) leaves a marker the catalog
			// does not pin. One that opens under a root key is one this
			// repository sealed: sealed again, it is pinned again.
			plain, err = r.readStoredMarker(ctx)
			ver = 0
		}
		if err != nil {
			return rep, fmt.Errorf("reading the repository marker: %w", err)
		}
		if ver != root {
			id := r.id
			if _, err := r.writeSystem(ctx, format.KindMarker, &id, plain, func(n catalog.SystemObject) error {
				return r.cat.ReplaceSystem(ctx, n)
			}); err != nil {
				return rep, fmt.Errorf("sealing the repository marker again: %w", err)
			}
			rep.SystemObjects++
		}
	}
	return rep, nil
}

// rewrapBucketKey writes bucket key bk's record under root key version
// root: a new journal entry, the catalog's record with it, the old entry
// deleted.
func (r *Repo) rewrapBucketKey(ctx context.Context, bk catalog.BucketKey, root uint32, name string) error {
	k, err := r.bucketKey(ctx, bk)
	if err != nil {
		return err
	}
	w, err := r.src.Wrap(ctx, root, r.bucketAD(bk.BucketID, root, bk.Version), k)
	if err != nil {
		return err
	}
	rec := format.KeyRecord{Type: format.RecordBucketKey, Bucket: bk.BucketID, BucketName: name, KeyVersion: bk.Version,
		Wrapped: w, Created: uint64(time.Now().UnixNano())}
	copy(rec.KeyCheck[:], bk.KeyCheck)
	plain, err := rec.Marshal()
	if err != nil {
		return err
	}
	old := bk.JournalID
	nbk := bk
	nbk.Wrapped = w
	if _, err := r.writeSystem(ctx, format.KindJournal, nil, plain, func(so catalog.SystemObject) error {
		nbk.JournalID = so.ObjectID
		return r.cat.RewrapBucketKey(ctx, so, nbk)
	}); err != nil {
		return err
	}
	r.removeGarbage(ctx, old)
	return nil
}

// readStoredMarker reads the repository marker the store holds, whatever
// the catalog pins: it must open under a root key and name this
// repository.
func (r *Repo) readStoredMarker(ctx context.Context) ([]byte, error) {
	exp := object.Expect{Identity: object.Identity{Kind: format.KindMarker, Repo: r.id, Object: r.id}}
	o, err := object.Open(ctx, r.st, format.MarkerName(r.id), exp, r.unwrapSystem(ctx, r.id, r.rootVersions()))
	if err != nil {
		return nil, err
	}
	defer o.Wipe()
	var body writerBuf
	if _, err := o.WriteTo(ctx, &body); err != nil {
		return nil, err
	}
	m, err := format.ParseMarker(body.b)
	if err != nil {
		return nil, err
	}
	if m.Repo != r.id {
		return nil, format.Corrupt(format.LayerIdentity, "marker names repository %x", m.Repo[:])
	}
	return body.b, nil
}

// readSystem reads a system object whole and says which root key version
// sealed it.
func (r *Repo) readSystem(ctx context.Context, so catalog.SystemObject) ([]byte, uint32, error) {
	pin := so.Pin
	exp := object.Expect{Identity: object.Identity{Kind: format.Kind(so.Kind), Repo: r.id, Object: so.ObjectID},
		Pin: &pin, StoredLen: so.StoredLen, ManifestOff: so.ManifestOff, ManifestLen: so.ManifestLen}
	name := format.StoreName(so.ObjectID)
	if so.Kind == catalog.KindMarker {
		name = format.MarkerName(r.id)
	}
	o, err := object.Open(ctx, r.st, name, exp, r.unwrapSystem(ctx, so.ObjectID, r.rootVersions()))
	if err != nil {
		return nil, 0, err
	}
	defer o.Wipe()
	var body writerBuf
	if _, err := o.WriteTo(ctx, &body); err != nil {
		return nil, 0, err
	}
	return body.b, o.Manifest.KeyVersion, nil
}

// RetireBucketKey destroys version v of bucket's key: it refuses while
// any object, upload or write in flight depends on it, or while it is the
// primary version; then the catalog's record is zeroed, and its key
// journal entry and the rewrap batches under it are deleted from the
// store. It returns how many store objects were deleted.
func (r *Repo) RetireBucketKey(ctx context.Context, bucket string, v uint32) (int, error) {
	b, err := r.cat.GetBucket(ctx, bucket)
	if errors.Is(err, catalog.ErrNotFound) {
		return 0, fmt.Errorf("bucket %q: %w", bucket, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return r.retireBucketKey(ctx, b.ID, v, false)
}

func (r *Repo) retireBucketKey(ctx context.Context, bucket keys.ID, v uint32, primaryToo bool) (int, error) {
	gone, err := r.cat.RetireBucketKey(ctx, bucket, v, primaryToo)
	if errors.Is(err, catalog.ErrNotFound) {
		return 0, fmt.Errorf("bucket key v%d: %w", v, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	r.forgetBucketKey(bucket, v)
	for _, id := range gone {
		r.removeGarbage(ctx, id)
	}
	return len(gone), nil
}

// RootUse is what still depends on a root key version.
type RootUse struct {
	BucketKeys    int // live bucket key versions wrapped under it
	SystemObjects int // journal batches or the marker sealed under it
}

// rootUse says what depends on root key version v, and lists the catalog
// backups sealed under it.
func (r *Repo) rootUse(ctx context.Context, v uint32) (RootUse, []keys.ID, error) {
	var u RootUse
	bks, err := r.cat.AllBucketKeys(ctx)
	if err != nil {
		return u, nil, err
	}
	for _, bk := range bks {
		if bk.State != catalog.KeyDestroyed && bk.Wrapped.KEKVersion == v {
			u.BucketKeys++
		}
	}
	sos, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return u, nil, err
	}
	live := map[keys.ID]bool{}
	for _, bk := range bks {
		if bk.State != catalog.KeyDestroyed {
			live[bk.JournalID] = true
		}
	}
	batches, err := r.cat.KeyBatches(ctx)
	if err != nil {
		return u, nil, err
	}
	for _, kb := range batches {
		live[kb.JournalID] = true
	}
	var backups []keys.ID
	for _, so := range sos {
		// Bucket key entries are counted by their records above.
		if so.Kind == catalog.KindJournal && !live[so.ObjectID] {
			continue
		}
		ver, err := r.systemRootVersion(ctx, so)
		if err != nil {
			return u, nil, err
		}
		if ver != v {
			continue
		}
		switch {
		case so.Kind == catalog.KindBackup || so.Kind == catalog.KindCheckpoint:
			// Replaced by newer ones (keys rewrap seals audit
			// checkpoints again): deleted when v is destroyed.
			backups = append(backups, so.ObjectID)
		case so.Kind == catalog.KindJournal:
			isBatch := false
			for _, kb := range batches {
				isBatch = isBatch || kb.JournalID == so.ObjectID
			}
			if isBatch {
				u.SystemObjects++
			}
		default:
			u.SystemObjects++
		}
	}
	return u, backups, nil
}

// systemRootVersion says which root key version sealed a system object,
// from its header alone.
func (r *Repo) systemRootVersion(ctx context.Context, so catalog.SystemObject) (uint32, error) {
	name := format.StoreName(so.ObjectID)
	if so.Kind == catalog.KindMarker {
		name = format.MarkerName(r.id)
	}
	h, err := r.readHeader(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", name, err)
	}
	_, ad, err := r.unwrapSystem(ctx, so.ObjectID, r.rootVersions())(h)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return ad.KEKVersion, nil
}

// RetireRootKey destroys root key version v in the key source. It refuses
// the primary version, and any version that still wraps a bucket key or
// seals a journal batch or the marker (keys rewrap first). Catalog
// backups sealed under v are replaced: a fresh backup is written under the
// primary version first, then they are deleted.
func (r *Repo) RetireRootKey(ctx context.Context, v uint32) error {
	d, ok := r.kr.(interface{ Destroy(uint32) error })
	if !ok {
		return fmt.Errorf("root key version %d: %w", v, ErrRotateUnsupported)
	}
	if v == r.src.Primary() {
		return fmt.Errorf("%w: root key version %d is the primary version; rotate first", ErrKeyInUse, v)
	}
	known := false
	for _, i := range r.RootKeyVersions() {
		if i.Version == v {
			known = true
			if i.State == keyring.StateDestroyed {
				return nil
			}
		}
	}
	if !known {
		return fmt.Errorf("root key version %d: %w", v, ErrNotFound)
	}
	// From here on no process commits anything sealed under v: a writer
	// that still takes v for primary reads its key source again.
	if err := r.cat.RetireRoot(ctx, v); err != nil {
		return err
	}
	u, backups, err := r.rootUse(ctx, v)
	if err != nil {
		return err
	}
	if u.BucketKeys+u.SystemObjects > 0 {
		return fmt.Errorf("%w: root key version %d still wraps %d bucket key versions and seals %d key journal entries (keys rewrap first)",
			ErrKeyInUse, v, u.BucketKeys, u.SystemObjects)
	}
	if len(backups) > 0 {
		// The newest backup must not be one that is about to become
		// unreadable.
		if _, err := r.Backup(ctx); err != nil && !errors.Is(err, ErrStoreFreshnessNotRecorded) {
			return fmt.Errorf("a catalog backup under the primary root key: %w", err)
		}
		for _, id := range backups {
			if err := r.cat.RetireSystem(ctx, id); err == nil {
				r.removeGarbage(ctx, id)
			}
		}
	}
	if err := d.Destroy(v); err != nil {
		return err
	}
	return nil
}

// ShredReport says what a shred destroyed.
type ShredReport struct {
	started   bool // something was changed: a failure from here on leaves the shred to finish
	forgotten bool // the names are forgotten: only older root key versions are left to destroy

	Objects        int      // objects deleted
	BucketVersions []uint32 // bucket key versions destroyed
	RootVersions   []uint32 // root key versions destroyed
	Rewrapped      RewrapReport
	NewRoot        uint32 // the root key version that now wraps everything
}

// Shred makes bucket/key (key empty: the whole bucket) unrecoverable from
// anything the provider kept. Every bucket key version that may have
// wrapped its data keys is destroyed — for one key, after the bucket's
// other objects are rewrapped under a fresh version — and every root key
// version that ever wrapped those bucket keys (all but a fresh primary,
// after everything else is rewrapped under it), then the objects are
// deleted. Key backups made before the shred still hold the old root
// keys: they undo it until destroyed (docs/keys.md).
// ShredOptions configure Shred.
type ShredOptions struct {
	// RotateRoot makes the fresh root key version, for a key source that
	// cannot make one itself (a PKCS#11 token: a rotation ceremony that
	// writes the new version's shares). nil: RotateRootKey.
	RotateRoot func() (uint32, error)
	// BeforeRootRetire, if set, runs after everything is rewrapped under
	// the fresh root version and before the older ones are destroyed: the
	// caller moves what it keeps under the root key itself (the audit log's
	// sealed key) under the fresh version. An error stops the shred there.
	BeforeRootRetire func() error
}

func (r *Repo) Shred(ctx context.Context, bucket, key string, o ShredOptions) (*ShredReport, error) {
	rep := &ShredReport{}
	b, err := r.cat.GetBucket(ctx, bucket)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("bucket %q: %w", bucket, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rotate := o.RotateRoot
	if rotate == nil {
		if _, ok := r.kr.(interface{ Rotate() (uint32, error) }); !ok {
			return nil, fmt.Errorf("shred needs a new root key version: %w", ErrRotateUnsupported)
		}
		rotate = r.RotateRootKey
	}
	ups, err := r.cat.ListUploads(ctx, bucket, "")
	if err != nil {
		return nil, err
	}
	if len(ups) > 0 {
		return nil, fmt.Errorf("bucket %q: %w (%d); complete or abort them first", bucket, ErrUploadsInProgress, len(ups))
	}
	old, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	live := true
	if key != "" {
		if _, err := r.cat.Get(ctx, bucket, key); errors.Is(err, catalog.ErrNotFound) {
			// A key deleted earlier (or by a shred that did not finish) may
			// still have copies the provider kept, under keys that are
			// alive: shredding it destroys those keys. A name never written
			// (or already shredded: its records are forgotten) is not found.
			if next, err := r.cat.NextVersion(ctx, bucket, key); err != nil {
				return nil, err
			} else if next <= 1 {
				return nil, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
			}
			live = false
		} else if err != nil {
			return nil, err
		}
	}
	if err := r.shred(ctx, b, key, live, old, rotate, o, rep); err != nil {
		if !rep.started {
			return nil, err
		}
		what := bucket
		if key != "" {
			what += "/" + key
		}
		if rep.forgotten {
			// Only older root key versions are left to destroy, and the
			// names are gone: the shred cannot be named again.
			var left []string
			for _, i := range r.RootKeyVersions() {
				if i.Version != rep.NewRoot && i.State != keyring.StateDestroyed {
					left = append(left, strconv.FormatUint(uint64(i.Version), 10))
				}
			}
			return nil, fmt.Errorf("the shred of %s did not finish: it is deleted and its keys destroyed, but root key versions %s, which wrapped them, remain: run 'holdfast keys rewrap', then 'holdfast keys retire' for each: %w",
				what, strings.Join(left, ", "), err)
		}
		return nil, fmt.Errorf("the shred of %s did not finish (what it deleted stays deleted, but keys that could open it may remain): run it again to finish: %w", what, err)
	}
	return rep, nil
}

// shred is Shred from the first change on; rep.started says whether it
// got that far.
func (r *Repo) shred(ctx context.Context, b catalog.Bucket, key string, live bool, old []catalog.BucketKey,
	rotate func() (uint32, error), o ShredOptions, rep *ShredReport) error {
	bucket := b.Name
	// The fresh root key version first: what is made from here on (the
	// bucket's fresh key version) is wrapped under it, and a source that
	// needs a ceremony for it fails before anything is destroyed.
	nr, err := rotate()
	if err != nil {
		return err
	}
	rep.NewRoot, rep.started = nr, true
	if key != "" {
		// The bucket's other objects move to a fresh version; every older
		// one (any of them may have wrapped a version of key) goes.
		if _, err := r.RotateBucketKey(ctx, bucket); err != nil {
			return err
		}
		if live {
			if _, err := r.Delete(ctx, bucket, key); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			rep.Objects = 1
		}
		rw, err := r.RewrapBucket(ctx, bucket, nil)
		if err != nil {
			return err
		}
		rep.Rewrapped = rw
	} else {
		var es []catalog.Entry
		if err := r.cat.List(ctx, bucket, "", "", func(e catalog.Entry) error { es = append(es, e); return nil }); err != nil {
			return err
		}
		for _, e := range es {
			if _, err := r.Delete(ctx, bucket, e.Key); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			rep.Objects++
		}
	}
	for _, bk := range old {
		if bk.State == catalog.KeyDestroyed {
			continue
		}
		if _, err := r.retireBucketKey(ctx, b.ID, bk.Version, key == ""); err != nil {
			return fmt.Errorf("destroying bucket key v%d: %w", bk.Version, err)
		}
		rep.BucketVersions = append(rep.BucketVersions, bk.Version)
	}
	// Every root key version that wrapped the destroyed bucket keys (their
	// journal entries stay in whatever the provider kept) goes too:
	// everything still alive moves under the fresh root version first.
	rw, err := r.RewrapRoot(ctx)
	if err != nil {
		return err
	}
	rep.Rewrapped.BucketKeys += rw.BucketKeys
	rep.Rewrapped.SystemObjects += rw.SystemObjects
	rep.Rewrapped.Entries += rw.Entries
	if o.BeforeRootRetire != nil {
		if err := o.BeforeRootRetire(); err != nil {
			return err
		}
	}
	// The names: the catalog, and so every backup from now on (the first
	// is written under the fresh root version as the older ones are
	// retired), forgets that they were ever written. Until here a shred
	// that stops can be run again: the names say what it was about.
	if err := r.cat.ForgetNames(ctx, bucket, key); err != nil {
		return err
	}
	if key == "" {
		if err := r.DeleteBucket(ctx, bucket); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	rep.forgotten = true
	for _, i := range r.RootKeyVersions() {
		if i.Version == nr || i.State == keyring.StateDestroyed {
			continue
		}
		if err := r.RetireRootKey(ctx, i.Version); err != nil {
			return fmt.Errorf("destroying root key version %d: %w", i.Version, err)
		}
		rep.RootVersions = append(rep.RootVersions, i.Version)
	}
	// The catalog's own file may keep deleted rows in free pages; the
	// records in them are wrapped under keys destroyed above.
	return nil
}
