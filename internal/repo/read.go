package repo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

func randReader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

func isNotExist(err error) bool { return errors.Is(err, store.ErrNotExist) }

// Reader is an authenticated object ready to be read.
type Reader struct {
	Entry  catalog.Entry
	obj    *object.Object
	r      *Repo
	closed sync.Once
}

// Stat returns the catalog entry of bucket/key.
func (r *Repo) Stat(ctx context.Context, bucket, key string) (catalog.Entry, error) {
	e, err := r.cat.Get(ctx, bucket, key)
	if errors.Is(err, catalog.ErrNotFound) {
		return e, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	return e, err
}

// OpenObject authenticates the stored header, manifest and footer of
// bucket/key against the catalog's pin. It releases no plaintext; damage
// is reported as a *DamageError. An object replaced while it is opened is
// opened again.
func (r *Repo) OpenObject(ctx context.Context, bucket, key string) (*Reader, error) {
	for tries := 0; ; tries++ {
		e, err := r.Stat(ctx, bucket, key)
		if err != nil {
			return nil, err
		}
		rd, err := r.OpenEntry(ctx, e)
		if !errors.Is(err, ErrReplaced) || tries == 2 {
			return rd, err
		}
	}
}

// OpenEntry is OpenObject for the entry e, as Stat returned it. If the
// object has since been replaced and its old version removed, the error
// is ErrReplaced; if it has been deleted, ErrNotFound.
func (r *Repo) OpenEntry(ctx context.Context, e catalog.Entry) (*Reader, error) {
	// Until Close, this version is not removed from the store, even once
	// superseded or deleted (retire). The pin comes first: a replacement
	// committed after it finds the version pinned; one committed before
	// it may be removing the version already, so once the object is open
	// the catalog must still name it.
	r.pin(e.ObjectID)
	o, err := r.openEntryReading(ctx, e, WholeReadMax)
	if err != nil {
		r.unpin(e.ObjectID)
		return nil, r.damage(ctx, e, err)
	}
	r.hooks.at("open:opened")
	if err := r.stillCurrent(ctx, e); err != nil {
		o.Wipe()
		r.unpin(e.ObjectID)
		return nil, err
	}
	return &Reader{Entry: e, obj: o, r: r}, nil
}

// EntryManifest authenticates e's header, manifest and footer against the
// catalog's pin, as OpenEntry does, and returns the manifest: for answers
// about version e from its manifest alone (its parts), which need no
// later store request, and so stand even if e is replaced meanwhile.
func (r *Repo) EntryManifest(ctx context.Context, e catalog.Entry) (*format.Manifest, error) {
	o, err := r.openEntryReading(ctx, e, WholeReadMax)
	if err != nil {
		return nil, r.damage(ctx, e, err)
	}
	o.Wipe()
	return o.Manifest, nil
}

// stillCurrent returns nil if e is bucket/key's current version, else
// ErrReplaced (another version is current) or ErrNotFound (deleted).
func (r *Repo) stillCurrent(ctx context.Context, e catalog.Entry) error {
	cur, err := r.cat.Get(ctx, e.Bucket, e.Key)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return fmt.Errorf("%s/%s: deleted while being opened: %w", e.Bucket, e.Key, ErrNotFound)
	case err != nil:
		return err
	case cur.ObjectID != e.ObjectID:
		return fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, ErrReplaced)
	}
	return nil
}

// WholeReadMax: OpenObject reads an object stored in at most this many
// bytes with one store request for all of it, instead of three (header,
// manifest and footer, body): small reads are bound by request latency,
// and a provider sees a whole-object read either way (object.Expect).
const WholeReadMax = 512 << 10

// openEntry authenticates e's header, manifest and footer, reading only
// them.
func (r *Repo) openEntry(ctx context.Context, e catalog.Entry) (*object.Object, error) {
	return r.openEntryReading(ctx, e, 0)
}

func (r *Repo) openEntryReading(ctx context.Context, e catalog.Entry, wholeMax int64) (*object.Object, error) {
	b, bk, err := r.cat.BucketKeyOf(ctx, e.Bucket, e.KeyVersion)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("%s/%s: bucket key v%d is not in the catalog", e.Bucket, e.Key, e.KeyVersion)
	}
	if err != nil {
		return nil, err
	}
	dk, err := r.dataKeysFor(ctx, bk)
	if err != nil {
		return nil, err
	}
	pin := e.Pin
	exp := object.Expect{
		Identity: object.Identity{Kind: format.KindData, Repo: r.id, Object: e.ObjectID, Bucket: b.ID,
			KeyVersion: e.KeyVersion, BucketName: e.Bucket, Key: e.Key, ObjectVersion: e.Version},
		Pin: &pin, StoredLen: e.StoredLen, ManifestOff: e.ManifestOff, ManifestLen: e.ManifestLen, WholeMax: wholeMax,
		// keys rewrap moves the catalog's record to a newer bucket key
		// version; the header keeps the version it was written under.
		Rewrapped: true,
	}
	ad := r.dataAD(b.ID, e.KeyVersion, e.ObjectID)
	var srcErr error
	unwrap := func(h format.Header) (secret.Key, keys.AD, error) {
		// The catalog's record is authoritative: a later rewrap supersedes
		// the one in the header.
		k, err := dk.unwrap(ctx, ad, e.Wrapped)
		if err != nil && !errors.Is(err, keys.ErrNotMyKey) {
			srcErr = err
		}
		return k, ad, err
	}
	o, err := object.Open(ctx, r.st, format.StoreName(e.ObjectID), exp, unwrap)
	if srcErr != nil {
		// The key source failed to answer (a key server's refusal): that
		// says nothing of the stored bytes, so it is not reported as
		// damage at the unwrap layer.
		return nil, srcErr
	}
	return o, err
}

// WriteTo writes the whole plaintext to w. Every chunk is authenticated
// before it is written; on damage the error is a *DamageError and w holds
// only authenticated bytes.
func (rd *Reader) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	n, err := rd.obj.WriteTo(ctx, w)
	if err != nil {
		return n, rd.r.damage(ctx, rd.Entry, err)
	}
	return n, nil
}

// Range returns a reader of n bytes at off (n < 0: to the end).
func (rd *Reader) Range(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	rc, err := rd.obj.Range(ctx, off, n)
	if err != nil {
		return nil, err
	}
	return &damageReader{rc: rc, rd: rd, ctx: ctx}, nil
}

// Manifest returns the authenticated manifest.
func (rd *Reader) Manifest() *format.Manifest { return rd.obj.Manifest }

// Close forgets the object's data key and lets the version be removed from
// the store once superseded (retire). Closing again does nothing.
func (rd *Reader) Close() {
	rd.closed.Do(func() {
		rd.obj.Wipe()
		rd.r.unpin(rd.Entry.ObjectID)
	})
}

type damageReader struct {
	rc  io.ReadCloser
	rd  *Reader
	ctx context.Context
}

func (d *damageReader) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	if err != nil && err != io.EOF {
		err = d.rd.r.damage(d.ctx, d.rd.Entry, err)
	}
	return n, err
}
func (d *damageReader) Close() error { return d.rc.Close() }

// damage turns a read failure into a *DamageError naming what the store
// now holds in the object's place, or returns err unchanged when it is not
// about the stored bytes (a store outage, a cancelled context).
func (r *Repo) damage(ctx context.Context, e catalog.Entry, err error) error {
	var de *DamageError
	if errors.As(err, &de) {
		return err
	}
	if !errors.Is(err, format.ErrCorrupt) && !isNotExist(err) && !errors.Is(err, store.ErrInvalidRange) {
		return fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, err)
	}
	st, cerr := r.classify(ctx, e)
	if cerr != nil {
		// The store could not be asked what it holds: could not check.
		return fmt.Errorf("%s/%s: %w (and then: %v)", e.Bucket, e.Key, err, cerr)
	}
	if st == StatusMissing {
		// Holdfast removes a version's object once a newer version or a
		// delete is committed: a read that began before is not damage.
		// Only a catalog that still names this version makes it so.
		cur, gerr := r.cat.Get(ctx, e.Bucket, e.Key)
		switch {
		case errors.Is(gerr, catalog.ErrNotFound):
			return fmt.Errorf("%s/%s: deleted while being read: %w", e.Bucket, e.Key, ErrNotFound)
		case gerr == nil && cur.Version != e.Version:
			return fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, ErrReplaced)
		}
	}
	if st == StatusAltered && format.LayerOf(err) == format.LayerSize && !isNotExist(err) {
		// A short read of an object whose stored length and header are
		// intact: the transfer was cut, the data is not damaged.
		if info, serr := r.st.Stat(ctx, format.StoreName(e.ObjectID)); serr == nil && info.Size == e.StoredLen {
			return fmt.Errorf("%s/%s: reading from the store was cut short: %w", e.Bucket, e.Key, errTransient)
		}
	}
	return &DamageError{Bucket: e.Bucket, Key: e.Key, Name: format.StoreName(e.ObjectID), Status: st, Layer: format.LayerOf(err), Err: err}
}

// classify looks at what the store holds under e's name, without keys: the
// data key commitment in the header identifies which version of which
// object it is. An error means the store could not be asked.
func (r *Repo) classify(ctx context.Context, e catalog.Entry) (Status, error) {
	name := format.StoreName(e.ObjectID)
	info, err := r.st.Stat(ctx, name)
	switch {
	case isNotExist(err):
		return StatusMissing, nil
	case err != nil:
		return "", err
	case info.Size < format.HeaderLen:
		return StatusTruncated, nil
	}
	rc, err := r.st.ReadRange(ctx, name, 0, format.HeaderLen)
	if isNotExist(err) {
		return StatusMissing, nil
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	hb := make([]byte, format.HeaderLen)
	if _, err := io.ReadFull(rc, hb); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return StatusTruncated, nil
		}
		return "", err
	}
	h, err := format.ParseHeader(hb)
	if err != nil {
		return StatusAltered, nil
	}
	if h.Commit == e.Commit {
		if info.Size < e.StoredLen {
			return StatusTruncated, nil
		}
		return StatusAltered, nil
	}
	if he, err := r.cat.HistoryByCommit(ctx, h.Commit); err == nil {
		if he.Bucket == e.Bucket && he.Key == e.Key && he.Version < e.Version {
			return StatusRolledBack, nil
		}
		return StatusSwapped, nil
	}
	if _, err := r.cat.CurrentByCommit(ctx, h.Commit); err == nil {
		return StatusSwapped, nil
	}
	return StatusAltered, nil
}
