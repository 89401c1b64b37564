package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
)

// Reseal stores the object rd holds again with some of its attributes
// changed (PutOptions.Attrs; a name given an empty value is removed) and
// returns the committed entry. Everything else stays as it was: the
// plaintext, cut into the same segments (an object completed from a
// multipart upload keeps its parts), the content type, the user metadata
// and the modified time. Attributes live in the manifest, which is sealed
// under the object's data key and never sealed twice (docs/format.md,
// writer rule), so the object is sealed anew under a fresh data key as
// its key's next version, its plaintext read from rd — authenticated as
// it is read — and streamed into the store: nothing is kept in memory or
// on disk.
//
// It commits only over rd's object: if bucket/key was written or deleted
// since rd was opened, nothing is stored and the error wraps ErrReplaced
// (the caller opens the object again and retries). Attributes that do not
// fit the manifest fail with ErrMetadataTooLarge before anything is read.
// rd is read to its end, not closed.
func (r *Repo) Reseal(ctx context.Context, rd *Reader, attrs map[string]string) (catalog.Entry, error) {
	src := rd.Entry
	m := rd.Manifest()
	all := map[string]string{}
	for k, v := range src.Meta {
		if name, ok := cutAttr(k); ok {
			all[name] = v
		}
	}
	for k, v := range attrs {
		if v == "" {
			delete(all, k)
		} else {
			all[k] = v
		}
	}
	pairs, err := metaPairs(UserMeta(src), all)
	if err != nil {
		return catalog.Entry{}, fmt.Errorf("%s/%s: %w", src.Bucket, src.Key, err)
	}
	// Not r.writer, which makes a bucket that is missing: a reseal must
	// not bring back a bucket deleted (or deleted and made again) since rd
	// was opened; its object is gone either way.
	b, err := r.cat.GetBucket(ctx, src.Bucket)
	switch {
	case errors.Is(err, catalog.ErrNotFound) || err == nil && b.ID != m.Bucket:
		return catalog.Entry{}, fmt.Errorf("%s/%s: the bucket was deleted: %w", src.Bucket, src.Key, ErrReplaced)
	case err != nil:
		return catalog.Entry{}, err
	}
	bk, err := r.primaryBucketKey(ctx, b)
	if err != nil {
		return catalog.Entry{}, err
	}
	w, err := r.writerFor(ctx, b, bk)
	if err != nil {
		return catalog.Entry{}, err
	}
	id, err := newID()
	if err != nil {
		return catalog.Entry{}, err
	}
	ps := []catalog.Pending{{ObjectID: id, Kind: int(format.KindData), Bucket: src.Bucket, Key: src.Key,
		Owner: ownerToken(), Started: time.Now()}}
	if err := r.begin(ctx, &w, ps); err != nil {
		return catalog.Entry{}, err
	}
	name := format.StoreName(id)
	e, err := w.reseal(ctx, rd, id, ps[0].Version, m, pairs)
	if err != nil {
		r.discard(ctx, id, name)
		return catalog.Entry{}, err
	}
	old, err := r.cat.CommitReplace(ctx, e, src.ObjectID)
	if err != nil {
		switch committed, known := r.commitOutcome(ctx, id); {
		case committed:
			return e, nil
		case known:
			r.discard(ctx, id, name)
		}
		if errors.Is(err, catalog.ErrStaleVersion) {
			return catalog.Entry{}, fmt.Errorf("%s/%s: %w (%v)", src.Bucket, src.Key, ErrReplaced, err)
		}
		return catalog.Entry{}, fmt.Errorf("recording %s/%s: %w", src.Bucket, src.Key, err)
	}
	if old != nil {
		r.retire(ctx, old.ObjectID)
	}
	return e, nil
}

// cutAttr returns the attribute name of metadata name k, if it is one.
func cutAttr(k string) (string, bool) {
	if len(k) > len(AttrPrefix) && k[:len(AttrPrefix)] == AttrPrefix {
		return k[len(AttrPrefix):], true
	}
	return "", false
}

// errReseal stops the plaintext producer of a reseal that ended.
var errReseal = errors.New("reseal ended")

// reseal seals rd's plaintext as version ver of its key under object id
// id, in the segments of m, with metadata pairs, writes it to the store
// and returns the catalog entry to commit.
func (w *bucketWriter) reseal(ctx context.Context, rd *Reader, id keys.ID, ver uint64, m *format.Manifest, pairs []format.MetaPair) (catalog.Entry, error) {
	r, src := w.r, rd.Entry
	ad := r.dataAD(w.bucket.ID, w.bk.Version, id)
	mp, err := object.NewMultipart(func(dek secret.Key) (keys.Alg, []byte, error) {
		wr, err := w.dk.wrap(ctx, ad, dek, nil)
		return keys.AlgHKDFGCMCommit, wr, err
	}, nil)
	if err != nil {
		return catalog.Entry{}, err
	}
	defer mp.Wipe()
	// The plaintext, authenticated chunk by chunk, in one stream; each
	// segment reads its own length of it (a segment reads one byte past
	// its end to check that its source ends there).
	pr, pw := io.Pipe()
	produced := make(chan error, 1)
	go func() {
		_, err := rd.WriteTo(ctx, pw)
		pw.CloseWithError(err)
		produced <- err
	}()
	var prodErr error
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			pr.CloseWithError(errReseal)
			prodErr = <-produced // rd is the caller's again only once the producer stopped
		}
		return prodErr
	}
	defer stop()
	parts := []io.Reader{bytes.NewReader(mp.HeaderBytes())}
	segs := make([]format.Segment, len(m.Segments))
	for i, sg := range m.Segments {
		sr, err := mp.Segment(io.LimitReader(pr, int64(sg.Len)), int64(sg.Len), nil)
		if err != nil {
			return catalog.Entry{}, err
		}
		segs[i] = format.Segment{Len: sg.Len, Salt: sr.Salt()}
		parts = append(parts, sr)
	}
	ident := object.Identity{Kind: format.KindData, Repo: r.id, Object: id, Bucket: w.bucket.ID, KeyVersion: w.bk.Version,
		BucketName: src.Bucket, Key: src.Key, ObjectVersion: ver}
	res, err := mp.Trailer(ident, object.Attrs{Modified: time.Unix(0, int64(m.Modified)), ContentType: m.ContentType, Meta: pairs}, segs)
	if err != nil {
		return catalog.Entry{}, err
	}
	parts = append(parts, io.NewSectionReader(mp.Padding(), 0, int64(res.Sizes.Padding)),
		bytes.NewReader(res.ManifestCT), bytes.NewReader(res.FooterCT))
	err = r.st.Put(ctx, format.StoreName(id), io.MultiReader(parts...), int64(res.Sizes.Stored))
	// Damage found in the source (a chunk, or the padding after the last
	// one) fails the reseal even when every byte was stored.
	if perr := stop(); perr != nil && !errors.Is(perr, errReseal) {
		return catalog.Entry{}, perr
	}
	if err != nil {
		return catalog.Entry{}, fmt.Errorf("storing %s/%s: %w", src.Bucket, src.Key, err)
	}
	return catalog.Entry{
		Bucket: src.Bucket, Key: src.Key, Version: ver, ObjectID: id, Size: int64(res.Manifest.Length),
		StoredLen: int64(res.Sizes.Stored), ManifestOff: int64(res.Sizes.ManifestOff), ManifestLen: int64(res.Sizes.ManifestLen),
		Pin: res.Pin, Commit: res.Commit, KeyVersion: w.bk.Version, Wrapped: mp.Header().Wrapped,
		Modified: time.Unix(0, int64(res.Manifest.Modified)), ContentType: m.ContentType, Meta: metaMap(res.Manifest.Meta),
		Segments: len(res.Manifest.Segments),
	}, nil
}
