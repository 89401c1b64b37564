package repo

import (
	"context"
	"errors"
	"io"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
)

// Finding is verify's verdict on one object.
type Finding struct {
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
	Kind   string `json:"kind"`
	Name   string `json:"name"` // store name
	Status Status `json:"status"`
	Layer  string `json:"layer,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// VerifyOptions tune verify.
type VerifyOptions struct {
	// Quick checks listing, lengths, headers, manifests and footers (and
	// their pins) but does not decrypt bodies.
	Quick bool
	// Progress, if set, is called after each object with the bytes checked.
	Progress func(objects int, bytes int64)
}

// VerifySummary counts verify's findings.
type VerifySummary struct {
	Checked int            `json:"checked"`
	Bytes   int64          `json:"bytes"`
	Counts  map[Status]int `json:"counts"`
	Cleaned int            `json:"cleaned"` // leftovers of this repository's own interrupted writes removed
}

// Damaged reports whether verify found anything but ok and pending.
func (s VerifySummary) Damaged() bool {
	for st, n := range s.Counts {
		if n > 0 && st != StatusOK && st != StatusPending {
			return true
		}
	}
	return false
}

// Verify checks every object the catalog knows against the store, and
// every object the store holds against the catalog. It reports each
// finding through report; an error means it could not check.
func (r *Repo) Verify(ctx context.Context, o VerifyOptions, report func(Finding)) (VerifySummary, error) {
	sum := VerifySummary{Counts: map[Status]int{}}
	add := func(f Finding) {
		sum.Counts[f.Status]++
		if f.Status != StatusOK {
			report(f)
		}
	}
	// Our own leftovers first, so they are not reported as unknown.
	cleaned, err := r.Cleanup(ctx)
	if err != nil {
		return sum, err
	}
	sum.Cleaned = cleaned

	// Read the catalog before listing the store, so a write that commits
	// while verify runs is never mistaken for a missing object.
	sys, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return sum, err
	}
	var entries []catalog.Entry
	if err := r.cat.All(ctx, func(e catalog.Entry) error {
		entries = append(entries, e)
		return nil
	}); err != nil {
		return sum, err
	}
	listed := map[string]int64{}
	if err := r.st.List(ctx, "", func(oi store.ObjectInfo) error {
		listed[oi.Name] = oi.Size
		return nil
	}); err != nil {
		return sum, err
	}

	// System objects: marker and key journal.
	for _, so := range sys {
		name := format.StoreName(so.ObjectID)
		if so.Kind == int(format.KindMarker) {
			name = format.MarkerName(r.id)
		}
		f := Finding{Kind: format.Kind(so.Kind).String(), Name: name, Status: StatusOK}
		delete(listed, name)
		if err := r.checkSystem(ctx, so, name); err != nil {
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			st, cerr := r.classifySystem(ctx, so, name, err)
			if cerr != nil {
				return sum, cerr // could not check
			}
			f.Status, f.Layer, f.Detail = st, string(format.LayerOf(err)), err.Error()
		}
		sum.Checked++
		add(f)
	}

	// Every current catalog entry.
	for _, e := range entries {
		name := format.StoreName(e.ObjectID)
		f := Finding{Bucket: e.Bucket, Key: e.Key, Kind: format.KindData.String(), Name: name, Status: StatusOK}
		_, inList := listed[name]
		delete(listed, name)
		var err error
		if !inList {
			err = store.ErrNotExist
		} else {
			err = r.checkEntry(ctx, e, o.Quick)
		}
		if err != nil {
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			// A concurrent writer may have replaced or removed the entry
			// since the catalog was read: then its old object is gone by
			// our own hand, not the provider's.
			if now, gerr := r.cat.Get(ctx, e.Bucket, e.Key); errors.Is(gerr, catalog.ErrNotFound) || (gerr == nil && now.ObjectID != e.ObjectID) {
				continue
			}
			var de *DamageError
			derr := r.damage(ctx, e, err)
			if !errors.As(derr, &de) {
				return sum, derr // could not check
			}
			f.Status, f.Layer, f.Detail = de.Status, string(de.Layer), err.Error()
		}
		sum.Checked++
		sum.Bytes += e.StoredLen
		add(f)
		if o.Progress != nil {
			o.Progress(sum.Checked, sum.Bytes)
		}
	}

	// Multipart uploads in progress are pending, whether or not the store
	// shows their object yet.
	ufs, err := r.uploadFindings(ctx, listed)
	if err != nil {
		return sum, err
	}
	for _, f := range ufs {
		sum.Checked++
		add(f)
	}

	// What is left in the listing was not written by this catalog.
	for name := range listed {
		f := Finding{Kind: "unknown", Name: name, Status: StatusUnknown}
		if id, ok := format.ParseStoreName(name); ok {
			switch k, err := r.cat.Lookup(ctx, id); {
			case err != nil:
				return sum, err
			case k == catalog.KnownPending:
				f.Status = StatusPending
			case k == catalog.KnownGarbage:
				// Our own superseded version whose deletion was interrupted.
				if err := r.st.Delete(ctx, name); err == nil || isNotExist(err) {
					_ = r.cat.ForgetGarbage(ctx, id)
					sum.Cleaned++
					continue
				}
			case k == catalog.KnownHistory:
				// A concurrent writer may have just deleted it (it was in
				// the listing, then left garbage): gone now means ours.
				if _, err := r.st.Stat(ctx, name); isNotExist(err) {
					continue
				}
				// An old version that was deleted from the store once and is
				// back: the provider kept it and put it back. It can never be
				// served (the catalog points elsewhere); report and remove it.
				if he, err := r.cat.HistoryByObjectID(ctx, id); err == nil {
					f.Bucket, f.Key = he.Bucket, he.Key
				}
				f.Detail = "an old version, deleted before, put back by the provider; removed"
				_ = r.st.Delete(ctx, name)
			case k == catalog.KnownCurrent || k == catalog.KnownSystem:
				// Written while verify listed the store.
				continue
			}
		}
		sum.Checked++
		add(f)
	}
	return sum, nil
}

func (r *Repo) checkEntry(ctx context.Context, e catalog.Entry, quick bool) error {
	o, err := r.openEntry(ctx, e)
	if err != nil {
		return err
	}
	defer o.Wipe()
	if quick {
		return nil
	}
	_, err = o.WriteTo(ctx, io.Discard)
	return err
}

func (r *Repo) checkSystem(ctx context.Context, so catalog.SystemObject, name string) error {
	pin := so.Pin
	exp := object.Expect{Identity: object.Identity{Kind: format.Kind(so.Kind), Repo: r.id, Object: so.ObjectID},
		Pin: &pin, StoredLen: so.StoredLen, ManifestOff: so.ManifestOff, ManifestLen: so.ManifestLen}
	o, err := object.Open(ctx, r.st, name, exp, r.unwrapSystem(ctx, so.ObjectID, r.rootVersions()))
	if err != nil {
		return err
	}
	defer o.Wipe()
	if format.Kind(so.Kind) == format.KindBackup {
		// A backup may be large: read it through, keeping only its head.
		sink := &backupSink{h: format.NewBackupHash()}
		if _, err := o.WriteTo(ctx, sink); err != nil {
			return err
		}
		_, err := sink.parseHead(r.id)
		return err
	}
	var body writerBuf
	if _, err := o.WriteTo(ctx, &body); err != nil {
		return err
	}
	switch format.Kind(so.Kind) {
	case format.KindMarker:
		m, err := format.ParseMarker(body.b)
		if err != nil {
			return err
		}
		if m.Repo != r.id {
			return format.Corrupt(format.LayerIdentity, "marker names repository %x", m.Repo[:])
		}
	case format.KindJournal:
		if _, err := format.ParseKeyRecord(body.b); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) classifySystem(ctx context.Context, so catalog.SystemObject, name string, err error) (Status, error) {
	if !errors.Is(err, format.ErrCorrupt) && !isNotExist(err) && !errors.Is(err, store.ErrInvalidRange) {
		return "", err
	}
	info, serr := r.st.Stat(ctx, name)
	switch {
	case isNotExist(serr):
		return StatusMissing, nil
	case serr != nil:
		return "", serr
	case info.Size < so.StoredLen:
		return StatusTruncated, nil
	}
	var pe *object.PinError
	if errors.As(err, &pe) {
		return StatusSwapped, nil
	}
	return StatusAltered, nil
}

// Cleanup removes what this repository's interrupted writes left behind:
// store objects of pending writes whose process is gone, and superseded or
// deleted versions not yet removed from the store. It returns how many
// store objects it removed. A store object it cannot delete now is left
// for the next run (it is harmless garbage); only catalog errors fail it.
func (r *Repo) Cleanup(ctx context.Context) (int, error) {
	n := 0
	pend, err := r.cat.ListPending(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range pend {
		if ownerAlive(p.Owner) {
			continue
		}
		if p.Kind == int(format.KindMarker) {
			// The marker is written by init only; keep whatever is there.
			if err := r.cat.AbortPut(ctx, p.ObjectID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
				return n, err
			}
			continue
		}
		err := r.st.Delete(ctx, format.StoreName(p.ObjectID))
		switch {
		case err == nil:
			n++
		case !isNotExist(err):
			continue // try again next time; the pending record stays
		}
		if err := r.cat.AbortPut(ctx, p.ObjectID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return n, err
		}
	}
	// Multipart uploads past their expiry are aborted (one that cannot
	// reach the store now stays recorded, and is tried again next time).
	expired, err := r.expireUploads(ctx)
	if err != nil {
		return n, err
	}
	n += expired
	// Invisible leftovers of killed uploads (S3 multipart parts), except
	// those of writes whose process still runs.
	// A writer records its pending write before it starts an upload, so
	// reading the pending list afresh for each upload found never aborts a
	// live writer's upload.
	if j, ok := r.st.(store.Janitor); ok {
		inProgress := func(name string) bool {
			id, ok := format.ParseStoreName(name)
			if !ok {
				return true // not ours to judge
			}
			now, err := r.cat.ListPending(ctx)
			if err != nil {
				return true
			}
			for _, p := range now {
				if p.ObjectID == id {
					return ownerAlive(p.Owner)
				}
			}
			return false
		}
		if a, err := j.AbortIncomplete(ctx, inProgress); err == nil {
			n += a
		}
	}
	garbage, err := r.cat.Garbage(ctx)
	if err != nil {
		return n, err
	}
	for _, id := range garbage {
		err := r.st.Delete(ctx, format.StoreName(id))
		switch {
		case err == nil:
			n++
		case !isNotExist(err):
			continue
		}
		if err := r.cat.ForgetGarbage(ctx, id); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return n, err
		}
	}
	return n, nil
}
