package catalog

import (
	"context"
	"errors"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// Errors the catalog returns wrapped; test for them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrStaleVersion: a version is not greater than one already recorded
	// for its (bucket,key), so another writer got there first.
	ErrStaleVersion = errors.New("stale version")
	// ErrNotPending: a commit found no pending record for its object (it
	// was cleaned up as an orphan); the write must not be recorded.
	ErrNotPending = errors.New("write is no longer pending")
	// ErrKeyExists: CommitCreate found the key with a current entry.
	ErrKeyExists = errors.New("the key already has an object")
	// ErrKeyRetired: a write under a bucket key version that was retired
	// (destroyed); the writer takes the primary version and starts again.
	ErrKeyRetired = errors.New("the bucket key version was retired")
	// ErrKeyInUse: a key version still protects something (RetireBucketKey).
	ErrKeyInUse = errors.New("the key version still protects data")
	// ErrNotEmpty: a bucket still has current objects.
	ErrNotEmpty = errors.New("not empty")
	// ErrNewerSchema: the catalog file was written by a newer Holdfast.
	ErrNewerSchema = errors.New("catalog schema is newer than this program")
)

// Entry is the current version of one logical object.
type Entry struct {
	Bucket      string
	Key         string
	Version     uint64  // per-(bucket,key) counter, starts at 1, never reused even after delete
	ObjectID    keys.ID // store name is hex of this; fresh per version
	Size        int64   // plaintext length
	StoredLen   int64   // stored (padded) length
	ManifestOff int64   // offset of the manifest ciphertext in the stored object
	ManifestLen int64   // length of the manifest ciphertext
	Pin         [32]byte
	Commit      [32]byte // data key commitment from the header
	KeyVersion  uint32   // bucket key version that wraps the data key
	Wrapped     []byte   // authoritative wrapped data key (body's, or a later rewrap)
	Modified    time.Time
	ContentType string
	Meta        map[string]string
	Segments    int // number of segments
}

// HistoryState says why a version left the current table.
type HistoryState int

const (
	Superseded HistoryState = 1
	Deleted    HistoryState = 2
)

// HistoryEntry is a version that is no longer current.
type HistoryEntry struct {
	Bucket, Key string
	Version     uint64
	ObjectID    keys.ID
	Pin         [32]byte
	Commit      [32]byte // data key commitment from the header
	State       HistoryState
	At          time.Time // when it left the current table
}

// Kinds of store object, as in Pending.Kind and SystemObject.Kind (the
// values of format.Kind).
const (
	KindObject  = 1 // a user object (bucket, key)
	KindJournal = 2 // a key journal entry
	KindBackup  = 3 // a catalog backup
	KindMarker  = 4 // a marker
	// KindCheckpoint is an audit checkpoint: a copy of an audit log
	// checkpoint line (docs/audit.md).
	KindCheckpoint = 5
)

// Pending is a write in progress: recorded before the store write.
type Pending struct {
	ObjectID keys.ID
	Kind     int    // KindObject, KindJournal, KindBackup, KindMarker or KindCheckpoint
	Bucket   string // empty for system objects
	Key      string
	// Version is the object version the write will commit (from
	// NextVersion); recording it reserves it. 0 reserves nothing (system
	// objects).
	Version uint64
	Owner   string // opaque owner token (pid + process start time) used to tell a live writer from a dead one
	Started time.Time
	// KeyVersion is the bucket key version an object write wraps its data
	// key under (0: none, system objects). A write under a retired version
	// is refused (ErrKeyRetired), and a version is not retired while a
	// write under it is pending.
	KeyVersion uint32
}

// Bucket is a logical bucket.
type Bucket struct {
	Name    string
	ID      keys.ID
	Created time.Time
}

// BucketKey is one version of a bucket key, wrapped under a root key.
type BucketKey struct {
	BucketID  keys.ID
	Version   uint32
	Wrapped   keys.Wrapped // under root key Wrapped.KEKVersion
	KeyCheck  []byte       // 32 bytes
	Created   time.Time
	JournalID keys.ID // the store object holding this record
	State     int     // 1 active (primary), 2 decrypt-only, 3 destroyed
}

// SystemObject is a store object Holdfast wrote for itself.
type SystemObject struct {
	ObjectID                 keys.ID
	Kind                     int // 2 journal entry, 3 catalog backup, 4 marker
	Pin                      [32]byte
	StoredLen                int64
	ManifestOff, ManifestLen int64
	Created                  time.Time
	// RootVersion is the root key version the writer sealed it under; a
	// commit under a retired one is refused (ErrKeyRetired). Not stored;
	// 0 skips the check (recovery's records).
	RootVersion uint32
}

// BackupState records a catalog backup: its sequence and backup hash (the
// pair the keyring's freshness record holds), its store object, when it was
// made, and the catalog's Changes when its snapshot was taken.
type BackupState struct {
	Sequence uint64
	Hash     [32]byte
	ObjectID keys.ID
	Created  time.Time
	Changes  uint64
}

// Snapshot is a consistent read-only view of the catalog (see
// Catalog.View). Its lists are in the orders a catalog backup needs:
// buckets by name, bucket keys by (bucket id, version), entries by
// (bucket, key), system objects by object id, all bytewise.
type Snapshot interface {
	Changes() (uint64, error)
	Count() (int64, error)
	Buckets() ([]Bucket, error)
	BucketKeys() ([]BucketKey, error)
	// All calls fn for every current entry, holding the snapshot open;
	// fn must not write to the catalog through the same goroutine's
	// transaction (it may call other Catalog methods).
	All(fn func(Entry) error) error
	SystemObjects() ([]SystemObject, error)
	// ReservationCount and Reservations give, for every (bucket, key) that
	// ever had a committed version (deleted keys included) or had one
	// restored by recovery, the highest version that may not become
	// current again unless the catalog lists it. A version still pending
	// when the snapshot was taken is left out (it may yet commit): for a
	// key with pending writes the value stops below the lowest of them.
	// Reservations calls fn in (bucket, key) order.
	ReservationCount() (uint64, error)
	Reservations(fn func(Reservation) error) error
}

// Reservation is one row of Snapshot.Reservations.
type Reservation struct {
	Bucket, Key string
	Version     uint64
}

// Known says what the catalog knows about an object id found in the store.
type Known int

const (
	KnownNone Known = iota
	KnownCurrent
	KnownHistory // superseded or deleted; awaiting or past deletion
	KnownPending
	KnownGarbage
	KnownSystem
)

// Catalog is the on-prem record of what is stored. Safe for concurrent use
// by goroutines and by several processes on the same file.
type Catalog interface {
	Close() error

	// Multipart uploads in progress (uploads.go).
	Uploads

	// Meta: small repository-wide values (e.g. "repo-id").
	GetMeta(ctx context.Context, key string) ([]byte, error) // ErrNotFound
	SetMeta(ctx context.Context, key string, v []byte) error

	// Buckets.
	CreateBucket(ctx context.Context, b Bucket) error // ErrExists
	GetBucket(ctx context.Context, name string) (Bucket, error)
	Buckets(ctx context.Context) ([]Bucket, error)       // sorted by name
	DeleteBucket(ctx context.Context, name string) error // fails unless empty

	// Bucket keys.
	AddBucketKey(ctx context.Context, k BucketKey) error
	BucketKeys(ctx context.Context, bucketID keys.ID) ([]BucketKey, error) // by version
	// BucketKeyOf returns the bucket named name and its key of version v
	// in one read: what opening an object needs from the catalog
	// besides the object's entry. ErrNotFound if either is absent.
	BucketKeyOf(ctx context.Context, name string, v uint32) (Bucket, BucketKey, error)
	AllBucketKeys(ctx context.Context) ([]BucketKey, error)

	// UpdateBucketKey replaces the record of (k.BucketID, k.Version): a
	// state change (decrypt-only, destroyed) or a rewrap under another root
	// key, with the journal record that says so. ErrNotFound if absent.
	UpdateBucketKey(ctx context.Context, k BucketKey) error

	// NextVersion returns the next object version for (bucket,key): one more
	// than any version ever recorded (current, history, or reserved by a
	// pending write), even after the key was deleted. It reserves nothing;
	// BeginPut does.
	NextVersion(ctx context.Context, bucket, key string) (uint64, error)

	// BeginPut records a pending write before the store write. For an object
	// (KindObject) the bucket must exist (ErrNotFound), and a non-zero
	// p.Version is reserved: it must be greater than every version recorded
	// for (bucket,key) so far, else ErrStaleVersion, so that no two store
	// objects ever carry the same version. Version 0 reserves nothing (the
	// commit still checks). ErrExists if p.ObjectID is known anywhere.
	BeginPut(ctx context.Context, p Pending) error
	// BeginPutBatch is BeginPut for many writes in one transaction, in
	// order: all are recorded or none (the error names the write that
	// failed). Unlike BeginPut it gives an object write with Version 0 the
	// next version of its key, reserves it and writes it back to
	// ps[i].Version, so a batch needs no NextVersion calls; on error ps is
	// unchanged.
	BeginPutBatch(ctx context.Context, ps []Pending) error
	// CommitPut atomically: removes the pending row for e.ObjectID, moves the
	// current entry (if any) to history as Superseded and its object id to
	// garbage, inserts e as current. It fails with ErrStaleVersion (and
	// changes nothing) if e.Version is not greater than every version ever
	// current for (bucket,key), deleted ones included; with ErrNotFound if
	// the bucket does not exist; with ErrExists if e.ObjectID is known other
	// than as pending or e.Pin is current. Returns the replaced entry, if
	// any.
	CommitPut(ctx context.Context, e Entry) (*Entry, error)
	// CommitCreate is CommitPut for a key that must not have a current
	// entry (a put that may not replace: S3's If-None-Match: *, an inbox
	// key): if it has one, it fails with ErrKeyExists and changes nothing
	// (the caller aborts its pending write). The check and the commit are
	// one transaction, so of two racing creates of one key one fails.
	CommitCreate(ctx context.Context, e Entry) error
	// CommitReplace is CommitPut for a write that must replace one
	// particular object: the key's current entry must be object id prev.
	// If the key has another current entry or none (it was written or
	// deleted since the caller read prev), it fails with ErrStaleVersion
	// and changes nothing (the caller aborts its pending write). The check
	// and the commit are one transaction. Returns the replaced entry.
	CommitReplace(ctx context.Context, e Entry, prev keys.ID) (*Entry, error)
	// CommitPutBatch is CommitPut for many entries in one transaction, in
	// order, with the same result as calling CommitPut for each: all are
	// committed or none (the error names the entry that failed).
	// replaced[i] is the entry es[i] replaced, or nil. It is the fast way
	// to record many small files.
	CommitPutBatch(ctx context.Context, es []Entry) (replaced []*Entry, err error)
	// AbortPut removes a pending row (the caller removed or never wrote the
	// store object). ErrNotFound if there is none. A version it reserved
	// stays used.
	AbortPut(ctx context.Context, id keys.ID) error
	// ListPending returns every pending write, oldest first.
	ListPending(ctx context.Context) ([]Pending, error)

	// CommitSystem atomically removes the pending row and records s.
	// ErrExists if s.ObjectID is already a system object.
	CommitSystem(ctx context.Context, s SystemObject) error
	// SystemObjects returns every system object, oldest first.
	SystemObjects(ctx context.Context) ([]SystemObject, error)
	// CommitBucketKey is CommitSystem for a key journal entry together with
	// the bucket key record it holds, in one transaction: both or neither.
	// ErrExists if the bucket already has that key version (another
	// process created it first).
	CommitBucketKey(ctx context.Context, s SystemObject, k BucketKey) error

	Get(ctx context.Context, bucket, key string) (Entry, error) // ErrNotFound
	// List calls fn for the entries of bucket whose key starts with prefix,
	// in key order (bytewise), starting after startAfter. It reads in pages
	// and holds no database resources while fn runs, so fn may call the
	// catalog; each page is a fresh snapshot, so an entry changed during the
	// walk may or may not be seen, but no key is seen twice. An error from
	// fn stops the walk and is returned as is.
	List(ctx context.Context, bucket, prefix, startAfter string, fn func(Entry) error) error
	// All calls fn for every current entry, ordered by bucket then key, in
	// pages as List does.
	All(ctx context.Context, fn func(Entry) error) error
	// EntriesAfter returns up to limit current entries with an object id
	// greater than after (nil: from the first), in object id order, which
	// is the lexical order of their store names (ordered.go).
	EntriesAfter(ctx context.Context, after []byte, limit int) ([]Entry, error)
	Count(ctx context.Context) (int64, error)
	// CountByKeyVersion counts the current entries of each bucket by the
	// bucket key version their data keys are wrapped under: bucket name →
	// version → count.
	CountByKeyVersion(ctx context.Context) (map[string]map[uint32]int64, error)

	// Delete moves the current entry to history as Deleted and its object
	// id to garbage; returns it. ErrNotFound if there is none.
	Delete(ctx context.Context, bucket, key string) (Entry, error)

	// Rewrap replaces the wrapped data key of the current entry of
	// (bucket,key) after a bucket key rotation, provided that entry is still
	// object id (ErrNotFound if there is no entry, ErrStaleVersion if it was
	// replaced meanwhile).
	Rewrap(ctx context.Context, bucket, key string, id keys.ID, keyVersion uint32, wrapped []byte) error

	// Key version lifecycle (keyversions.go).
	KeyVersions

	// Garbage: object ids whose store objects may be deleted.
	Garbage(ctx context.Context) ([]keys.ID, error)
	// ForgetGarbage drops id from the garbage list once its store object is
	// gone; its history row stays. ErrNotFound if id is not garbage.
	ForgetGarbage(ctx context.Context, id keys.ID) error

	// ForgetNames removes every record of the names of bucket/key (key
	// empty: every key of bucket) that outlives the objects — the
	// versions reserved and the history — once a shred has destroyed every
	// key that could open them, so that neither the catalog nor its later
	// backups name what was shredded. ErrNotEmpty if one of those names
	// has a current object or a pending write.
	ForgetNames(ctx context.Context, bucket, key string) error

	// History lookups for classification; ErrNotFound when absent.
	HistoryByObjectID(ctx context.Context, id keys.ID) (HistoryEntry, error)
	// CurrentByPin finds the current entry with this pin.
	CurrentByPin(ctx context.Context, pin [32]byte) (Entry, error)
	// HistoryByPin finds the most recent history entry with this pin.
	HistoryByPin(ctx context.Context, pin [32]byte) (HistoryEntry, error)
	// CurrentByCommit and HistoryByCommit find an entry by the data key
	// commitment in its header, which a reader has without reading the
	// whole object (history: the most recent).
	CurrentByCommit(ctx context.Context, commit [32]byte) (Entry, error)
	HistoryByCommit(ctx context.Context, commit [32]byte) (HistoryEntry, error)
	// Lookup says where the catalog knows id from, checking current,
	// pending, garbage, history and system objects in that order (an id in
	// garbage is also in history; Lookup says KnownGarbage until
	// ForgetGarbage). KnownNone if nowhere.
	Lookup(ctx context.Context, id keys.ID) (Known, error)

	// Changes returns how many changes the catalog has committed: object
	// commits and deletions, bucket creations and deletions, bucket key
	// records and rewraps. It only grows (Restore does not count), so
	// the difference of two readings counts the changes between them.
	Changes(ctx context.Context) (uint64, error)
	// View runs fn with a consistent read-only snapshot of the whole
	// catalog (one read transaction): every read through it sees the
	// catalog as of its first read, whatever other writers commit
	// meanwhile, and writers are not blocked. The Snapshot is valid only
	// during fn.
	View(ctx context.Context, fn func(Snapshot) error) error
	// LastBackup returns the record of the newest catalog backup this
	// catalog committed or was restored from; ErrNotFound if none.
	LastBackup(ctx context.Context) (BackupState, error)
	// CommitBackup is CommitSystem for a catalog backup (s.Kind is
	// KindBackup and s.ObjectID is b.ObjectID) together with b as the new
	// LastBackup, in one transaction. It fails with ErrStaleVersion, and
	// changes nothing, if the catalog already records a backup with
	// b.Sequence or a higher one (another process backed up first), and
	// with ErrNotPending if the write is no longer pending.
	CommitBackup(ctx context.Context, s SystemObject, b BackupState) error
	// SetLastBackup records b as LastBackup without a system object (a
	// recovery restores the backup's own record with Restore). Like
	// CommitBackup it refuses a sequence not above the recorded one.
	SetLastBackup(ctx context.Context, b BackupState) error
	// RetireSystem forgets system object id and lists it as garbage, so
	// that its store object is deleted (an old catalog backup).
	// ErrNotFound if it is not a system object.
	RetireSystem(ctx context.Context, id keys.ID) error

	// Head returns the catalog head (head.go): the sequence number of
	// the last write committed and its hash, read afresh.
	Head(ctx context.Context) (Head, error)
	// HeadAt returns the hash of head seq; ok is false if seq is beyond
	// the current head or was pruned (the newest 65,536 are kept).
	HeadAt(ctx context.Context, seq uint64) (hash [32]byte, ok bool, err error)

	// Restore inserts buckets, bucket keys, entries and system objects
	// wholesale during recovery, and raises the version reservation of
	// each (bucket, key) in rs to at least the version given (never lowers
	// one, so that versions recorded before a recovery are never assigned
	// again), in one transaction per call: all or nothing. It may be called several times with disjoint records (for
	// example entries in batches); a record already present fails the call
	// with ErrExists. Entries need their bucket (given here or earlier).
	Restore(ctx context.Context, buckets []Bucket, bkeys []BucketKey, entries []Entry, sys []SystemObject, rs []Reservation) error
}
