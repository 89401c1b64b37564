package access

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// ErrNotFound: no access key with that id. It is catalog.ErrNotFound, so
// callers that classify catalog errors need nothing new.
var ErrNotFound = catalog.ErrNotFound

// DefaultMaxStale is how long a change to the table may go unseen by a
// Table that did not make it.
const DefaultMaxStale = time.Second

// Options configure Open.
type Options struct {
	// MaxStale bounds the age of what a check sees: every check begun
	// MaxStale or more after a change (by any process) sees it. It costs
	// one catalog read per MaxStale while checks are made. 0 is
	// DefaultMaxStale.
	MaxStale time.Duration
	// Log receives what the table cannot use (a record that does not
	// authenticate) and why; never a secret. nil: slog.Default().
	Log *slog.Logger
}

// Key is an access key as it is shown: never its secret.
type Key struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Admin   bool      `json:"admin"`
	Grants  []Grant   `json:"grants"`
	// Damaged: the record does not authenticate under the table key (it
	// was edited, or the table key is not the one that sealed it). The
	// key grants nothing; revoke it and add a new one.
	Damaged bool `json:"damaged,omitempty"`
}

// MarshalText writes the permissions as String does.
func (p Perm) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Credentials are a new key's id and secret, returned once by Add. The
// secret is behind a pointer, so that printing a Credentials with %v shows
// no secret.
type Credentials struct {
	ID string
	s  *secretText
}

type secretText struct{ b []byte }

// Secret returns the secret access key, for the one time it is shown.
func (c *Credentials) Secret() string { return string(c.s.b) }

// Wipe clears the secret's bytes (copies made by Secret are not reached).
func (c *Credentials) Wipe() { clear(c.s.b) }

// Table is the access table of one repository. It is safe for concurrent
// use, and several Tables (in one process or several) may share a catalog.
type Table struct {
	st       catalog.AccessStore
	repo     keys.ID
	src      keys.Source
	maxStale time.Duration
	log      *slog.Logger

	keyMu  sync.RWMutex
	tkey   secret.Key     // zero until the table has a key
	trec   tableKeyRecord // the record tkey came from
	sealed bool           // see Seal; guarded by keyMu

	loadMu sync.Mutex
	snap   atomic.Pointer[snapshot]
	closed atomic.Bool
}

// snapshot is the table as read at one version.
type snapshot struct {
	version uint64
	checked atomic.Int64 // clock() when version was last confirmed, taken before the read
	keys    map[string]*entry
	damaged []Key

	policies sync.Map // bucket name → policy JSON
}

type entry struct {
	key    Key
	rec    *record
	grants map[string]Perm
}

// epoch gives clock a monotonic reading: wall-clock steps do not move it.
var epoch = time.Now()

// clock returns the monotonic time since epoch, or a test's clock.
func clock() time.Duration {
	if c := testClock.Load(); c != nil {
		return (*c)()
	}
	return time.Since(epoch)
}

var testClock atomic.Pointer[func() time.Duration]

// SetClockForTesting makes every Table read staleness from c instead of
// the monotonic clock, so that tests move time on instead of sleeping. It
// returns a function that restores the real clock, and panics outside a
// test binary.
func SetClockForTesting(c func() time.Duration) (restore func()) {
	if !testing.Testing() {
		panic("access: SetClockForTesting called outside a test binary")
	}
	old := testClock.Swap(&c)
	return func() { testClock.Store(old) }
}

// fresh reports whether s was confirmed less than MaxStale ago.
func (t *Table) fresh(s *snapshot) bool {
	return s != nil && clock()-time.Duration(s.checked.Load()) < t.maxStale
}

// Open returns the access table kept in cat (which must implement
// catalog.AccessStore), whose table key src wraps for repository repo.
// A table that has no key yet gets one with its first Add. Open fails
// with keys.ErrNotMyKey if the table key does not open under src.
func Open(ctx context.Context, cat catalog.Catalog, repo keys.ID, src keys.Source, o Options) (*Table, error) {
	st, ok := cat.(catalog.AccessStore)
	if !ok {
		return nil, fmt.Errorf("access: catalog %T keeps no access table", cat)
	}
	if o.MaxStale <= 0 {
		o.MaxStale = DefaultMaxStale
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	t := &Table{st: st, repo: repo, src: src, maxStale: o.MaxStale, log: o.Log}
	if err := t.Reload(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Close wipes the table key. The Table is unusable afterwards.
func (t *Table) Close() {
	t.closed.Store(true)
	t.keyMu.Lock()
	t.tkey.Wipe()
	t.tkey = secret.Key{}
	t.keyMu.Unlock()
	t.snap.Store(nil)
}

// ErrSealed: the table's key was wiped by Seal; secrets cannot be opened
// (no request can be authenticated) until Unseal.
var ErrSealed = errors.New("access: keys sealed")

// Seal wipes the table key, so that no access secret can be opened, until
// Unseal gives the table a key source again: what a long-running gateway
// does when the host's posture fails. Grants and names stay readable.
func (t *Table) Seal() {
	t.keyMu.Lock()
	defer t.keyMu.Unlock()
	t.tkey.Wipe()
	t.tkey, t.sealed = secret.Key{}, true
}

// Unseal lets the table unwrap its key again, under src (the repository's
// keyring opened anew); the key is unwrapped when next needed.
func (t *Table) Unseal(src keys.Source) {
	t.keyMu.Lock()
	defer t.keyMu.Unlock()
	t.src, t.sealed = src, false
}

// Version returns the table version the Table last read; it grows with
// every change.
func (t *Table) Version() uint64 {
	if s := t.snap.Load(); s != nil {
		return s.version
	}
	return 0
}

// Reload reads the table now, whatever MaxStale says.
func (t *Table) Reload(ctx context.Context) error {
	t.loadMu.Lock()
	defer t.loadMu.Unlock()
	_, err := t.load(ctx, clock())
	return err
}

// current returns a snapshot confirmed within MaxStale, reading the
// table's version (and, when it changed, the table) if needed. When the
// catalog cannot be read it fails: checks fail closed.
func (t *Table) current(ctx context.Context) (*snapshot, error) {
	if s := t.snap.Load(); t.fresh(s) {
		return s, nil
	}
	t.loadMu.Lock()
	defer t.loadMu.Unlock()
	s := t.snap.Load()
	if t.fresh(s) {
		return s, nil
	}
	start := clock()
	if s != nil {
		v, err := t.st.AccessVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("access: reading the table version: %w", err)
		}
		if v == s.version {
			s.checked.Store(int64(start))
			return s, nil
		}
	}
	return t.load(ctx, start)
}

// errClosed: the Table was closed.
var errClosed = errors.New("access: the table is closed")

// load reads the whole table; t.loadMu is held.
func (t *Table) load(ctx context.Context, start time.Duration) (*snapshot, error) {
	if t.closed.Load() {
		return nil, errClosed
	}
	v, recs, err := t.st.AccessKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("access: reading the table: %w", err)
	}
	k, err := t.tableKey(ctx, false)
	if err != nil {
		return nil, err
	}
	s := &snapshot{version: v, keys: map[string]*entry{}}
	s.checked.Store(int64(start))
	for id, b := range recs {
		e, err := t.openRecord(k, id, b)
		if err != nil {
			// The log says which layer failed; to a client the key is
			// simply unknown.
			t.log.Warn("access key record does not authenticate; it grants nothing", "id", id, "err", err)
			d := Key{ID: id, Damaged: true}
			if r, derr := decodeRecord(b); derr == nil {
				d = r.key(id)
				d.Damaged = true
			}
			s.damaged = append(s.damaged, d)
			continue
		}
		s.keys[id] = e
	}
	t.snap.Store(s)
	return s, nil
}

// openRecord decodes a record and checks that its secret opens under k
// with the record's associated data.
func (t *Table) openRecord(k secret.Key, id string, b []byte) (*entry, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: malformed id", errOpen)
	}
	r, err := decodeRecord(b)
	if err != nil {
		return nil, err
	}
	if !k.Valid() {
		return nil, fmt.Errorf("%w: the table has no key", errOpen)
	}
	sec, err := open(k, secretAD(t.repo, id, r), r.Sealed)
	if err != nil {
		return nil, err
	}
	clear(sec)
	e := &entry{key: r.key(id), rec: r, grants: map[string]Perm{}}
	for _, g := range e.key.Grants {
		e.grants[g.Bucket] = g.Perms
	}
	return e, nil
}

// tableKey returns the table key, reading (and unwrapping) its record if
// this Table has not yet, and making one if there is none and create is
// set. Without create and without a record it returns a zero key.
func (t *Table) tableKey(ctx context.Context, create bool) (secret.Key, error) {
	t.keyMu.RLock()
	k := t.tkey
	t.keyMu.RUnlock()
	if k.Valid() {
		return k, nil
	}
	t.keyMu.Lock()
	defer t.keyMu.Unlock()
	if t.tkey.Valid() {
		return t.tkey, nil
	}
	if t.closed.Load() {
		return secret.Key{}, errClosed
	}
	if t.sealed {
		return secret.Key{}, ErrSealed
	}
	b, err := t.st.AccessTableKey(ctx)
	if errors.Is(err, catalog.ErrNotFound) {
		if !create {
			return secret.Key{}, nil
		}
		if b, err = t.newTableKey(ctx); err != nil {
			return secret.Key{}, err
		}
	} else if err != nil {
		return secret.Key{}, fmt.Errorf("access: reading the table key: %w", err)
	}
	var rec tableKeyRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Format != recordFormat {
		return secret.Key{}, fmt.Errorf("access: the table key record is malformed: %w", keys.ErrNotMyKey)
	}
	k, err = t.src.Unwrap(ctx, rec.wrapped(), tableKeyAD(t.repo, rec.KEKVersion, rec.KeyVersion))
	if err != nil {
		return secret.Key{}, fmt.Errorf("access: unwrapping the table key: %w", err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil || subtle.ConstantTimeCompare(kc, rec.KeyCheck) != 1 {
		k.Wipe()
		return secret.Key{}, fmt.Errorf("access: the table key does not match its key check: %w", keys.ErrNotMyKey)
	}
	t.tkey, t.trec = k, rec
	return k, nil
}

// newTableKey makes a table key, wraps it under the source's primary root
// key and records it unless another writer recorded one first; it returns
// the record in the catalog.
func (t *Table) newTableKey(ctx context.Context) ([]byte, error) {
	k, err := secret.New()
	if err != nil {
		return nil, err
	}
	defer k.Wipe() // the caller unwraps the recorded key, whoever made it
	b, err := t.wrapTableKey(ctx, k)
	if err != nil {
		return nil, err
	}
	return t.st.InitAccessTableKey(ctx, b)
}

func (t *Table) wrapTableKey(ctx context.Context, k secret.Key) ([]byte, error) {
	root := t.src.Primary()
	w, err := t.src.Wrap(ctx, root, tableKeyAD(t.repo, root, tableKeyVersion), k)
	if err != nil {
		return nil, fmt.Errorf("access: wrapping the table key: %w", err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil {
		return nil, err
	}
	return json.Marshal(tableKeyRecord{Format: recordFormat, Source: uint8(w.Source), Alg: uint8(w.Alg),
		KEKVersion: w.KEKVersion, KeyVersion: tableKeyVersion, Wrapped: w.Data, KeyCheck: kc})
}

// Rewrap wraps the table key under the key source's primary root key
// version, if it is wrapped under another: what a root key rotation does
// before the old version is destroyed.
func (t *Table) Rewrap(ctx context.Context) error {
	k, err := t.tableKey(ctx, false)
	if err != nil || !k.Valid() {
		return err
	}
	t.keyMu.Lock()
	defer t.keyMu.Unlock()
	if t.trec.KEKVersion == t.src.Primary() {
		return nil
	}
	old, err := json.Marshal(t.trec)
	if err != nil {
		return err
	}
	cur, err := t.st.AccessTableKey(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		// Another process rewrapped it (or replaced it); forget ours and
		// read theirs at the next use.
		t.tkey.Wipe()
		t.tkey, t.trec = secret.Key{}, tableKeyRecord{}
		return nil
	}
	b, err := t.wrapTableKey(ctx, k)
	if err != nil {
		return err
	}
	if err := t.st.ReplaceAccessTableKey(ctx, cur, b); err != nil {
		return err
	}
	return json.Unmarshal(b, &t.trec)
}

// Add makes a new access key as s says and records it. The secret is in
// the returned Credentials and nowhere else in the clear; the caller shows
// it once and wipes it. Errors about s wrap ErrInvalid.
func (t *Table) Add(ctx context.Context, s Spec) (*Credentials, Key, error) {
	grants, err := s.normalize()
	if err != nil {
		return nil, Key{}, err
	}
	for range 3 {
		id, err := newID()
		if err != nil {
			return nil, Key{}, err
		}
		sec, err := randomText(SecretLen, secretAlphabet)
		if err != nil {
			return nil, Key{}, err
		}
		c, k, err := t.add(ctx, id, sec, s.Name, s.Admin, grants, time.Now())
		if err != nil {
			clear(sec)
		}
		if errors.Is(err, catalog.ErrExists) { // an id drawn twice: draw again
			continue
		}
		return c, k, err
	}
	return nil, Key{}, errors.New("access: could not draw an unused access key id")
}

// add records a key with the given id and secret; grants are normalized.
// On success the Credentials own sec.
func (t *Table) add(ctx context.Context, id string, sec []byte, name string, admin bool, grants []Grant, created time.Time) (*Credentials, Key, error) {
	k, err := t.tableKey(ctx, true)
	if err != nil {
		return nil, Key{}, err
	}
	r := &record{Format: recordFormat, Name: name, Created: created.UnixNano(), Admin: admin}
	for _, g := range grants {
		r.Grants = append(r.Grants, recordGrant{Bucket: g.Bucket, Perms: uint8(g.Perms)})
	}
	if r.Sealed, err = seal(k, secretAD(t.repo, id, r), sec); err != nil {
		return nil, Key{}, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, Key{}, err
	}
	if _, err := t.st.AddAccessKey(ctx, id, b); err != nil {
		return nil, Key{}, fmt.Errorf("access: %w", err)
	}
	t.invalidate()
	return &Credentials{ID: id, s: &secretText{b: sec}}, r.key(id), nil
}

// Revoke removes access key id. A gateway refuses it within MaxStale.
// ErrNotFound if there is no such key; ErrInvalid if id is not shaped
// like an access key id.
func (t *Table) Revoke(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q is not an access key id (%d characters A-Z, 0-9)", ErrInvalid, id, IDLen)
	}
	if _, err := t.st.RemoveAccessKey(ctx, id); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return fmt.Errorf("access key %q: %w", id, ErrNotFound)
		}
		return fmt.Errorf("access: %w", err)
	}
	t.invalidate()
	return nil
}

// invalidate makes the next check read the table.
func (t *Table) invalidate() {
	if s := t.snap.Load(); s != nil {
		s.checked.Store(int64(-t.maxStale))
	}
}

// List returns every access key, oldest first, read now; damaged records
// are listed with Damaged set.
func (t *Table) List(ctx context.Context) ([]Key, error) {
	t.loadMu.Lock()
	s, err := t.load(ctx, clock())
	t.loadMu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]Key, 0, len(s.keys)+len(s.damaged))
	for _, e := range s.keys {
		out = append(out, e.key)
	}
	out = append(out, s.damaged...)
	slices.SortFunc(out, func(a, b Key) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Get returns access key id as the table stands within MaxStale; false if
// there is none (or its record does not authenticate).
func (t *Table) Get(id string) (Key, bool) {
	e, err := t.lookup(id)
	if err != nil || e == nil {
		return Key{}, false
	}
	return e.key, true
}

// checkTimeout bounds the catalog reads of a check made without a context
// (the IAM interface and the permission checks have none).
const checkTimeout = 10 * time.Second

// lookup returns id's entry, nil if there is none.
func (t *Table) lookup(id string) (*entry, error) {
	s, err := t.check()
	if err != nil {
		return nil, err
	}
	return s.keys[id], nil
}

func (t *Table) check() (*snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	return t.current(ctx)
}

// withSecret calls fn with e's secret, cleared afterwards.
func (t *Table) withSecret(e *entry, fn func(sec []byte)) error {
	k, err := t.tableKey(context.Background(), false)
	if err != nil {
		return err
	}
	sec, err := open(k, secretAD(t.repo, e.key.ID, e.rec), e.rec.Sealed)
	if err != nil {
		return err
	}
	defer clear(sec)
	fn(sec)
	return nil
}
