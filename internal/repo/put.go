package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
)

// PutOptions carry an object's metadata.
type PutOptions struct {
	ContentType string
	Meta        map[string]string
	Modified    time.Time // default: now
	Seal        object.SealOptions
}

// Put stores src as the new version of bucket/key. The order is: pending
// record, store write under a fresh name, catalog commit, deletion of the
// previous version. A crash anywhere leaves the previous version readable;
// the next Cleanup removes what the crash left.
func (r *Repo) Put(ctx context.Context, bucket, key string, src io.Reader, o PutOptions) (catalog.Entry, error) {
	if err := ValidateBucket(bucket); err != nil {
		return catalog.Entry{}, err
	}
	if err := ValidateKey(key); err != nil {
		return catalog.Entry{}, err
	}
	meta, err := metaPairs(o.Meta)
	if err != nil {
		return catalog.Entry{}, err
	}
	b, bk, err := r.ensureBucket(ctx, bucket)
	if err != nil {
		return catalog.Entry{}, err
	}
	kek, err := r.bucketKey(ctx, bk)
	if err != nil {
		return catalog.Entry{}, err
	}
	ver, err := r.cat.NextVersion(ctx, bucket, key)
	if err != nil {
		return catalog.Entry{}, err
	}
	id, err := newID()
	if err != nil {
		return catalog.Entry{}, err
	}
	name := format.StoreName(id)
	mod := o.Modified
	if mod.IsZero() {
		mod = time.Now()
	}
	ident := object.Identity{Kind: format.KindData, Repo: r.id, Object: id, Bucket: b.ID, KeyVersion: bk.Version,
		BucketName: bucket, Key: key, ObjectVersion: ver}
	ad := r.dataAD(b.ID, bk.Version, id)
	wrap := func(dek secret.Key) (keys.Alg, []byte, error) {
		w, err := keys.WrapSoftware(kek, ad, dek, randReader(o.Seal.Rand))
		return keys.AlgHKDFGCMCommit, w, err
	}
	s, err := object.NewSealer(src, ident, object.Attrs{Modified: mod, ContentType: o.ContentType, Meta: meta}, wrap, o.Seal)
	if err != nil {
		return catalog.Entry{}, err
	}
	if err := r.cat.BeginPut(ctx, catalog.Pending{ObjectID: id, Kind: int(format.KindData), Bucket: bucket, Key: key,
		Owner: ownerToken(), Started: time.Now()}); err != nil {
		return catalog.Entry{}, err
	}
	r.hooks.at("put:pending")
	if err := r.st.Put(ctx, name, s, -1); err != nil {
		r.discard(ctx, id, name)
		return catalog.Entry{}, fmt.Errorf("storing %s/%s: %w", bucket, key, err)
	}
	r.hooks.at("put:stored")
	res := s.Result()
	e := catalog.Entry{
		Bucket: bucket, Key: key, Version: ver, ObjectID: id, Size: int64(res.Manifest.Length),
		StoredLen: int64(res.Sizes.Stored), ManifestOff: int64(res.Sizes.ManifestOff), ManifestLen: int64(res.Sizes.ManifestLen),
		Pin: res.Pin, Commit: res.Commit, KeyVersion: bk.Version, Wrapped: res.Wrapped,
		Modified: time.Unix(0, int64(res.Manifest.Modified)), ContentType: o.ContentType, Meta: o.Meta,
		Segments: len(res.Manifest.Segments),
	}
	old, err := r.cat.CommitPut(ctx, e)
	if err != nil {
		r.discard(ctx, id, name)
		return catalog.Entry{}, fmt.Errorf("recording %s/%s: %w", bucket, key, err)
	}
	r.hooks.at("put:committed")
	if old != nil {
		r.removeGarbage(ctx, old.ObjectID)
	}
	r.hooks.at("put:done")
	return e, nil
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
	r.removeGarbage(ctx, e.ObjectID)
	return e, nil
}

func metaPairs(m map[string]string) ([]format.MetaPair, error) {
	if len(m) == 0 {
		return nil, nil
	}
	ps := make([]format.MetaPair, 0, len(m))
	size := 0
	for k, v := range m {
		ps = append(ps, format.MetaPair{Name: k, Value: v})
		size += len(k) + len(v)
	}
	if size > 2048 {
		return nil, fmt.Errorf("user metadata is %d bytes; at most 2048 are allowed", size)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps, nil
}
