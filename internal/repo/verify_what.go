package repo

// What verify says a system object is. A store name is sixteen random
// bytes in hex; a finding about a catalog backup, a key journal entry, an
// audit checkpoint or the marker also says which one it is (Finding.What),
// from what only this repository can vouch for: the catalog, for the
// objects it lists, and for one it does not list, the object's own
// contents once they authenticate under the root keys.

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
)

// systemWhat says what so, a system object the catalog lists, is, from
// the catalog alone (the object itself may be the damaged one).
func (r *Repo) systemWhat(ctx context.Context, so catalog.SystemObject) string {
	when := stamp(so.Created)
	switch format.Kind(so.Kind) {
	case format.KindMarker:
		return "repository marker"
	case format.KindBackup:
		if last, err := r.cat.LastBackup(ctx); err == nil && last.ObjectID == so.ObjectID {
			return fmt.Sprintf("catalog backup %d of %s", last.Sequence, when)
		}
		return "catalog backup of " + when
	case format.KindCheckpoint:
		return "audit checkpoint of " + when
	case format.KindJournal:
		names := map[keys.ID]string{}
		if bs, err := r.cat.Buckets(ctx); err == nil {
			for _, b := range bs {
				names[b.ID] = b.Name
			}
		}
		bucket := func(id keys.ID) string {
			if n, ok := names[id]; ok {
				return "bucket " + n
			}
			return fmt.Sprintf("bucket id %x", id[:])
		}
		if bks, err := r.cat.AllBucketKeys(ctx); err == nil {
			for _, k := range bks {
				if k.JournalID == so.ObjectID {
					return fmt.Sprintf("key journal entry of %s: %s key v%d, under root key v%d", when, bucket(k.BucketID), k.Version, k.Wrapped.KEKVersion)
				}
			}
		}
		if kbs, err := r.cat.KeyBatches(ctx); err == nil {
			for _, kb := range kbs {
				if kb.JournalID == so.ObjectID {
					return fmt.Sprintf("key journal entry of %s: %d data keys rewrapped under %s key v%d", when, kb.Records, bucket(kb.BucketID), kb.KeyVersion)
				}
			}
		}
		return "key journal entry of " + when
	}
	return fmt.Sprintf("%s of %s", format.Kind(so.Kind), when)
}

// stranger is a store object the catalog does not list that opened as a
// system object of this repository.
type stranger struct {
	kind   format.Kind
	what   string
	sys    catalog.SystemObject  // its record, as the catalog would keep it
	backup *format.CatalogBackup // a catalog backup's head (read whole and authenticated)
}

// identify opens a store object the catalog does not list under the root
// keys, as recovery does (classifyStored). ok is true only for a system
// object sealed for this repository whose whole contents authenticate and
// parse; anything else — a data object, another repository's, damaged, or
// one the store would not serve — is not identified, and verify reports it
// as it did before (unknown).
func (r *Repo) identify(ctx context.Context, name string, id keys.ID, size int64) (s stranger, ok bool) {
	h, err := r.readHeader(ctx, name)
	if err != nil {
		return s, false
	}
	unwrap := r.unwrapSystem(ctx, id, r.rootVersions())
	k, _, err := unwrap(h)
	if err != nil {
		return s, false // not a system object of ours (keys.ErrNotMyKey), or the key source is down
	}
	k.Wipe()
	o, err := object.Open(ctx, r.st, name, object.Expect{Identity: object.Identity{Repo: r.id, Object: id}, StoredLen: size}, unwrap)
	if err != nil {
		return s, false
	}
	defer o.Wipe()
	s = stranger{kind: o.Manifest.Kind, sys: systemRecord(o, id)}
	when := stamp(time.Unix(0, int64(o.Manifest.Modified)))
	switch o.Manifest.Kind {
	case format.KindBackup:
		sink := &backupSink{h: format.NewBackupHash()}
		if _, err := o.WriteTo(ctx, sink); err != nil {
			return s, false
		}
		head, err := sink.parseHead(r.id)
		if err != nil {
			return s, false
		}
		s.backup = head
		s.what = fmt.Sprintf("catalog backup %d of %s", head.Sequence, stamp(time.Unix(0, int64(head.Created))))
	case format.KindJournal:
		var body writerBuf
		if _, err := o.WriteTo(ctx, &body); err != nil {
			return s, false
		}
		recs, err := format.ParseJournal(body.b)
		if err != nil {
			return s, false
		}
		if recs[0].Type == format.RecordDataKey {
			s.what = fmt.Sprintf("key journal entry of %s: %d data keys rewrapped", when, len(recs))
		} else {
			s.what = fmt.Sprintf("key journal entry of %s: bucket %s key v%d", when, recs[0].BucketName, recs[0].KeyVersion)
		}
	case format.KindCheckpoint:
		var body writerBuf
		if _, err := o.WriteTo(ctx, &body); err != nil {
			return s, false
		}
		if _, err := r.parseAuditCheckpoint(body.b); err != nil {
			return s, false
		}
		s.what = "audit checkpoint of " + when
	default:
		return s, false
	}
	return s, true
}
