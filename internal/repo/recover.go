package repo

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// RecoverOptions configure Recover.
type RecoverOptions struct {
	Home       string
	StorePath  string    // default: the config's, else Home/store
	S3         *S3Config // an S3 store instead
	Passphrase []byte
	Hooks      *Hooks
}

// RecoverReport says what Recover found.
type RecoverReport struct {
	Buckets    int      `json:"buckets"`
	Objects    int      `json:"objects"`
	Bytes      int64    `json:"bytes"`
	Superseded int      `json:"superseded"` // older versions found and removed
	Unknown    []string `json:"unknown"`    // store objects no key of this repository opens
}

// Recover rebuilds a lost catalog from the store with the keyring alone:
// it finds the key journal (objects whose data key opens under a root
// key), unwraps the bucket keys, then opens every other object under them.
// The newest version of each logical object becomes current.
func Recover(ctx context.Context, o RecoverOptions) (*Repo, *RecoverReport, error) {
	cp := filepath.Join(o.Home, CatalogFile)
	if _, err := os.Stat(cp); err == nil {
		return nil, nil, fmt.Errorf("a catalog already exists at %q; move it away to rebuild it: %w", cp, ErrExists)
	}
	kr, err := keyring.Open(filepath.Join(o.Home, KeyringFile), o.Passphrase)
	if err != nil {
		return nil, nil, err
	}
	id := kr.Repo()
	cfg, cerr := loadConfig(o.Home)
	if cerr != nil {
		cfg = Config{Version: 1, Store: StoreConfig{Type: "local", Path: filepath.Join(o.Home, StoreDir)}}
	}
	cfg.Repository = hex.EncodeToString(id[:])
	if o.S3 != nil {
		cfg.Store = StoreConfig{Type: "s3", S3: o.S3}
	} else if o.StorePath != "" {
		p, err := filepath.Abs(o.StorePath)
		if err != nil {
			kr.Close()
			return nil, nil, err
		}
		cfg.Store = StoreConfig{Type: "local", Path: p}
	}
	r, err := openWith(ctx, o.Home, cfg, kr, o.Hooks)
	if err != nil {
		kr.Close()
		return nil, nil, err
	}
	rep, err := r.rebuild(ctx)
	if err != nil {
		r.Close()
		os.Remove(cp)
		os.Remove(cp + "-wal")
		os.Remove(cp + "-shm")
		return nil, nil, err
	}
	if err := saveConfig(o.Home, cfg); err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, rep, nil
}

type found struct {
	name   string
	id     keys.ID
	size   int64
	header format.Header
}

func (r *Repo) readHeader(ctx context.Context, name string) (format.Header, error) {
	rc, err := r.st.ReadRange(ctx, name, 0, format.HeaderLen)
	if err != nil {
		return format.Header{}, err
	}
	defer rc.Close()
	hb := make([]byte, format.HeaderLen)
	if _, err := io.ReadFull(rc, hb); err != nil {
		return format.Header{}, format.Corrupt(format.LayerHeader, "short header")
	}
	return format.ParseHeader(hb)
}

func (r *Repo) rebuild(ctx context.Context) (*RecoverReport, error) {
	rep := &RecoverReport{}
	var objs []found
	markerSeen := false
	var otherMarker string
	if err := r.st.List(ctx, "", func(oi store.ObjectInfo) error {
		if oi.Name == format.MarkerName(r.id) {
			markerSeen = true
			return nil
		}
		id, ok := format.ParseStoreName(oi.Name)
		if !ok {
			if len(oi.Name) > len(format.MarkerPrefix) && oi.Name[:len(format.MarkerPrefix)] == format.MarkerPrefix {
				otherMarker = oi.Name[len(format.MarkerPrefix):]
				return nil
			}
			rep.Unknown = append(rep.Unknown, oi.Name)
			return nil
		}
		objs = append(objs, found{name: oi.Name, id: id, size: oi.Size})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	if !markerSeen {
		if otherMarker != "" {
			return nil, fmt.Errorf("the store holds repository %s, not this keyring's: %w", otherMarker, ErrOtherRepository)
		}
		return nil, fmt.Errorf("the store holds no marker of repository %s", hex.EncodeToString(r.id[:]))
	}
	roots := r.rootVersions()
	var sys []catalog.SystemObject
	markerID := r.id
	mo, err := object.Open(ctx, r.st, format.MarkerName(r.id),
		object.Expect{Identity: object.Identity{Kind: format.KindMarker, Repo: r.id, Object: markerID}},
		r.unwrapSystem(ctx, markerID, roots))
	if err != nil {
		return nil, fmt.Errorf("the repository marker does not open under this keyring: %w", err)
	}
	sys = append(sys, systemRecord(mo, markerID))
	mo.Wipe()

	// Pass 1: system objects (data key under a root key).
	type bkFound struct {
		rec *format.KeyRecord
		key secret.Key
		jid keys.ID
	}
	var records []bkFound
	var data []found
	for _, f := range objs {
		h, err := r.readHeader(ctx, f.name)
		if err != nil {
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		f.header = h
		o, err := object.Open(ctx, r.st, f.name, object.Expect{Identity: object.Identity{Repo: r.id, Object: f.id}, StoredLen: f.size},
			r.unwrapSystem(ctx, f.id, roots))
		if err != nil {
			if errors.Is(err, keys.ErrUnavailable) {
				return nil, err
			}
			data = append(data, f)
			continue
		}
		if o.Manifest.Kind != format.KindJournal {
			o.Wipe()
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		var body writerBuf
		if _, err := o.WriteTo(ctx, &body); err != nil {
			o.Wipe()
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		rec, err := format.ParseKeyRecord(body.b)
		if err != nil || rec.Type != format.RecordBucketKey {
			o.Wipe()
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		sys = append(sys, systemRecord(o, f.id))
		o.Wipe()
		k, err := r.src.Unwrap(ctx, rec.Wrapped, r.bucketAD(rec.Bucket, rec.Wrapped.KEKVersion, rec.KeyVersion))
		if errors.Is(err, keys.ErrUnavailable) {
			return nil, err
		}
		if err != nil {
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		kc, _ := keys.KeyCheck(k)
		if subtle.ConstantTimeCompare(kc, rec.KeyCheck[:]) != 1 {
			k.Wipe()
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		records = append(records, bkFound{rec: rec, key: k, jid: f.id})
	}
	// Pass 2: data objects, under each bucket key in turn.
	type lk struct{ bucket, key string }
	newest := map[lk]catalog.Entry{}
	var older []keys.ID
	used := make([]int, len(records))
	for _, f := range data {
		var o *object.Object
		if f.header.Alg == keys.AlgHKDFGCMCommit {
			for i, b := range records {
				ad := r.dataAD(b.rec.Bucket, b.rec.KeyVersion, f.id)
				unwrap := func(h format.Header) (secret.Key, keys.AD, error) {
					k, err := keys.UnwrapSoftware(b.key, ad, h.Wrapped)
					return k, ad, err
				}
				var err error
				o, err = object.Open(ctx, r.st, f.name, object.Expect{Identity: object.Identity{Kind: format.KindData, Repo: r.id, Object: f.id}, StoredLen: f.size}, unwrap)
				if err == nil {
					used[i]++
					break
				}
				o = nil
			}
		}
		if o == nil {
			rep.Unknown = append(rep.Unknown, f.name)
			continue
		}
		m := o.Manifest
		e := catalog.Entry{Bucket: m.BucketName, Key: m.Key, Version: m.ObjectVersion, ObjectID: f.id, Size: int64(m.Length),
			StoredLen: f.size, ManifestOff: int64(o.Sizes.ManifestOff), ManifestLen: int64(o.Sizes.ManifestLen), Pin: o.Pin,
			Commit: o.Header.Commit, KeyVersion: m.KeyVersion, Wrapped: o.Header.Wrapped, Modified: time.Unix(0, int64(m.Modified)),
			ContentType: m.ContentType, Segments: len(m.Segments)}
		if len(m.Meta) > 0 {
			e.Meta = map[string]string{}
			for _, p := range m.Meta {
				e.Meta[p.Name] = p.Value
			}
		}
		o.Wipe()
		k := lk{e.Bucket, e.Key}
		if cur, ok := newest[k]; ok {
			switch {
			case cur.Version > e.Version:
				older = append(older, e.ObjectID)
				continue
			case cur.Version < e.Version:
				older = append(older, cur.ObjectID)
			default:
				// One version twice: keep the first found, touch neither.
				rep.Unknown = append(rep.Unknown, f.name)
				continue
			}
		}
		newest[k] = e
	}

	// One record per bucket key version. Where an interrupted race left
	// two, keep the one whose key opens objects; the other's key is wiped.
	chosen := map[bkRef]int{}
	for i, b := range records {
		ref := bkRef{b.rec.Bucket, b.rec.KeyVersion}
		if j, ok := chosen[ref]; !ok || used[i] > used[j] {
			chosen[ref] = i
		}
	}
	buckets := map[keys.ID]catalog.Bucket{}
	var bkeys []catalog.BucketKey
	for i, b := range records {
		ref := bkRef{b.rec.Bucket, b.rec.KeyVersion}
		if chosen[ref] != i {
			b.key.Wipe()
			continue
		}
		if _, ok := buckets[b.rec.Bucket]; !ok {
			buckets[b.rec.Bucket] = catalog.Bucket{Name: b.rec.BucketName, ID: b.rec.Bucket, Created: time.Unix(0, int64(b.rec.Created))}
		}
		bkeys = append(bkeys, catalog.BucketKey{BucketID: b.rec.Bucket, Version: b.rec.KeyVersion, Wrapped: b.rec.Wrapped,
			KeyCheck: append([]byte(nil), b.rec.KeyCheck[:]...), Created: time.Unix(0, int64(b.rec.Created)), JournalID: b.jid, State: 1})
		r.bkeys[ref] = b.key
	}
	var bl []catalog.Bucket
	for _, b := range buckets {
		bl = append(bl, b)
	}
	var entries []catalog.Entry
	for _, e := range newest {
		entries = append(entries, e)
		rep.Bytes += e.Size
	}
	if err := r.cat.SetMeta(ctx, "repo-id", r.id[:]); err != nil {
		return nil, err
	}
	if err := r.cat.Restore(ctx, bl, bkeys, entries, sys); err != nil {
		return nil, err
	}
	for _, id := range older {
		if err := r.st.Delete(ctx, format.StoreName(id)); err == nil {
			rep.Superseded++
		}
	}
	rep.Buckets, rep.Objects = len(bl), len(entries)
	return rep, nil
}

func systemRecord(o *object.Object, id keys.ID) catalog.SystemObject {
	return catalog.SystemObject{ObjectID: id, Kind: int(o.Manifest.Kind), Pin: o.Pin, StoredLen: int64(o.Sizes.Stored),
		ManifestOff: int64(o.Sizes.ManifestOff), ManifestLen: int64(o.Sizes.ManifestLen), Created: time.Unix(0, int64(o.Manifest.Modified))}
}

type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) {
	if len(w.b)+len(p) > 1<<20 {
		return 0, errors.New("system object larger than 1 MiB")
	}
	w.b = append(w.b, p...)
	return len(p), nil
}
