package repo

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
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
	// AcceptUnverifiedFreshness lets recovery go on when the store's
	// catalog backups cannot be checked against the keyring's freshness
	// record: the keyring has none, or every backup found is older than
	// it or does not link back to it, or there is no backup at all. It
	// then starts from the newest authentic backup found (or scans alone)
	// and the report says so.
	AcceptUnverifiedFreshness bool
	// Keys, if set, is the home's key source already open (a PKCS#11
	// token, keysource.go) instead of the keyring file; Recover takes it
	// over.
	Keys  RootKeys
	Hooks *Hooks
}

// BackupInfo names a catalog backup found in the store.
type BackupInfo struct {
	Sequence uint64    `json:"sequence"`
	Created  time.Time `json:"created"`
	Object   string    `json:"object"` // store name
	// Encoding is the backup's encoding version: 1 carries no version
	// reservations (docs/format.md), so recovery from it cannot tell a
	// put-back replaced or deleted version from a current one.
	Encoding uint8 `json:"encoding"`
}

// FreshnessInfo is a keyring's freshness record.
type FreshnessInfo struct {
	Sequence uint64    `json:"sequence"`
	Hash     string    `json:"hash"`
	Time     time.Time `json:"time"`
}

// Recovery verdicts on freshness (RecoverReport.Freshness).
const (
	// FreshnessVerified: recovery started from the backup the keyring
	// records, or from a newer one whose chain of previous hashes reaches
	// it.
	FreshnessVerified = "verified"
	// FreshnessVerifiedByStore: as FreshnessVerified, against the
	// freshness record the store's members keep (a spread store), which
	// was used because the keyring has no record or an older one.
	FreshnessVerifiedByStore = "verified-by-store-members"
	// FreshnessUnverified: the check was impossible or failed and
	// AcceptUnverifiedFreshness was set.
	FreshnessUnverified = "unverified"
)

// StoreFreshnessInfo is the freshness record the store's members keep
// (a spread store), with how many members hold it.
type StoreFreshnessInfo struct {
	FreshnessInfo
	Agreed  int `json:"agreed"`  // members holding it authentically (at least K)
	Members int `json:"members"` // members of the store (N)
}

// RecoverReport says what Recover found.
type RecoverReport struct {
	Buckets    int   `json:"buckets"`
	Objects    int   `json:"objects"`
	Bytes      int64 `json:"bytes"`
	Superseded int   `json:"superseded"` // older versions found and removed
	// Stale counts stored versions the backup's reservations rule out as
	// current: versions replaced or deleted before the backup, whose
	// deletion was lost or which the provider put back. They are removed
	// (and counted in Superseded too).
	Stale   int      `json:"stale"`
	Unknown []string `json:"unknown"` // store objects no key of this repository opens, or that failed authentication

	Freshness        string         `json:"freshness"`                   // FreshnessVerified, FreshnessVerifiedByStore or FreshnessUnverified
	FreshnessProblem string         `json:"freshness_problem,omitempty"` // why it is unverified
	Keyring          *FreshnessInfo `json:"keyring_freshness"`           // the keyring's record; nil: none
	Newest           *BackupInfo    `json:"newest_backup"`               // newest authentic backup in the store; nil: none
	Backup           *BackupInfo    `json:"backup"`                      // the backup recovery started from; nil: by scanning alone
	AfterBackup      int            `json:"after_backup"`                // current objects found by the scan that the backup does not list
	Missing          []string       `json:"missing"`                     // BUCKET/KEY the backup lists whose stored object is gone: dropped
	Unreadable       []string       `json:"unreadable"`                  // BUCKET/KEY the backup lists that the store would not say it has (not an object under the name): kept
	MissingSystem    []string       `json:"missing_system"`              // journal entries the backup lists that the store lacks (kept: verify reports them)
	IgnoredBackups   []BackupInfo   `json:"ignored_backups"`             // authentic backups not used and not older than the one used
	NewBackup        *BackupResult  `json:"new_backup"`                  // the backup written at the end
	NewBackupError   string         `json:"new_backup_error,omitempty"`

	// StoreRecord is the record the store's members agree on (a spread
	// store); nil: the store keeps none, or none could be read
	// (StoreRecordProblem says why).
	StoreRecord        *StoreFreshnessInfo `json:"store_freshness,omitempty"`
	StoreRecordProblem string              `json:"store_freshness_problem,omitempty"`
}

// ErrUnverifiedFreshness is wrapped by FreshnessError.
var ErrUnverifiedFreshness = errors.New("the catalog backups cannot be verified as fresh")

// FreshnessError is recover's refusal to trust the store's catalog
// backups (see chooseBackup); AcceptUnverifiedFreshness overrides it.
type FreshnessError struct {
	Problem string
	Keyring *FreshnessInfo      // nil: the keyring has no record
	Store   *StoreFreshnessInfo // the store members' record, when it was the one checked against
	Newest  *BackupInfo         // nil: the store holds no authentic backup
}

func (e *FreshnessError) Error() string { return "refusing to recover: " + e.Problem }
func (e *FreshnessError) Unwrap() error { return ErrUnverifiedFreshness }

// Recover rebuilds a lost catalog from the store with the keyring alone.
// It starts from the newest catalog backup that the keyring's freshness
// record vouches for (chooseBackup), then scans the store for what was
// written after it: key journal entries (objects whose data key opens
// under a root key) and data objects, opened under every bucket key. The
// newest version of each logical object becomes current; an object the
// backup lists whose stored object is gone is dropped and reported.
// Without a backup it rebuilds from the scan alone. It ends by writing a
// new backup, which the keyring records.
func Recover(ctx context.Context, o RecoverOptions) (*Repo, *RecoverReport, error) {
	cp := filepath.Join(o.Home, CatalogFile)
	if _, err := os.Stat(cp); err == nil {
		if o.Keys != nil {
			o.Keys.Close()
		}
		return nil, nil, fmt.Errorf("a catalog already exists at %q; move it away to rebuild it: %w", cp, ErrExists)
	}
	kr, err := openRootKeys(o.Home, o.Keys, nil, o.Passphrase)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := kr.(DataKeySource); ok {
		// Recovery opens every bucket key record it finds to try it on the
		// store's objects: it needs the bucket keys in this process.
		kr.Close()
		return nil, nil, fmt.Errorf("recover opens bucket keys in this process: %w; run it on a home holding the repository's keyring", errBucketKeyStaysAtSource)
	}
	id := kr.Repo()
	cfg, cerr := loadConfig(o.Home)
	if cerr != nil {
		cfg = Config{Version: 1, Store: StoreConfig{Type: "local", Path: filepath.Join(o.Home, StoreDir)}}
	}
	if cfg.Catalog != nil {
		kr.Close()
		return nil, nil, fmt.Errorf("this home's catalog is %s: recover rebuilds the catalog.db of a home only; restore the database from its own backups, or recover into a new home and copy it over", cfg.Catalog.Describe())
	}
	cfg.Repository = hex.EncodeToString(id[:])
	if cfg.Backup == nil {
		bc := DefaultBackupConfig
		cfg.Backup = &bc
	}
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
	rep, err := r.rebuild(ctx, o.AcceptUnverifiedFreshness)
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
	// Anchor what was recovered: a new backup, recorded in the keyring.
	// The catalog is complete without it, so a failure is only reported.
	res, err := r.Backup(ctx)
	rep.NewBackup = res
	if err != nil {
		rep.NewBackupError = err.Error()
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

// scanned is what the first pass learnt of one store object.
type scanned struct {
	f          found
	gone       bool // deleted since the listing
	unknown    bool // unreadable header, or a system object that failed authentication or is not valid
	system     bool
	sys        catalog.SystemObject // for system objects
	checkpoint bool                 // an audit checkpoint of this repository
	rec        *format.KeyRecord    // a journal entry's bucket key record
	batch      []*format.KeyRecord  // a journal entry's data key rewraps (type 2), unopened
	key        secret.Key           // its bucket key, checked against the record's key check
	backup     *backupCand
}

// backupCand is an authentic catalog backup found in the store.
type backupCand struct {
	name    string
	id      keys.ID
	sys     catalog.SystemObject
	head    *format.CatalogBackup // the fixed head only
	hash    [32]byte
	hashed  bool
	damaged bool // its body failed authentication when read whole
}

func (c *backupCand) info() *BackupInfo {
	return &BackupInfo{Sequence: c.head.Sequence, Created: time.Unix(0, int64(c.head.Created)).UTC(), Object: c.name, Encoding: c.head.Version}
}

// classifyStored reads an object's header and, if its data key opens under a
// root key, opens it as a system object.
func (r *Repo) classifyStored(ctx context.Context, f found, roots []uint32) (sc scanned, err error) {
	sc.f = f
	h, err := r.readHeader(ctx, f.name)
	switch {
	case isNotExist(err):
		sc.gone = true
		return sc, nil
	case errors.Is(err, format.ErrCorrupt):
		sc.unknown = true
		return sc, nil
	case err != nil:
		return sc, fmt.Errorf("reading %s: %w", f.name, err)
	}
	sc.f.header = h
	unwrap := r.unwrapSystem(ctx, f.id, roots)
	k, _, err := unwrap(h)
	if errors.Is(err, keys.ErrNotMyKey) {
		return sc, nil // a data object, or not ours: the second pass tells
	}
	if err != nil {
		return sc, err
	}
	k.Wipe()
	sc.system = true
	o, err := object.Open(ctx, r.st, f.name, object.Expect{Identity: object.Identity{Repo: r.id, Object: f.id}, StoredLen: f.size}, unwrap)
	switch {
	case isNotExist(err):
		sc.gone = true
		return sc, nil
	case errors.Is(err, format.ErrCorrupt) || errors.Is(err, store.ErrInvalidRange):
		sc.unknown = true
		return sc, nil
	case err != nil:
		return sc, fmt.Errorf("reading %s: %w", f.name, err)
	}
	defer o.Wipe()
	sc.sys = systemRecord(o, f.id)
	switch o.Manifest.Kind {
	case format.KindJournal:
		var body writerBuf
		if _, err := o.WriteTo(ctx, &body); err != nil {
			if !errors.Is(err, format.ErrCorrupt) {
				return sc, fmt.Errorf("reading %s: %w", f.name, err)
			}
			sc.unknown = true
			return sc, nil
		}
		return sc, r.classifyJournal(ctx, &sc, body.b)
	case format.KindBackup:
		// The head (one authenticated chunk) ranks it; the whole is read
		// only if recovery needs its hash or its contents.
		if o.Manifest.Length < format.BackupHeadLen {
			sc.unknown = true
			return sc, nil
		}
		rc, err := o.Range(ctx, 0, format.BackupHeadLen)
		if err != nil {
			return sc, err
		}
		hb := make([]byte, format.BackupHeadLen)
		_, err = io.ReadFull(rc, hb)
		rc.Close()
		if err != nil {
			if !errors.Is(err, format.ErrCorrupt) {
				return sc, fmt.Errorf("reading %s: %w", f.name, err)
			}
			sc.unknown = true
			return sc, nil
		}
		head, err := format.ParseCatalogBackupHead(hb)
		if err != nil || head.Repo != r.id {
			sc.unknown = true
			return sc, nil
		}
		sc.backup = &backupCand{name: f.name, id: f.id, sys: sc.sys, head: head}
	case format.KindCheckpoint:
		var body writerBuf
		if _, err := o.WriteTo(ctx, &body); err != nil {
			if !errors.Is(err, format.ErrCorrupt) {
				return sc, fmt.Errorf("reading %s: %w", f.name, err)
			}
			sc.unknown = true
			return sc, nil
		}
		if _, err := r.parseAuditCheckpoint(body.b); err != nil {
			sc.unknown = true
			return sc, nil
		}
		sc.checkpoint = true
	default:
		sc.unknown = true
	}
	return sc, nil
}

// classifyJournal reads a key journal entry's plaintext into sc: a bucket
// key record is opened under its root key now (pass 2 needs the bucket
// keys); a batch of data key rewraps is kept as it is, since its records
// are wrapped under bucket keys that only the whole scan yields. An entry
// that does not parse, or whose bucket key does not open or match its key
// check, is unknown.
func (r *Repo) classifyJournal(ctx context.Context, sc *scanned, plain []byte) error {
	recs, err := format.ParseJournal(plain)
	switch {
	case err != nil:
		sc.unknown = true
		return nil
	case recs[0].Type == format.RecordDataKey:
		// A batch, or a lone type-2 record: a batch of one to recovery.
		sc.batch = recs
		return nil
	}
	rec := recs[0] // type 1: ParseJournal returns it alone
	k, err := r.src.Unwrap(ctx, rec.Wrapped, r.bucketAD(rec.Bucket, rec.Wrapped.KEKVersion, rec.KeyVersion))
	if errors.Is(err, keys.ErrUnavailable) {
		return err
	}
	if err != nil {
		sc.unknown = true
		return nil
	}
	kc, _ := keys.KeyCheck(k)
	if subtle.ConstantTimeCompare(kc, rec.KeyCheck[:]) != 1 {
		k.Wipe()
		sc.unknown = true
		return nil
	}
	sc.rec, sc.key = rec, k
	return nil
}

// classifyAll runs classifyStored over objs on a few goroutines (a remote store
// answers each header read after a round trip).
func (r *Repo) classifyAll(ctx context.Context, objs []found) ([]scanned, error) {
	roots := r.rootVersions()
	out := make([]scanned, len(objs))
	errs := make([]error, len(objs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(8, max(2, runtime.GOMAXPROCS(0)*2)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = r.classifyStored(ctx, objs[i], roots)
				if errs[i] != nil {
					cancel()
				}
			}
		}()
	}
	for i := range objs {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, sc := range out {
			sc.key.Wipe()
		}
		return nil, err
	}
	return out, nil
}

// backupSink takes a backup's plaintext as it is read: its hash, its head
// and, with keep, all of it.
type backupSink struct {
	h    hash.Hash
	head []byte
	keep bool
	all  []byte
}

func (s *backupSink) Write(p []byte) (int, error) {
	s.h.Write(p)
	if n := format.BackupHeadLen - len(s.head); n > 0 {
		s.head = append(s.head, p[:min(n, len(p))]...)
	}
	if s.keep {
		s.all = append(s.all, p...)
	}
	return len(p), nil
}

func (s *backupSink) sum() (out [32]byte) {
	s.h.Sum(out[:0])
	return out
}

// parseHead checks the head read and that it names repository id.
func (s *backupSink) parseHead(id keys.ID) (*format.CatalogBackup, error) {
	h, err := format.ParseCatalogBackupHead(s.head)
	if err != nil {
		return nil, err
	}
	if h.Repo != id {
		return nil, format.Corrupt(format.LayerIdentity, "catalog backup names repository %x", h.Repo[:])
	}
	return h, nil
}

// readBackup reads c whole (authenticating every chunk) into sink. A body
// that fails authentication marks c damaged and returns false.
func (r *Repo) readBackup(ctx context.Context, c *backupCand, sink *backupSink) (bool, error) {
	pin := c.sys.Pin
	exp := object.Expect{Identity: object.Identity{Kind: format.KindBackup, Repo: r.id, Object: c.id}, Pin: &pin,
		StoredLen: c.sys.StoredLen, ManifestOff: c.sys.ManifestOff, ManifestLen: c.sys.ManifestLen}
	o, err := object.Open(ctx, r.st, c.name, exp, r.unwrapSystem(ctx, c.id, r.rootVersions()))
	if err == nil {
		_, err = o.WriteTo(ctx, sink)
		o.Wipe()
	}
	if err == nil {
		var h *format.CatalogBackup
		if h, err = sink.parseHead(r.id); err == nil && h.Sequence != c.head.Sequence {
			err = format.Corrupt(format.LayerIdentity, "catalog backup changed while it was read")
		}
	}
	switch {
	case err == nil:
		c.hash, c.hashed = sink.sum(), true
		return true, nil
	case errors.Is(err, format.ErrCorrupt) || isNotExist(err) || errors.Is(err, store.ErrInvalidRange):
		c.damaged = true
		return false, nil
	}
	return false, fmt.Errorf("reading catalog backup %s: %w", c.name, err)
}

// hashBackup computes c's backup hash (once).
func (r *Repo) hashBackup(ctx context.Context, c *backupCand) (bool, error) {
	if c.hashed || c.damaged {
		return c.hashed, nil
	}
	return r.readBackup(ctx, c, &backupSink{h: format.NewBackupHash()})
}

// loadBackup reads and decodes c whole; nil if its body is damaged.
func (r *Repo) loadBackup(ctx context.Context, c *backupCand) (*format.CatalogBackup, error) {
	sink := &backupSink{h: format.NewBackupHash(), keep: true}
	ok, err := r.readBackup(ctx, c, sink)
	if !ok || err != nil {
		return nil, err
	}
	b, err := format.ParseCatalogBackup(sink.all)
	clear(sink.all)
	if err != nil {
		c.damaged = true
		return nil, nil
	}
	return b, nil
}

// chooseBackup picks the backup recovery may start from, given the
// keyring's freshness record f (sequence S, hash H). Candidates are
// authentic (they opened under this keyring), so the provider can only
// withhold them, replay old ones or put back ones we deleted; the rule:
//
//   - a backup with sequence S is trusted if its hash is H;
//   - a backup with a higher sequence is trusted if its previous hash is
//     the hash of a backup in the store with the sequence one below,
//     and so on down to sequence S+1, whose previous hash must be H.
//     Such backups exist when the keyring update after a backup was lost
//     (a crash, a keyring another process held); the chain shows they
//     descend from what the keyring recorded, not from an abandoned line
//     of backups (one a flagged recovery from a rolled-back store left);
//   - a backup with a lower sequence is never trusted.
//
// The newest trusted backup wins. hashOf computes a candidate's hash
// (reading it whole), reporting false for one whose body is damaged. The
// result is nil when nothing is trusted.
func chooseBackup(cands []*backupCand, f keyring.Freshness, hashOf func(*backupCand) (bool, error)) (*backupCand, error) {
	matches := func(c *backupCand, h [32]byte) (bool, error) {
		ok, err := hashOf(c)
		return ok && c.hash == h, err
	}
	var links func(c *backupCand) (bool, error)
	links = func(c *backupCand) (bool, error) {
		if c.head.Sequence == f.Sequence+1 {
			return c.head.Previous == f.Hash, nil
		}
		for _, p := range cands {
			if p.damaged || p.head.Sequence != c.head.Sequence-1 {
				continue
			}
			if ok, err := matches(p, c.head.Previous); err != nil || !ok {
				if err != nil {
					return false, err
				}
				continue
			}
			return links(p)
		}
		return false, nil
	}
	for _, c := range cands {
		if c.damaged || c.head.Sequence < f.Sequence {
			continue
		}
		var ok bool
		var err error
		if c.head.Sequence == f.Sequence {
			ok, err = matches(c, f.Hash)
		} else {
			ok, err = links(c)
		}
		if err != nil {
			return nil, err
		}
		if ok {
			return c, nil
		}
	}
	return nil, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// freshnessProblem says why no backup could be trusted.
func freshnessProblem(live []*backupCand, f *FreshnessInfo) string {
	if f == nil {
		if len(live) == 0 {
			return "the keyring holds no freshness record, and the store holds no catalog backup: nothing shows whether the store is complete and current"
		}
		n := live[0].info()
		return fmt.Sprintf("the keyring holds no freshness record, so the store's catalog backups (newest: sequence %d of %s) cannot be checked for a rollback",
			n.Sequence, stamp(n.Created))
	}
	if len(live) == 0 {
		return fmt.Sprintf("the keyring records catalog backup %d of %s, but the store holds no catalog backup: the backups were deleted",
			f.Sequence, stamp(f.Time))
	}
	n := live[0].info()
	if n.Sequence < f.Sequence {
		return fmt.Sprintf("the newest catalog backup in the store is sequence %d of %s, older than sequence %d of %s that the keyring records: the store was rolled back",
			n.Sequence, stamp(n.Created), f.Sequence, stamp(f.Time))
	}
	return fmt.Sprintf("no catalog backup in the store is sequence %d of %s that the keyring records or links back to it (newest found: sequence %d of %s); the keyring may be an older copy, or the store was rolled back",
		f.Sequence, stamp(f.Time), n.Sequence, stamp(n.Created))
}

// storeFreshnessProblem says why no backup matches the record the
// store's members agree on, which stood in for the keyring's (kr: nil,
// or older).
func storeFreshnessProblem(live []*backupCand, st *StoreFreshnessInfo, kr *FreshnessInfo) string {
	whose := fmt.Sprintf("the freshness record that %d of the store's %d members agree on (sequence %d of %s; the keyring ",
		st.Agreed, st.Members, st.Sequence, stamp(st.Time))
	if kr == nil {
		whose += "holds none)"
	} else {
		whose += fmt.Sprintf("holds the older sequence %d)", kr.Sequence)
	}
	if len(live) == 0 {
		return whose + " names a catalog backup, but the store holds none: the backups were deleted"
	}
	n := live[0].info()
	if n.Sequence < st.Sequence {
		return fmt.Sprintf("%s is newer than the newest catalog backup in the store, sequence %d of %s: the backups were rolled back", whose, n.Sequence, stamp(n.Created))
	}
	return fmt.Sprintf("no catalog backup in the store is the one %s names, or links back to it (newest found: sequence %d of %s): the backups were rolled back",
		whose, n.Sequence, stamp(n.Created))
}

// storeRecord reads the store members' freshness record into rep; nil
// when the store keeps none or it cannot be used (rep says why).
func (r *Repo) storeRecord(ctx context.Context, rep *RecoverReport) *storeRecord {
	sr, err := r.readStoreFreshness(ctx)
	switch {
	case errors.Is(err, errNoStoreFreshness):
		return nil
	case err != nil:
		rep.StoreRecordProblem = err.Error()
		return nil
	}
	rep.StoreRecord = &StoreFreshnessInfo{FreshnessInfo: FreshnessInfo{Sequence: sr.f.Sequence, Hash: hex.EncodeToString(sr.f.Hash[:]),
		Time: sr.f.Time.UTC()}, Agreed: sr.agreed, Members: sr.of}
	return sr
}

// failedSystem counts the objects whose data key opens under a root key
// (system objects: journal entries, backups) but which then failed
// authentication or were not valid: the provider altered them.
func failedSystem(scans []scanned, cands []*backupCand) int {
	n := 0
	for _, sc := range scans {
		if sc.system && sc.unknown {
			n++
		}
	}
	for _, c := range cands {
		if c.damaged {
			n++
		}
	}
	return n
}

func fromUnix(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// entryOf turns a backup's object record into a catalog entry.
func entryOf(o *format.BackupObject) catalog.Entry {
	e := catalog.Entry{Bucket: o.Bucket, Key: o.Key, Version: o.Version, ObjectID: o.Object, Size: int64(o.Size),
		StoredLen: int64(o.Stored), ManifestOff: int64(o.ManifestOff), ManifestLen: int64(o.ManifestLen), Pin: o.Pin,
		Commit: o.Commit, KeyVersion: o.KeyVersion, Wrapped: o.Wrapped, Modified: fromUnix(o.Modified),
		ContentType: o.ContentType, Segments: int(o.Segments)}
	if len(o.Meta) > 0 {
		e.Meta = map[string]string{}
		for _, p := range o.Meta {
			e.Meta[p.Name] = p.Value
		}
	}
	return e
}

func (r *Repo) rebuild(ctx context.Context, accept bool) (*RecoverReport, error) {
	rep := &RecoverReport{Unknown: []string{}, Missing: []string{}, MissingSystem: []string{}, IgnoredBackups: []BackupInfo{}}
	var objs []found
	markerSeen := false
	var otherMarker string
	// A name listed twice is one object: a listing that repeats it (a
	// provider's, or a paging glitch) must not make a genuine object look
	// like a second copy of itself, which recovery would report unknown.
	listedName := map[string]bool{}
	if err := r.st.List(ctx, "", func(oi store.ObjectInfo) error {
		if listedName[oi.Name] {
			return nil
		}
		listedName[oi.Name] = true
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
	markerID := r.id
	mo, err := object.Open(ctx, r.st, format.MarkerName(r.id),
		object.Expect{Identity: object.Identity{Kind: format.KindMarker, Repo: r.id, Object: markerID}},
		r.unwrapSystem(ctx, markerID, r.rootVersions()))
	if err != nil {
		return nil, fmt.Errorf("the repository marker does not open under this keyring: %w", err)
	}
	sys := []catalog.SystemObject{systemRecord(mo, markerID)}
	mo.Wipe()

	// Pass 1: every object's header; system objects opened.
	scans, err := r.classifyAll(ctx, objs)
	if err != nil {
		return nil, err
	}
	keysUsed := false
	defer func() {
		if !keysUsed {
			for _, sc := range scans {
				sc.key.Wipe()
			}
		}
	}()
	listed := map[keys.ID]bool{}
	var cands []*backupCand
	for _, sc := range scans {
		if !sc.gone {
			listed[sc.f.id] = true
		}
		if sc.backup != nil {
			cands = append(cands, sc.backup)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i].head, cands[j].head
		if a.Sequence != b.Sequence {
			return a.Sequence > b.Sequence
		}
		return a.Created > b.Created
	})

	// Which backup to start from (chooseBackup), or none.
	var fresh *FreshnessInfo
	f, hasFresh := r.kr.Freshness()
	if hasFresh {
		fresh = &FreshnessInfo{Sequence: f.Sequence, Hash: hex.EncodeToString(f.Hash[:]), Time: f.Time.UTC()}
		rep.Keyring = fresh
	}
	// The store members' record stands in for the keyring's when the
	// keyring has none or an older one (an old copy of the keyring).
	verified := FreshnessVerified
	var byStore *StoreFreshnessInfo
	if sr := r.storeRecord(ctx, rep); sr != nil && (!hasFresh || sr.f.Sequence > f.Sequence) {
		f, hasFresh, verified, byStore = sr.f, true, FreshnessVerifiedByStore, rep.StoreRecord
	}
	live := func() []*backupCand {
		var l []*backupCand
		for _, c := range cands {
			if !c.damaged {
				l = append(l, c)
			}
		}
		return l
	}
	var chosen *backupCand
	var loaded *format.CatalogBackup
	for {
		var c *backupCand
		if hasFresh {
			if c, err = chooseBackup(cands, f, func(c *backupCand) (bool, error) { return r.hashBackup(ctx, c) }); err != nil {
				return nil, err
			}
		}
		l := live()
		rep.Freshness, rep.FreshnessProblem, rep.Newest = verified, "", nil
		if len(l) > 0 {
			rep.Newest = l[0].info()
		}
		if c == nil {
			problem := freshnessProblem(l, fresh)
			if byStore != nil {
				problem = storeFreshnessProblem(l, byStore, fresh)
			}
			if n := failedSystem(scans, cands); n > 0 {
				problem += fmt.Sprintf(" (%d store objects sealed under this keyring failed authentication: altered)", n)
			}
			if !accept {
				return nil, &FreshnessError{Problem: problem, Keyring: fresh, Store: byStore, Newest: rep.Newest}
			}
			rep.Freshness, rep.FreshnessProblem = FreshnessUnverified, problem
			if len(l) == 0 {
				break // scan alone
			}
			c = l[0]
		}
		if loaded, err = r.loadBackup(ctx, c); err != nil {
			return nil, err
		}
		if loaded != nil {
			chosen = c
			break
		}
		// Its body failed authentication: it is not a backup after all.
	}
	for _, c := range cands {
		if c.damaged {
			rep.Unknown = append(rep.Unknown, c.name)
		}
	}

	// Start from the backup.
	type lk struct{ bucket, key string }
	type current struct {
		e          catalog.Entry
		fromBackup bool
		missing    bool // listed in the backup, gone from the store
	}
	newest := map[lk]*current{}
	inBackup := map[keys.ID]bool{}
	// reserved: per key, the highest version the backup rules out as
	// current unless it lists it (format version 2); seen: the highest
	// version found anywhere, so that recovery never lets a version
	// number be assigned twice.
	reserved := map[lk]uint64{}
	seen := map[lk]uint64{}
	note := func(k lk, v uint64) { seen[k] = max(seen[k], v) }
	buckets := map[keys.ID]catalog.Bucket{}
	var bkeys []catalog.BucketKey
	haveKey := map[bkRef]bool{}
	sysSeen := map[keys.ID]bool{markerID: true}
	if loaded != nil {
		rep.Backup = chosen.info()
		for _, b := range loaded.Buckets {
			buckets[b.ID] = catalog.Bucket{Name: b.Name, ID: b.ID, Created: fromUnix(b.Created)}
		}
		for _, k := range loaded.Keys {
			bkeys = append(bkeys, catalog.BucketKey{BucketID: k.Bucket, Version: k.Version, Wrapped: k.Wrapped,
				KeyCheck: append([]byte(nil), k.KeyCheck[:]...), Created: fromUnix(k.Created), JournalID: k.Journal, State: int(k.State)})
			haveKey[bkRef{k.Bucket, k.Version}] = true
		}
		for i := range loaded.Objects {
			o := &loaded.Objects[i]
			missing := false
			if !listed[o.Object] {
				// Not in the listing: gone, or the listing is short (a
				// provider that omits names, an S3 listing glitch). Only a
				// store that says it does not have the object drops it.
				var unreadable error
				if missing, unreadable, err = r.goneFromStore(ctx, format.StoreName(o.Object)); err != nil {
					return nil, err
				}
				if unreadable != nil {
					rep.Unreadable = append(rep.Unreadable, o.Bucket+"/"+o.Key)
				}
			}
			newest[lk{o.Bucket, o.Key}] = &current{e: entryOf(o), fromBackup: true, missing: missing}
			inBackup[o.Object] = true
			note(lk{o.Bucket, o.Key}, o.Version)
		}
		for _, rv := range loaded.Reservations {
			reserved[lk{rv.Bucket, rv.Key}] = rv.Version
			note(lk{rv.Bucket, rv.Key}, rv.Version)
		}
		for _, s := range loaded.System {
			if sysSeen[s.Object] {
				continue
			}
			sysSeen[s.Object] = true
			sys = append(sys, catalog.SystemObject{ObjectID: s.Object, Kind: int(s.Kind), Pin: s.Pin, StoredLen: int64(s.Stored),
				ManifestOff: int64(s.ManifestOff), ManifestLen: int64(s.ManifestLen), Created: fromUnix(s.Created)})
			if !listed[s.Object] {
				rep.MissingSystem = append(rep.MissingSystem, format.StoreName(s.Object))
			}
		}
		// Older backups stay known (retention deletes them in turn);
		// newer or sibling ones were not trusted: reported, left alone.
		for _, c := range live() {
			switch {
			case c == chosen || c.head.Sequence < chosen.head.Sequence:
				sysSeen[c.id] = true
				sys = append(sys, c.sys)
			default:
				rep.IgnoredBackups = append(rep.IgnoredBackups, *c.info())
			}
		}
	}

	// The bucket keys: the backup's, then journal entries written after it.
	var tries []keyTry
	destroyed := map[bkRef]bool{}
	unopened := map[bkRef]int{} // the backup's records that do not open, by index into bkeys
	for i, bk := range bkeys {
		ref := bkRef{bk.BucketID, bk.Version}
		if bk.State == catalog.KeyDestroyed {
			destroyed[ref] = true // never used, whatever the scan finds
			continue
		}
		k, err := r.bucketKey(ctx, bk)
		if errors.Is(err, keys.ErrUnavailable) {
			return nil, err
		}
		if err != nil {
			// Its objects stay listed; reading them will say why. A root
			// rewrap after the backup may have recorded it again in a
			// journal entry under a root key that is still held (the old
			// root retired since): the scan's record may stand in.
			delete(haveKey, ref)
			unopened[ref] = i
			continue
		}
		tries = append(tries, keyTry{ref: ref, key: k, scan: -1})
	}
	for i, sc := range scans {
		if sc.rec == nil {
			continue
		}
		if !sysSeen[sc.f.id] {
			sysSeen[sc.f.id] = true
			sys = append(sys, sc.sys)
		}
		ref := bkRef{sc.rec.Bucket, sc.rec.KeyVersion}
		if haveKey[ref] {
			continue
		}
		tries = append(tries, keyTry{ref: ref, key: sc.key, scan: i})
	}
	batches, retiredBatches := keptBatches(scans, destroyed, sysSeen)
	for _, i := range batches {
		if !sysSeen[scans[i].f.id] {
			sysSeen[scans[i].f.id] = true
			sys = append(sys, scans[i].sys)
		}
	}
	rw := rewrapsOf(scans, batches)
	// Audit checkpoints: backups do not list them; the scan finds them.
	for _, sc := range scans {
		if sc.checkpoint && !sc.gone && !sysSeen[sc.f.id] {
			sysSeen[sc.f.id] = true
			sys = append(sys, sc.sys)
		}
	}

	// Objects the backup lists whose data keys were rewrapped after it
	// take the newest record that opens.
	used := make([]int, len(tries))
	bucketIDs := map[string]keys.ID{}
	for id, b := range buckets {
		bucketIDs[b.Name] = id
	}
	for _, c := range newest {
		if c.fromBackup && !c.missing {
			r.adoptRewrap(&c.e, bucketIDs[c.e.Bucket], rw[c.e.ObjectID], tries, used)
		}
	}

	// Pass 2: data objects the backup does not list, through their
	// rewrap records or their header, under each bucket key.
	var older []keys.ID
	for _, sc := range scans {
		switch {
		case sc.gone || inBackup[sc.f.id] || sc.backup != nil:
			// Listed by the backup (verify checks it), or a backup.
			continue
		case sc.unknown:
			rep.Unknown = append(rep.Unknown, sc.f.name)
			continue
		case sc.system:
			continue
		}
		f := sc.f
		o, rec, gone, err := r.openFound(ctx, f, rw[f.id], tries, used)
		if err != nil {
			return nil, err
		}
		if gone {
			continue // deleted since the listing
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
		if rec != nil {
			e.KeyVersion, e.Wrapped = rec.KeyVersion, rec.Wrapped.Data
		}
		if len(m.Meta) > 0 {
			e.Meta = map[string]string{}
			for _, p := range m.Meta {
				e.Meta[p.Name] = p.Value
			}
		}
		o.Wipe()
		k := lk{e.Bucket, e.Key}
		note(k, e.Version)
		cur, listedKey := newest[k]
		if rv, ok := reserved[k]; ok && e.Version <= rv && !(listedKey && cur.e.Version == e.Version) {
			// A version the backup rules out: replaced or deleted before
			// it was taken. Never current, whatever else the store holds.
			older = append(older, e.ObjectID)
			rep.Stale++
			continue
		}
		if listedKey {
			switch {
			case cur.e.Version > e.Version:
				// An older version: superseded (its deletion was lost) or
				// kept and put back by the provider. Never current.
				older = append(older, e.ObjectID)
				continue
			case cur.e.Version < e.Version:
				if !cur.missing {
					older = append(older, cur.e.ObjectID)
				}
			default:
				// One version twice: keep the first found, touch neither.
				rep.Unknown = append(rep.Unknown, f.name)
				continue
			}
		}
		newest[k] = &current{e: e}
	}

	// One record per bucket key version among the journal entries found.
	// Where an interrupted race left two, keep the one whose key opens
	// objects; the other's key is wiped.
	chosenKey := map[bkRef]int{}
	for i, t := range tries {
		if t.scan < 0 {
			continue
		}
		if j, ok := chosenKey[t.ref]; !ok || used[i] > used[j] {
			chosenKey[t.ref] = i
		}
	}
	keysUsed = true
	for i, sc := range scans {
		if sc.rec == nil {
			continue
		}
		ti := -1
		for j, t := range tries {
			if t.scan == i {
				ti = j
			}
		}
		if ti < 0 || chosenKey[tries[ti].ref] != ti {
			sc.key.Wipe()
			continue
		}
		rec := sc.rec
		if _, ok := buckets[rec.Bucket]; !ok {
			buckets[rec.Bucket] = catalog.Bucket{Name: rec.BucketName, ID: rec.Bucket, Created: time.Unix(0, int64(rec.Created))}
		}
		bk := catalog.BucketKey{BucketID: rec.Bucket, Version: rec.KeyVersion, Wrapped: rec.Wrapped,
			KeyCheck: append([]byte(nil), rec.KeyCheck[:]...), Created: time.Unix(0, int64(rec.Created)), JournalID: sc.f.id, State: catalog.KeyActive}
		if j, ok := unopened[tries[ti].ref]; ok {
			bk.State = bkeys[j].State // the backup's record, which no longer opens, gives way
			bkeys[j] = bk
		} else {
			bkeys = append(bkeys, bk)
		}
		r.mu.Lock()
		if old, ok := r.bkeys[tries[ti].ref]; ok {
			old.Wipe()
		}
		r.bkeys[tries[ti].ref] = sc.key
		r.mu.Unlock()
	}

	var bl []catalog.Bucket
	for _, b := range buckets {
		bl = append(bl, b)
	}
	var entries []catalog.Entry
	for k, c := range newest {
		if c.missing {
			rep.Missing = append(rep.Missing, k.bucket+"/"+k.key)
			continue
		}
		if !c.fromBackup && loaded != nil {
			rep.AfterBackup++
		}
		entries = append(entries, c.e)
		rep.Bytes += c.e.Size
	}
	sort.Strings(rep.Missing)
	sort.Strings(rep.Unreadable)
	if err := r.cat.SetMeta(ctx, "repo-id", r.id[:]); err != nil {
		return nil, err
	}
	// The reservations go in with the entries, in one transaction: a
	// catalog that holds the one holds the other.
	var rs []catalog.Reservation
	for k, v := range seen {
		rs = append(rs, catalog.Reservation{Bucket: k.bucket, Key: k.key, Version: v})
	}
	if err := r.cat.Restore(ctx, bl, bkeys, entries, sys, rs); err != nil {
		return nil, err
	}
	if len(batches) > 0 {
		// Recorded, so that retiring their bucket key version deletes them.
		if err := r.cat.RestoreKeyBatches(ctx, keyBatches(scans, batches)); err != nil {
			return nil, err
		}
	}
	if loaded != nil {
		if err := r.cat.SetLastBackup(ctx, catalog.BackupState{Sequence: chosen.head.Sequence, Hash: chosen.hash,
			ObjectID: chosen.id, Created: time.Unix(0, int64(chosen.head.Created))}); err != nil {
			return nil, err
		}
	}
	for _, id := range older {
		if err := r.st.Delete(ctx, format.StoreName(id)); err == nil {
			rep.Superseded++
		}
	}
	// Retiring their bucket key version deleted these; the deletion was
	// lost or undone. Their records open under no key that still exists.
	for _, id := range retiredBatches {
		r.st.Delete(ctx, format.StoreName(id))
	}
	rep.Buckets, rep.Objects = len(bl), len(entries)
	return rep, nil
}

// keyTry is a bucket key recovery opens data keys with.
type keyTry struct {
	ref  bkRef
	key  secret.Key
	scan int // index into scans of its journal entry; -1 for the backup's
}

// keptBatches sorts the rewrap batch entries the scan found: those kept
// (indices into scans) and those under a bucket key version the backup
// says is destroyed, which its retirement deleted (a deletion lost, or
// undone by the provider): they are to be deleted again, unless the backup
// lists them.
func keptBatches(scans []scanned, destroyed map[bkRef]bool, listed map[keys.ID]bool) (kept []int, retired []keys.ID) {
	for i, sc := range scans {
		if sc.batch == nil {
			continue
		}
		if first := sc.batch[0]; destroyed[bkRef{first.Bucket, first.KeyVersion}] && !listed[sc.f.id] {
			retired = append(retired, sc.f.id)
			continue
		}
		kept = append(kept, i)
	}
	return kept, retired
}

// keyBatches is the catalog's record of the batch entries kept: a batch's
// records share one bucket and one bucket key version.
func keyBatches(scans []scanned, kept []int) []catalog.KeyBatch {
	out := make([]catalog.KeyBatch, 0, len(kept))
	for _, i := range kept {
		b := scans[i].batch
		out = append(out, catalog.KeyBatch{JournalID: scans[i].f.id, BucketID: b[0].Bucket, KeyVersion: b[0].KeyVersion, Records: len(b)})
	}
	return out
}

// rewrapsOf gathers the records of the batch entries kept by object id,
// the highest bucket key version first: the order a data key is looked
// for in (docs/format.md, "Key journal entry").
func rewrapsOf(scans []scanned, kept []int) map[keys.ID][]*format.KeyRecord {
	rw := map[keys.ID][]*format.KeyRecord{}
	for _, i := range kept {
		for _, rec := range scans[i].batch {
			rw[rec.Object] = append(rw[rec.Object], rec)
		}
	}
	for _, recs := range rw {
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].KeyVersion > recs[j].KeyVersion })
	}
	return rw
}

// adoptRewrap moves e, an entry the backup lists, to the first of recs
// (its object's rewrap records, newest first) above its key version whose
// wrap opens under a bucket key in tries to the key e's commitment names;
// otherwise e keeps the backup's record. The commitment binds the key to
// the body, so the body need not be read.
func (r *Repo) adoptRewrap(e *catalog.Entry, bucket keys.ID, recs []*format.KeyRecord, tries []keyTry, used []int) {
	for _, rec := range recs {
		if rec.KeyVersion <= e.KeyVersion || rec.Bucket != bucket {
			continue
		}
		for i, t := range tries {
			if t.ref == (bkRef{rec.Bucket, rec.KeyVersion}) && r.rewrapMatches(t.key, rec, e.ObjectID, e.Commit) {
				used[i]++
				e.KeyVersion, e.Wrapped = rec.KeyVersion, rec.Wrapped.Data
				return
			}
		}
	}
}

// rewrapMatches reports whether rec's wrap of object id's data key opens
// under bucket key kek to the key that commitment commit names.
func (r *Repo) rewrapMatches(kek secret.Key, rec *format.KeyRecord, id keys.ID, commit [32]byte) bool {
	dek, err := keys.UnwrapSoftware(kek, r.dataAD(rec.Bucket, rec.KeyVersion, id), rec.Wrapped.Data)
	if err != nil {
		return false
	}
	defer dek.Wipe()
	c, err := object.Commitment(dek)
	return err == nil && subtle.ConstantTimeCompare(c[:], commit[:]) == 1
}

// openFound opens data object f, found by the scan, under the bucket keys
// in tries: through its rewrap records recs (newest first) and, failing
// them all (none, damaged, or under keys no longer held), through its
// header's key slot. rec is the record that opened it; nil: the header.
// Opening authenticates the header and manifest, whose commitment binds
// the key: a record that names the wrong key does not open the object.
// An error means a read failed in a way that says nothing of the stored
// bytes (the store did not answer): no key was judged, so the object is
// neither ours nor unknown yet. Gone (deleted since the listing) is
// neither an error nor an object.
func (r *Repo) openFound(ctx context.Context, f found, recs []*format.KeyRecord, tries []keyTry, used []int) (o *object.Object, rec *format.KeyRecord, gone bool, err error) {
	if f.header.Alg != keys.AlgHKDFGCMCommit {
		return nil, nil, false, nil
	}
	var failed error
	// rec nil: the header's slot. Through a record, the manifest names the
	// version that wrapped the header's slot, lower than the record's.
	open := func(t keyTry, rec *format.KeyRecord) *object.Object {
		if failed != nil || gone {
			return nil
		}
		exp := object.Expect{Identity: object.Identity{Kind: format.KindData, Repo: r.id, Object: f.id}, StoredLen: f.size, Rewrapped: rec != nil}
		ad := r.dataAD(t.ref.bucket, t.ref.version, f.id)
		o, err := object.Open(ctx, r.st, f.name, exp, func(h format.Header) (secret.Key, keys.AD, error) {
			w := h.Wrapped
			if rec != nil {
				w = rec.Wrapped.Data
			}
			k, err := keys.UnwrapSoftware(t.key, ad, w)
			return k, ad, err
		})
		switch {
		case isNotExist(err):
			gone = true
			return nil
		case err != nil && !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, store.ErrInvalidRange):
			failed = err
			return nil
		case err != nil:
			return nil
		}
		return o
	}
	for _, rec := range recs {
		for i, t := range tries {
			if t.ref != (bkRef{rec.Bucket, rec.KeyVersion}) {
				continue
			}
			if o := open(t, rec); o != nil {
				used[i]++
				return o, rec, false, nil
			}
		}
	}
	for i, t := range tries {
		if o := open(t, nil); o != nil {
			used[i]++
			return o, nil, false, nil
		}
	}
	if failed != nil {
		return nil, nil, false, fmt.Errorf("reading %s: %w", f.name, failed)
	}
	return nil, nil, gone, nil
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

// goneFromStore reports whether the store says name does not exist. An
// answer that is neither "exists" nor "does not exist" about this one
// object (on a local store: something other than a file under its name)
// is returned as unreadable: the backup's entry is kept, for verify to
// report and for a later read to succeed once the store serves the object
// again. A store that cannot be reached, or a cancelled ctx, is an error.
func (r *Repo) goneFromStore(ctx context.Context, name string) (gone bool, unreadable, err error) {
	_, err = r.st.Stat(ctx, name)
	switch {
	case err == nil:
		return false, nil, nil
	case errors.Is(err, store.ErrNotExist):
		return true, nil, nil
	case ctx.Err() != nil || errors.Is(err, store.ErrUnavailable):
		return false, nil, fmt.Errorf("checking %s, which the catalog backup lists but the store listing lacks: %w", name, err)
	default:
		return false, err, nil
	}
}
