package repo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// Catalog backups (docs/design.md §9, docs/format.md "Catalog backup").
//
// A backup is written in this order, each step durable before the next:
//
//  1. catalog: a pending record of the backup's object id;
//  2. store: the backup (sequence n, previous = the hash of n-1), streamed
//     from one consistent snapshot of the catalog;
//  3. catalog: the backup committed as a system object, and (n, hash) as
//     the catalog's last backup, in one transaction that refuses a
//     sequence the catalog already has (two processes backing up at once:
//     the loser deletes its object);
//  4. keyring: (n, hash, time) as the freshness record;
//  5. store: backups beyond the newest Keep retired and deleted.
//
// A crash before 3 leaves a pending orphan that the next run deletes; if
// the home is lost first, recovery may find that orphan: it is a complete,
// authentic backup whose previous hash is the one the keyring records, so
// it is accepted (see chooseBackup) and it is no staler than what the
// keyring knows. A crash between 3 and 4 leaves the keyring one or more
// backups behind the store: the next backup still links to n (the catalog
// records it), and recovery accepts a newer backup when the chain of
// previous hashes from it reaches the keyring's record through backups the
// store holds. That is why old backups are deleted only after step 4 has
// succeeded. A newer backup the keyring has not recorded is never needed
// for a refusal to be right: refusal only happens when every backup found
// is older than, or does not link to, the keyring's record.

// Defaults of BackupConfig.
var DefaultBackupConfig = BackupConfig{EveryChanges: 1000, EveryMinutes: 15, Keep: 3}

// BackupConfig says when a command that changed the catalog writes a
// catalog backup as it finishes (MaybeBackup): after EveryChanges
// committed changes since the last backup, or when the last backup is
// EveryMinutes old and anything changed since. Zero turns a trigger off.
// Keep is how many backups stay in the store (at least 1; 0 means 3).
type BackupConfig struct {
	EveryChanges int `json:"every_changes"`
	EveryMinutes int `json:"every_minutes"`
	Keep         int `json:"keep"`
}

func (r *Repo) backupConfig() BackupConfig {
	c := DefaultBackupConfig
	if r.cfg.Backup != nil {
		c = *r.cfg.Backup
	}
	if c.Keep < 1 {
		c.Keep = DefaultBackupConfig.Keep
	}
	return c
}

// BackupResult says what Backup wrote.
type BackupResult struct {
	Sequence uint64    `json:"sequence"`
	Hash     string    `json:"hash"`
	Created  time.Time `json:"created"`
	Buckets  int       `json:"buckets"`
	Objects  int64     `json:"objects"`
	Stored   int64     `json:"stored_size"`
	Object   string    `json:"object"`  // its store name
	Removed  int       `json:"removed"` // older backups deleted
	// StoreRecorded: the store's members (a spread store) hold the
	// freshness record of this backup too.
	StoreRecorded bool `json:"store_recorded,omitempty"`
}

// ErrFreshnessNotRecorded: the backup was stored and committed, but the
// keyring could not record it. The backup is valid; recovery accepts it
// as long as the store keeps the backups between it and the keyring's
// record, and the next backup tries the keyring again.
var ErrFreshnessNotRecorded = errors.New("the keyring could not record the catalog backup")

// ErrStoreFreshnessNotRecorded: the backup was stored and committed, but
// the store's members (a spread store, store.FreshnessKeeper) could not
// record it. The backup is valid and the keyring's record (when written)
// vouches for it; the next backup tries the members again.
var ErrStoreFreshnessNotRecorded = errors.New("the store's members could not record the catalog backup")

func unixNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// Backup writes a catalog backup to the store, records it in the keyring
// and deletes backups beyond the newest Keep. With ErrFreshnessNotRecorded
// it also returns the result: the backup exists.
func (r *Repo) Backup(ctx context.Context) (*BackupResult, error) {
	return r.backup(ctx, true)
}

func (r *Repo) backup(ctx context.Context, retry bool) (*BackupResult, error) {
	// The new backup follows the newer of the catalog's last backup and
	// the keyring's record (the keyring's when they agree on the number):
	// the sequence never repeats, and the chain reaches what the keyring
	// knows.
	var seq uint64
	var prev [32]byte
	switch last, err := r.cat.LastBackup(ctx); {
	case err == nil:
		seq, prev = last.Sequence, last.Hash
	case !errors.Is(err, catalog.ErrNotFound):
		return nil, err
	}
	if f, ok := r.kr.Freshness(); ok && f.Sequence >= seq {
		seq, prev = f.Sequence, f.Hash
	}
	seq++
	id, err := newID()
	if err != nil {
		return nil, err
	}
	name := format.StoreName(id)
	created := r.hooks.now()
	res := &BackupResult{Sequence: seq, Created: created.UTC(), Object: name}
	if err := r.cat.BeginPut(ctx, catalog.Pending{ObjectID: id, Kind: catalog.KindBackup, Owner: ownerToken(), Started: created}); err != nil {
		return nil, err
	}
	head := &format.CatalogBackup{Repo: r.id, Sequence: seq, Created: unixNanos(created), Previous: prev}
	var (
		sealed  *object.Result
		hash    [32]byte
		changes uint64
	)
	err = r.cat.View(ctx, func(s catalog.Snapshot) error {
		var err error
		if changes, err = s.Changes(); err != nil {
			return err
		}
		sys, err := backupHead(s, head)
		if err != nil {
			return err
		}
		if res.Objects, err = s.Count(); err != nil {
			return err
		}
		res.Buckets = len(head.Buckets)
		sealed, hash, err = r.storeBackup(ctx, name, id, head, uint64(res.Objects), sys, s)
		return err
	})
	if err != nil {
		r.discard(ctx, id, name)
		return nil, fmt.Errorf("catalog backup %d: %w", seq, err)
	}
	r.hooks.at("backup:stored")
	res.Hash, res.Stored = hex.EncodeToString(hash[:]), int64(sealed.Sizes.Stored)
	so := catalog.SystemObject{ObjectID: id, Kind: catalog.KindBackup, Pin: sealed.Pin, StoredLen: int64(sealed.Sizes.Stored),
		ManifestOff: int64(sealed.Sizes.ManifestOff), ManifestLen: int64(sealed.Sizes.ManifestLen), Created: created,
		RootVersion: sealed.Manifest.KeyVersion}
	if err := r.cat.CommitBackup(ctx, so, catalog.BackupState{Sequence: seq, Hash: hash, ObjectID: id, Created: created, Changes: changes}); err != nil {
		r.discard(ctx, id, name)
		if errors.Is(err, catalog.ErrKeyRetired) && retry {
			// Sealed under a root key version another process retired
			// meanwhile: read the key source again and seal anew.
			if rerr := r.reloadRootKeys(); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
			return r.backup(ctx, false)
		}
		return nil, err
	}
	r.hooks.at("backup:committed")
	f := keyring.Freshness{Sequence: seq, Hash: hash, Time: created}
	kerr := r.recordFreshness(f)
	// The store's members keep a copy of the record too (a spread store):
	// it is what recovery checks when the keyring lost its record.
	serr := r.recordStoreFreshness(ctx, f)
	res.StoreRecorded = serr == nil && r.keepsFreshness()
	if kerr != nil {
		err := fmt.Errorf("catalog backup %d stored as %s: %w: %w", seq, name, ErrFreshnessNotRecorded, kerr)
		if serr != nil {
			err = fmt.Errorf("%w; and %w: %w", err, ErrStoreFreshnessNotRecorded, serr)
		}
		return res, err
	}
	r.hooks.at("backup:recorded")
	if serr != nil {
		// Old backups stay until both records are written: the chain from
		// the newest backup down to the store's older record stays whole.
		return res, fmt.Errorf("catalog backup %d stored as %s and recorded in the keyring: %w: %w", seq, name, ErrStoreFreshnessNotRecorded, serr)
	}
	res.Removed = r.retireBackups(ctx, id)
	return res, nil
}

// backupHead fills in the buckets and bucket keys of head from s and
// returns the system objects the backup lists (journal entries and the
// marker; backups do not list backups).
func backupHead(s catalog.Snapshot, head *format.CatalogBackup) ([]format.BackupSystem, error) {
	bs, err := s.Buckets()
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		head.Buckets = append(head.Buckets, format.BackupBucket{Name: b.Name, ID: b.ID, Created: unixNanos(b.Created)})
	}
	ks, err := s.BucketKeys()
	if err != nil {
		return nil, err
	}
	for _, k := range ks {
		bk := format.BackupKey{Bucket: k.BucketID, Version: k.Version, Wrapped: k.Wrapped, Created: unixNanos(k.Created),
			State: uint8(k.State), Journal: k.JournalID}
		if len(k.KeyCheck) != len(bk.KeyCheck) {
			return nil, fmt.Errorf("bucket key %x v%d has a %d-byte key check", k.BucketID[:], k.Version, len(k.KeyCheck))
		}
		copy(bk.KeyCheck[:], k.KeyCheck)
		head.Keys = append(head.Keys, bk)
	}
	sos, err := s.SystemObjects()
	if err != nil {
		return nil, err
	}
	var sys []format.BackupSystem
	for _, so := range sos {
		if so.Kind != catalog.KindJournal && so.Kind != catalog.KindMarker {
			continue
		}
		sys = append(sys, format.BackupSystem{Object: so.ObjectID, Kind: format.Kind(so.Kind), Pin: so.Pin,
			Stored: uint64(so.StoredLen), ManifestOff: uint64(so.ManifestOff), ManifestLen: uint64(so.ManifestLen),
			Created: unixNanos(so.Created)})
	}
	return sys, nil
}

func backupObject(e catalog.Entry) format.BackupObject {
	o := format.BackupObject{Bucket: e.Bucket, Key: e.Key, Version: e.Version, Object: e.ObjectID, Size: uint64(e.Size),
		Stored: uint64(e.StoredLen), ManifestOff: uint64(e.ManifestOff), ManifestLen: uint64(e.ManifestLen), Pin: e.Pin,
		Commit: e.Commit, KeyVersion: e.KeyVersion, Wrapped: e.Wrapped, Modified: unixNanos(e.Modified),
		ContentType: e.ContentType, Segments: uint32(e.Segments)}
	for k, v := range e.Meta {
		o.Meta = append(o.Meta, format.MetaPair{Name: k, Value: v})
	}
	sort.Slice(o.Meta, func(i, j int) bool { return o.Meta[i].Name < o.Meta[j].Name })
	return o
}

// storeBackup encodes the backup from s straight into the sealer and the
// store: memory stays small however large the catalog.
func (r *Repo) storeBackup(ctx context.Context, name string, id keys.ID, head *format.CatalogBackup, objects uint64,
	sys []format.BackupSystem, s catalog.Snapshot) (*object.Result, [32]byte, error) {
	var hash [32]byte
	pr, pw := io.Pipe()
	encoded := make(chan error, 1)
	go func() {
		err := func() error {
			enc, err := format.NewBackupEncoder(pw, head, objects)
			if err != nil {
				return err
			}
			if err := s.All(func(e catalog.Entry) error {
				o := backupObject(e)
				return enc.Object(&o)
			}); err != nil {
				return err
			}
			nres, err := s.ReservationCount()
			if err != nil {
				return err
			}
			if err := enc.System(sys, nres); err != nil {
				return err
			}
			if err := s.Reservations(func(c catalog.Reservation) error {
				return enc.Reservation(&format.BackupReservation{Bucket: c.Bucket, Key: c.Key, Version: c.Version})
			}); err != nil {
				return err
			}
			hash, err = enc.Finish()
			return err
		}()
		pw.CloseWithError(err)
		encoded <- err
	}()
	root := r.src.Primary()
	wrap := func(dek secret.Key) (keys.Alg, []byte, error) {
		w, err := r.src.Wrap(ctx, root, r.systemAD(root, id), dek)
		if err != nil {
			return 0, nil, err
		}
		return w.Alg, w.Data, nil
	}
	ident := object.Identity{Kind: format.KindBackup, Repo: r.id, Object: id, KeyVersion: root, ObjectVersion: 1}
	sl, err := object.NewSealer(pr, ident, object.Attrs{Modified: time.Unix(0, int64(head.Created))}, wrap, object.SealOptions{})
	if err == nil {
		err = r.st.Put(ctx, name, sl, store.UnknownSize)
		sl.Close()
	}
	// Unblock the encoder if the store stopped reading early.
	pr.CloseWithError(errors.New("catalog backup: upload ended"))
	if eerr := <-encoded; eerr != nil && err == nil {
		err = eerr
	}
	if err != nil {
		return nil, hash, err
	}
	return sl.Result(), hash, nil
}

// recordFreshness moves the keyring's freshness record forward to f. A
// keyring that another process changed meanwhile is read again first; one
// that already records a newer backup (another process backed up since)
// is left as it is.
func (r *Repo) recordFreshness(f keyring.Freshness) error {
	err := r.kr.SetFreshness(f)
	if errors.Is(err, keyring.ErrModified) {
		if err = r.kr.Reload(); err == nil {
			err = r.kr.SetFreshness(f)
		}
	}
	if errors.Is(err, keyring.ErrFreshnessRollback) {
		if cur, ok := r.kr.Freshness(); ok && cur.Sequence > f.Sequence {
			return nil
		}
	}
	return err
}

// retireBackups deletes every backup but the newest Keep (by creation;
// keep is never the just-written one). Failures are left for Cleanup.
func (r *Repo) retireBackups(ctx context.Context, keep keys.ID) int {
	sos, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return 0
	}
	var bs []catalog.SystemObject
	for _, so := range sos {
		if so.Kind == catalog.KindBackup {
			bs = append(bs, so)
		}
	}
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].Created.After(bs[j].Created) })
	n := r.backupConfig().Keep
	removed := 0
	for i, so := range bs {
		if i < n || so.ObjectID == keep {
			continue
		}
		if err := r.cat.RetireSystem(ctx, so.ObjectID); err != nil {
			continue
		}
		if err := r.st.Delete(ctx, format.StoreName(so.ObjectID)); err == nil || isNotExist(err) {
			_ = r.cat.ForgetGarbage(ctx, so.ObjectID)
			removed++
		}
	}
	return removed
}

// MaybeBackup writes a catalog backup if the policy (BackupConfig) asks for
// one: commands that change the catalog call it as they finish. It
// returns nil, nil when no backup was due, or when another process wrote
// one meanwhile.
func (r *Repo) MaybeBackup(ctx context.Context) (*BackupResult, error) {
	pol := r.backupConfig()
	changes, err := r.cat.Changes(ctx)
	if err != nil {
		return nil, err
	}
	last, err := r.cat.LastBackup(ctx)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		// A repository made before catalog backups, or whose last one
		// failed: back up at the first change.
		if changes == 0 {
			return nil, nil
		}
	case err != nil:
		return nil, err
	default:
		since := changes - min(changes, last.Changes)
		due := since > 0 && (pol.EveryChanges > 0 && since >= uint64(pol.EveryChanges) ||
			pol.EveryMinutes > 0 && r.hooks.now().Sub(last.Created) >= time.Duration(pol.EveryMinutes)*time.Minute)
		if !due {
			return nil, nil
		}
	}
	res, err := r.Backup(ctx)
	if errors.Is(err, catalog.ErrStaleVersion) {
		return nil, nil
	}
	return res, err
}

type autoBackup struct {
	ctx     context.Context
	changes uint64
	report  func(*BackupResult, error)
}

// AutoBackup makes Close call MaybeBackup if the catalog changed since
// AutoBackup was called, so that every command that changes the catalog
// backs it up by the policy as it finishes, whatever it did. report, if
// set, is told the outcome when a backup was written or failed. Nothing is
// attempted once ctx is done.
func (r *Repo) AutoBackup(ctx context.Context, report func(*BackupResult, error)) error {
	n, err := r.cat.Changes(ctx)
	if err != nil {
		return err
	}
	r.auto = &autoBackup{ctx: ctx, changes: n, report: report}
	return nil
}

// Finish writes the catalog backup the command owes (AutoBackup), if
// any, so that what it used to is counted before the Repo is closed;
// Close does it too, and a second call does nothing.
func (r *Repo) Finish() { r.runAutoBackup() }

func (r *Repo) runAutoBackup() {
	a := r.auto
	r.auto = nil
	if a == nil || a.ctx.Err() != nil || r.cat == nil {
		return
	}
	if n, err := r.cat.Changes(a.ctx); err != nil || n == a.changes {
		return
	}
	res, err := r.MaybeBackup(a.ctx)
	if a.report != nil && (res != nil || err != nil) {
		a.report(res, err)
	}
}

// The store's freshness record (docs/format.md "Store freshness record",
// design.md §9): a store made of independent members (a spread store,
// store.FreshnessKeeper) keeps a copy of the keyring's freshness record
// on every member, so that recovery can still tell a rolled-back store
// when the keyring lost its record or is an older copy. The store keeps
// it opaque; the repository seals it with a key of its own, derived
// from a root key, so that it trusts no store to authenticate it.
const (
	// storeFreshnessPurpose names the sealing key (keyring.DeriveKey).
	storeFreshnessPurpose = "store-freshness"
	storeFreshnessVersion = 1
	// storeFreshnessLen: version, repo id, key version, sequence, hash,
	// time, HMAC.
	storeFreshnessLen      = 1 + 16 + 4 + 8 + 32 + 8 + 32
	storeFreshnessMACLabel = "holdfast/v1/store-freshness"
)

var (
	// errNoStoreFreshness: the store keeps no freshness record of its own
	// (a single store: its one provider is what the record guards against).
	errNoStoreFreshness = errors.New("the store keeps no freshness record")
	// errStoreFreshnessInvalid: the members' record is not a valid
	// record of this repository, or fails authentication.
	errStoreFreshnessInvalid = errors.New("the store members' freshness record is not valid")
)

// keepsFreshness reports whether the store keeps a freshness record.
func (r *Repo) keepsFreshness() bool {
	_, ok := r.st.(store.FreshnessKeeper)
	return ok
}

// storeFreshnessKey derives the key that seals the store's freshness
// record from root key version ver. It needs the root key in software,
// as the spread store's own key does.
func (r *Repo) storeFreshnessKey(ver uint32) (secret.Key, error) {
	kr, ok := r.kr.(*keyring.Keyring)
	if !ok {
		return secret.Key{}, errors.New("the store's freshness record is sealed under a key derived from a root key in software (a keyring file)")
	}
	return kr.DeriveKey(ver, storeFreshnessPurpose)
}

// sealStoreFreshness encodes f for repository id and appends its HMAC
// under key (derived from root key version ver).
func sealStoreFreshness(key secret.Key, id keys.ID, ver uint32, f keyring.Freshness) ([]byte, error) {
	b := make([]byte, 0, storeFreshnessLen)
	b = append(b, storeFreshnessVersion)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint32(b, ver)
	b = binary.BigEndian.AppendUint64(b, f.Sequence)
	b = append(b, f.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, unixNanos(f.Time))
	mac, err := storeFreshnessMAC(key, b)
	if err != nil {
		return nil, err
	}
	return append(b, mac...), nil
}

func storeFreshnessMAC(key secret.Key, body []byte) ([]byte, error) {
	var out []byte
	err := key.Use(func(kb []byte) error {
		m := hmac.New(sha256.New, kb)
		m.Write([]byte(storeFreshnessMACLabel))
		m.Write(body)
		out = m.Sum(nil)
		return nil
	})
	return out, err
}

// openStoreFreshness checks a sealed record of repository id: its
// layout, its repository and its HMAC under the key keyFor derives for
// the root key version it names.
func openStoreFreshness(b []byte, id keys.ID, keyFor func(ver uint32) (secret.Key, error)) (keyring.Freshness, error) {
	if len(b) != storeFreshnessLen || b[0] != storeFreshnessVersion {
		return keyring.Freshness{}, fmt.Errorf("%w: %d bytes of an unknown layout", errStoreFreshnessInvalid, len(b))
	}
	if !bytes.Equal(b[1:17], id[:]) {
		return keyring.Freshness{}, fmt.Errorf("%w: it names repository %x", errStoreFreshnessInvalid, b[1:17])
	}
	ver := binary.BigEndian.Uint32(b[17:21])
	key, err := keyFor(ver)
	if err != nil {
		return keyring.Freshness{}, fmt.Errorf("%w: %w", errStoreFreshnessInvalid, err)
	}
	defer key.Wipe()
	body := b[:storeFreshnessLen-sha256.Size]
	mac, err := storeFreshnessMAC(key, body)
	if err != nil {
		return keyring.Freshness{}, err
	}
	if !hmac.Equal(mac, b[len(body):]) {
		return keyring.Freshness{}, fmt.Errorf("%w: it fails authentication", errStoreFreshnessInvalid)
	}
	f := keyring.Freshness{Sequence: binary.BigEndian.Uint64(body[21:29]), Time: fromUnix(binary.BigEndian.Uint64(body[61:69]))}
	copy(f.Hash[:], body[29:61])
	if f.Sequence == 0 {
		return keyring.Freshness{}, fmt.Errorf("%w: sequence 0", errStoreFreshnessInvalid)
	}
	return f, nil
}

// storeRecord is the freshness record the store's members agree on.
type storeRecord struct {
	f          keyring.Freshness
	agreed, of int // members holding it, of all members
}

// readStoreFreshness reads and opens the store members' record:
// errNoStoreFreshness for a store that keeps none, store.ErrNotExist
// when no record is agreed on.
func (r *Repo) readStoreFreshness(ctx context.Context) (*storeRecord, error) {
	fk, ok := r.st.(store.FreshnessKeeper)
	if !ok {
		return nil, errNoStoreFreshness
	}
	b, agreed, of, err := fk.Freshness(ctx)
	if err != nil {
		return nil, err
	}
	f, err := openStoreFreshness(b, r.id, r.storeFreshnessKey)
	if err != nil {
		return nil, err
	}
	return &storeRecord{f: f, agreed: agreed, of: of}, nil
}

// recordStoreFreshness writes f as the store members' record, when the
// store keeps one. A record the members already hold of a newer backup
// (another process backed up meanwhile) is left as it is.
func (r *Repo) recordStoreFreshness(ctx context.Context, f keyring.Freshness) error {
	fk, ok := r.st.(store.FreshnessKeeper)
	if !ok {
		return nil
	}
	if cur, err := r.readStoreFreshness(ctx); err == nil && cur.f.Sequence > f.Sequence {
		return nil
	}
	ver := r.src.Primary()
	key, err := r.storeFreshnessKey(ver)
	if err != nil {
		return err
	}
	defer key.Wipe()
	rec, err := sealStoreFreshness(key, r.id, ver, f)
	if err != nil {
		return err
	}
	return fk.PutFreshness(ctx, rec)
}

// OpenStoreFreshness opens one member's copy of the store's freshness
// record (spread.MemberFreshness.Record), for `holdfast stores`.
func (r *Repo) OpenStoreFreshness(rec []byte) (*FreshnessInfo, error) {
	f, err := openStoreFreshness(rec, r.id, r.storeFreshnessKey)
	if err != nil {
		return nil, err
	}
	return &FreshnessInfo{Sequence: f.Sequence, Hash: hex.EncodeToString(f.Hash[:]), Time: f.Time.UTC()}, nil
}

// ErrCatalogRolledBack: a key source kept off this host records a catalog
// backup newer than any this catalog made or was restored from.
var ErrCatalogRolledBack = errors.New("the catalog was rolled back")

// checkCatalogFresh refuses a catalog older than the key source says it
// is. A key server keeps the freshness record (the newest catalog backup's
// sequence and hash) away from the host, so whoever owns the host — a
// rented machine running a gateway — cannot put its catalog and the
// store back together to an older state unnoticed: every backup records
// itself there, and a catalog whose newest backup is older than that
// record was rolled back. (Writes after the newest backup are covered only
// as often as backups are made.) Sources kept in the home (the keyring
// file, the token's state file) roll back with it, so they cannot tell.
func (r *Repo) checkCatalogFresh(ctx context.Context) error {
	if r.kr.Kind() != keys.SourceKeyServer {
		return nil
	}
	f, ok := r.kr.Freshness()
	if !ok {
		return nil
	}
	last, err := r.cat.LastBackup(ctx)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		last = catalog.BackupState{}
	case err != nil:
		return err
	}
	if f.Sequence < last.Sequence || f.Sequence == last.Sequence && f.Hash == last.Hash {
		return nil
	}
	return fmt.Errorf("%w: the key server records catalog backup %d of %s, but this catalog's newest is %d: this host's state was put back to an older copy (run recover on premises from the store's newest backup, and find out who restored it)",
		ErrCatalogRolledBack, f.Sequence, f.Time.UTC().Format(time.RFC3339), last.Sequence)
}
