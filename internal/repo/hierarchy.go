package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

func newID() (keys.ID, error) {
	var id keys.ID
	_, err := rand.Read(id[:])
	return id, err
}

// dataAD is the associated data of an object's data key under a bucket key.
func (r *Repo) dataAD(bucket keys.ID, bkVersion uint32, obj keys.ID) keys.AD {
	return keys.AD{Purpose: keys.PurposeDataKey, Repo: r.id, Bucket: bucket, KEKVersion: bkVersion, Object: obj}
}

// systemAD is the associated data of a system object's data key.
func (r *Repo) systemAD(rootVersion uint32, obj keys.ID) keys.AD {
	return keys.AD{Purpose: keys.PurposeSystemKey, Repo: r.id, KEKVersion: rootVersion, Object: obj}
}

func (r *Repo) bucketAD(bucket keys.ID, rootVersion, bkVersion uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeBucketKey, Repo: r.id, Bucket: bucket, KEKVersion: rootVersion, KeyVersion: bkVersion}
}

// bucketKey returns the unwrapped bucket key (cached for the process).
func (r *Repo) bucketKey(ctx context.Context, bk catalog.BucketKey) (secret.Key, error) {
	ref := bkRef{bk.BucketID, bk.Version}
	if bk.State == catalog.KeyDestroyed {
		// Retired, perhaps by another process: this one's copy goes too.
		r.forgetBucketKey(bk.BucketID, bk.Version)
		return secret.Key{}, fmt.Errorf("bucket key v%d: %w", bk.Version, ErrKeyRetired)
	}
	r.mu.Lock()
	k, ok := r.bkeys[ref]
	src, sealed := r.src, r.sealed
	r.mu.Unlock()
	if sealed {
		return secret.Key{}, ErrKeysSealed
	}
	if _, remote := src.(DataKeySource); remote {
		// The source opens bucket keys only for itself (datakeys.go):
		// what needs one here cannot be done with it.
		return secret.Key{}, fmt.Errorf("bucket key v%d: %w", bk.Version, errBucketKeyStaysAtSource)
	}
	if ok {
		r.countBucketKeyCacheHit()
		return k, nil
	}
	r.countRootUnwrap()
	k, err := src.Unwrap(ctx, bk.Wrapped, r.bucketAD(bk.BucketID, bk.Wrapped.KEKVersion, bk.Version))
	if errors.Is(err, keys.ErrNotMyKey) && !r.knowsRootVersion(bk.Wrapped.KEKVersion) {
		// Another process rotated the root key after this one opened the
		// key source (keys rotate beside a running serve): read it again.
		if rerr := r.reloadRootKeys(); rerr == nil {
			r.countRootUnwrap()
			k, err = src.Unwrap(ctx, bk.Wrapped, r.bucketAD(bk.BucketID, bk.Wrapped.KEKVersion, bk.Version))
		}
	}
	if err != nil {
		return secret.Key{}, fmt.Errorf("unwrapping bucket key v%d: %w", bk.Version, err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil || subtle.ConstantTimeCompare(kc, bk.KeyCheck) != 1 {
		k.Wipe()
		return secret.Key{}, fmt.Errorf("bucket key v%d does not match its key check: %w", bk.Version, keys.ErrNotMyKey)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sealed {
		// Sealed while unwrapping: the key must not outlive the seal.
		k.Wipe()
		return secret.Key{}, ErrKeysSealed
	}
	r.bkeys[ref] = k
	return k, nil
}

// primaryBucketKey returns the newest active key version of a bucket.
func (r *Repo) primaryBucketKey(ctx context.Context, b catalog.Bucket) (catalog.BucketKey, error) {
	bks, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		return catalog.BucketKey{}, err
	}
	for i := len(bks) - 1; i >= 0; i-- {
		if bks[i].State == 1 {
			return bks[i], nil
		}
	}
	return catalog.BucketKey{}, fmt.Errorf("bucket %q has no active key: %w", b.Name, ErrNotFound)
}

// ensureBucket returns bucket name, creating it (with key version 1 and its
// journal entry) if needed.
func (r *Repo) ensureBucket(ctx context.Context, name string) (catalog.Bucket, catalog.BucketKey, error) {
	b, err := r.cat.GetBucket(ctx, name)
	if errors.Is(err, catalog.ErrNotFound) {
		if err := ValidateNewBucket(name); err != nil {
			return b, catalog.BucketKey{}, err
		}
		b = catalog.Bucket{Name: name, Created: time.Now()}
		if b.ID, err = newID(); err != nil {
			return b, catalog.BucketKey{}, err
		}
		err = r.cat.CreateBucket(ctx, b)
		if errors.Is(err, catalog.ErrExists) { // another process won the race
			b, err = r.cat.GetBucket(ctx, name)
		}
	}
	if err != nil {
		return b, catalog.BucketKey{}, err
	}
	bk, err := r.primaryBucketKey(ctx, b)
	if errors.Is(err, ErrNotFound) {
		bk, err = r.newBucketKey(ctx, b, 1)
	}
	return b, bk, err
}

// newBucketKey makes bucket key version ver (makeBucketKey: here, or by
// the key source), writes its journal entry to the store and records it
// in the catalog.
func (r *Repo) newBucketKey(ctx context.Context, b catalog.Bucket, ver uint32) (catalog.BucketKey, error) {
	root := r.src.Primary()
	made, err := r.makeBucketKey(ctx, r.bucketAD(b.ID, root, ver))
	if err != nil {
		return catalog.BucketKey{}, err
	}
	// Wiped on every way out but the one that keeps it for the process.
	k := made.key
	defer func() { k.Wipe() }()
	w, kc := made.wrapped, made.check
	now := time.Now()
	rec := format.KeyRecord{Type: format.RecordBucketKey, Bucket: b.ID, BucketName: b.Name, KeyVersion: ver,
		Wrapped: w, Created: uint64(now.UnixNano())}
	copy(rec.KeyCheck[:], kc)
	plain, err := rec.Marshal()
	if err != nil {
		return catalog.BucketKey{}, err
	}
	bk := catalog.BucketKey{BucketID: b.ID, Version: ver, Wrapped: w, KeyCheck: kc, Created: now, State: 1}
	// The journal entry and the catalog's record of the key commit in one
	// transaction: both or neither.
	commit := func(so catalog.SystemObject) error {
		bk.JournalID = so.ObjectID
		return r.cat.CommitBucketKey(ctx, so, bk)
	}
	if _, err := r.writeSystem(ctx, format.KindJournal, nil, plain, commit); err != nil {
		if errors.Is(err, catalog.ErrKeyRetired) && root != r.src.Primary() {
			// The bucket key was wrapped under a root key version retired
			// meanwhile; writeSystem read the key source again: make anew.
			return r.newBucketKey(ctx, b, ver)
		}
		if errors.Is(err, catalog.ErrExists) {
			// Another process made this version first; use its key.
			return r.primaryBucketKey(ctx, b)
		}
		return catalog.BucketKey{}, fmt.Errorf("writing key journal entry: %w", err)
	}
	if !k.Valid() || !r.holdsBucketKeys() {
		// Made by the source, or made here for a source that keeps
		// bucket keys to itself (gone once wrapped): data keys under it
		// go through the source, or it is opened when first used.
		return bk, nil
	}
	r.mu.Lock()
	r.bkeys[bkRef{b.ID, ver}] = k
	r.mu.Unlock()
	k = secret.Key{} // kept: not wiped on the way out
	return bk, nil
}

// writeSystem stores a system object (journal entry, marker, audit
// checkpoint) whose data
// key is wrapped under the primary root key. fixed nil: a fresh id. commit
// records it in the catalog (nil: CommitSystem), with whatever the entry
// holds in the same transaction; if commit fails, the stored object is
// removed (a marker, rewritten in place, is left).
func (r *Repo) writeSystem(ctx context.Context, kind format.Kind, fixed *keys.ID, plain []byte, commit func(catalog.SystemObject) error) (keys.ID, error) {
	id, err := r.writeSystemOnce(ctx, kind, fixed, plain, commit)
	if errors.Is(err, catalog.ErrKeyRetired) {
		// Sealed under a root key version another process retired
		// meanwhile (keys retire beside a running serve): read the key
		// source again and seal under its primary version.
		if rerr := r.reloadRootKeys(); rerr != nil {
			return id, errors.Join(err, rerr)
		}
		id, err = r.writeSystemOnce(ctx, kind, fixed, plain, commit)
	}
	return id, err
}

func (r *Repo) writeSystemOnce(ctx context.Context, kind format.Kind, fixed *keys.ID, plain []byte, commit func(catalog.SystemObject) error) (keys.ID, error) {
	var id keys.ID
	var err error
	if fixed != nil {
		id = *fixed
	} else if id, err = newID(); err != nil {
		return id, err
	}
	name := format.StoreName(id)
	if kind == format.KindMarker {
		name = format.MarkerName(r.id)
	}
	root := r.src.Primary()
	wrap := func(dek secret.Key) (keys.Alg, []byte, error) {
		w, err := r.src.Wrap(ctx, root, r.systemAD(root, id), dek)
		if err != nil {
			return 0, nil, err
		}
		return w.Alg, w.Data, nil
	}
	ident := object.Identity{Kind: kind, Repo: r.id, Object: id, KeyVersion: root, ObjectVersion: 1}
	s, err := object.NewSealer(bytes.NewReader(plain), ident, object.Attrs{Modified: time.Now()}, wrap, object.SealOptions{})
	if err != nil {
		return id, err
	}
	defer s.Close()
	// The marker is rewritten in place under its fixed name (keys rewrap
	// seals it under a new root key): it is already a system object, and
	// a write that fails leaves the old one or the new one, never none.
	rewrite := kind == format.KindMarker && commit != nil
	if !rewrite {
		if err := r.cat.BeginPut(ctx, catalog.Pending{ObjectID: id, Kind: int(kind), Owner: ownerToken(), Started: time.Now()}); err != nil {
			return id, err
		}
	}
	if err := r.st.Put(ctx, name, s, store.UnknownSize); err != nil {
		if rewrite {
			return id, err
		}
		r.discard(ctx, id, name)
		return id, err
	}
	r.hooks.at("system:stored")
	res := s.Result()
	so := catalog.SystemObject{ObjectID: id, Kind: int(kind), Pin: res.Pin, StoredLen: int64(res.Sizes.Stored),
		ManifestOff: int64(res.Sizes.ManifestOff), ManifestLen: int64(res.Sizes.ManifestLen), Created: time.Now(),
		RootVersion: root}
	if commit != nil {
		err = commit(so)
	} else {
		err = r.cat.CommitSystem(ctx, so)
	}
	if err != nil {
		if kind != format.KindMarker {
			r.discard(ctx, id, name)
		}
		return id, err
	}
	return id, nil
}

func (r *Repo) writeMarker(ctx context.Context) error {
	m := format.Marker{Repo: r.id, Created: uint64(time.Now().UnixNano())}
	id := r.id
	_, err := r.writeSystem(ctx, format.KindMarker, &id, m.Marshal(), nil)
	return err
}

// unwrapSystem tries every root key version for a system object's header.
func (r *Repo) unwrapSystem(ctx context.Context, obj keys.ID, versions []uint32) object.UnwrapFunc {
	return r.unwrapSystemCounted(ctx, obj, versions, true)
}

// unwrapSystemCounted is unwrapSystem; count false leaves the unwraps out
// of KeyUseCounts (reads done for the audit log itself: see
// AuditCheckpoints).
func (r *Repo) unwrapSystemCounted(ctx context.Context, obj keys.ID, versions []uint32, count bool) object.UnwrapFunc {
	return func(h format.Header) (secret.Key, keys.AD, error) {
		for _, v := range versions {
			ad := r.systemAD(v, obj)
			w := keys.Wrapped{Source: r.src.Kind(), Alg: h.Alg, KEKVersion: v, Data: h.Wrapped}
			if count {
				r.countRootUnwrap()
			}
			k, err := r.src.Unwrap(ctx, w, ad)
			if err == nil {
				return k, ad, nil
			}
			if !errors.Is(err, keys.ErrNotMyKey) {
				return secret.Key{}, ad, err
			}
		}
		return secret.Key{}, keys.AD{}, keys.ErrNotMyKey
	}
}

// rootVersions lists the root key versions that can still unwrap.
func (r *Repo) rootVersions() []uint32 {
	var vs []uint32
	for _, v := range r.kr.Versions() {
		if v.State != keyring.StateDestroyed {
			vs = append(vs, v.Version)
		}
	}
	return vs
}

// discard removes a store object written by a failed operation and its
// pending record. Errors are ignored: the next cleanup finishes the job.
// While the store may still hold the object (it could not be reached to
// delete it, and a write whose answer was lost may have landed), the
// pending record stays, so the object is never taken for an unknown one.
// The deletion gets discardTimeout, so that a failed write against a store
// that does not answer is reported soon after the store's own deadline.
func (r *Repo) discard(ctx context.Context, id keys.ID, name string) {
	ctx = context.WithoutCancel(ctx)
	dctx, cancel := context.WithTimeout(ctx, discardTimeout)
	err := r.st.Delete(dctx, name)
	cancel()
	if err != nil && !isNotExist(err) {
		return
	}
	_ = r.cat.AbortPut(ctx, id)
}

// commitOutcome asks the catalog what became of the write of object id
// whose commit returned an error. A commit can fail after the database
// committed it (a connection lost on the way back): then the object is, or
// was, the key's current version, and removing it would lose an
// acknowledged write. committed: it is in the catalog as committed;
// known false: the catalog could not be asked — the object must be left
// alone (its pending record, if any, lets Cleanup decide later). Only a
// write known and not committed (still pending, or refused) may be
// discarded.
func (r *Repo) commitOutcome(ctx context.Context, id keys.ID) (committed, known bool) {
	k, err := r.cat.Lookup(context.WithoutCancel(ctx), id)
	if err != nil {
		return false, false
	}
	return k == catalog.KnownCurrent || k == catalog.KnownHistory || k == catalog.KnownGarbage, true
}

// discardTimeout bounds discard's deletion.
const discardTimeout = 30 * time.Second
