package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/holdfast/holdfast/internal/keys"
)

// maxVersion is the largest version SQLite's INTEGER holds.
const maxVersion = 1<<63 - 1

// ---- versions, lookup ----

func (c *sqlCatalog) NextVersion(ctx context.Context, bucket, key string) (uint64, error) {
	var reserved int64
	err := c.queryRow(ctx, `SELECT reserved FROM versions WHERE bucket = ? AND key = ?`, bucket, key).Scan(&reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: next version of %q/%q: %w", bucket, key, err)
	}
	return uint64(reserved) + 1, nil
}

// reserve raises the highest version recorded for (bucket,key) to v.
func (t *txn) reserve(bucket, key string, v uint64) error {
	_, err := t.exec(upsertVersions+` VALUES (?, ?, ?)`+onVersionConflict, bucket, key, int64(v))
	return err
}

const (
	upsertVersions = `INSERT INTO versions (bucket, key, reserved)`
	// Writes only when the version grows: a commit of a reserved version
	// changes nothing.
	onVersionConflict = ` ON CONFLICT (bucket, key) DO UPDATE SET reserved = excluded.reserved
		WHERE excluded.reserved > versions.reserved`
)

// highestCommitted is an SQL expression: the highest version ever current
// for (bucket,key), given as SQL expressions.
func highestCommitted(bucket, key string) string {
	return `greatest(coalesce((SELECT version FROM objects WHERE bucket = ` + bucket + ` AND key = ` + key + `), 0),
		coalesce((SELECT max(version) FROM history WHERE bucket = ` + bucket + ` AND key = ` + key + `), 0))`
}

// knownIn is an SQL condition: object id ?id is recorded in table.
func knownIn(table, id string) string {
	return `EXISTS (SELECT 1 FROM ` + table + ` WHERE object_id = ` + id + `)`
}

var lookupQuery = fmt.Sprintf(`SELECT CASE
	WHEN %s THEN %d
	WHEN %s THEN %d
	WHEN %s THEN %d
	WHEN %s THEN %d
	WHEN %s THEN %d
	ELSE %d END`,
	knownIn("objects", "?1"), KnownCurrent,
	knownIn("pending", "?1"), KnownPending,
	knownIn("garbage", "?1"), KnownGarbage,
	knownIn("history", "?1"), KnownHistory,
	knownIn("system_objects", "?1"), KnownSystem,
	KnownNone)

func (t *txn) lookup(id keys.ID) (Known, error) {
	var k int
	err := t.queryRow(lookupQuery, id[:]).Scan(&k)
	return Known(k), err
}

func (c *sqlCatalog) Lookup(ctx context.Context, id keys.ID) (Known, error) {
	var k int
	if err := c.queryRow(ctx, lookupQuery, id[:]).Scan(&k); err != nil {
		return KnownNone, fmt.Errorf("catalog: lookup %x: %w", id, err)
	}
	return Known(k), nil
}

// ---- pending writes ----

func validPending(p *Pending) error {
	switch {
	case p.Kind < KindObject || p.Kind > KindCheckpoint:
		return fmt.Errorf("unknown kind %d", p.Kind)
	case p.Kind == KindObject && (p.Bucket == "" || p.Key == ""):
		return errors.New("object write needs a bucket and a key")
	case p.Version > maxVersion:
		return fmt.Errorf("version %d out of range", p.Version)
	}
	return nil
}

func pendingErr(p *Pending, err error) error {
	if p.Kind == KindObject {
		return fmt.Errorf("catalog: begin put %q/%q version %d: %w", p.Bucket, p.Key, p.Version, err)
	}
	return fmt.Errorf("catalog: begin write of %x: %w", p.ObjectID, err)
}

const insertPending = `INSERT INTO pending (object_id, kind, bucket, key, version, owner, started, key_version)`

// beginState is everything BeginPut checks, in one query: bucket ?1
// exists, the highest version reserved for (?1,?2), object id ?3 known.
var beginState = `SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?1),
	coalesce((SELECT reserved FROM versions WHERE bucket = ?1 AND key = ?2), 0),
	` + knownIn("objects", "?3") + ` OR ` + knownIn("pending", "?3") + ` OR ` + knownIn("garbage", "?3") +
	` OR ` + knownIn("history", "?3") + ` OR ` + knownIn("system_objects", "?3")

func (c *sqlCatalog) BeginPut(ctx context.Context, p Pending) error {
	if err := validPending(&p); err != nil {
		return pendingErr(&p, err)
	}
	err := c.write(ctx, func(t *txn) error {
		var bucketOK, known bool
		var reserved int64
		if err := t.queryRow(beginState, p.Bucket, p.Key, p.ObjectID[:]).Scan(&bucketOK, &reserved, &known); err != nil {
			return err
		}
		switch {
		case known:
			return fmt.Errorf("object id %x: %w", p.ObjectID, ErrExists)
		case p.Kind != KindObject:
		case !bucketOK:
			return fmt.Errorf("bucket %q: %w", p.Bucket, ErrNotFound)
		}
		if err := t.checkKeyVersion(p.Bucket, p.KeyVersion); err != nil {
			return err
		}
		switch {
		case p.Kind != KindObject:
		case p.Version > 0 && p.Version <= uint64(reserved):
			return fmt.Errorf("%w: version %d already recorded", ErrStaleVersion, reserved)
		case p.Version > 0:
			if err := t.reserve(p.Bucket, p.Key, p.Version); err != nil {
				return err
			}
		}
		_, err := t.exec(insertPending+` VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ObjectID[:], int64(p.Kind), p.Bucket, p.Key, int64(p.Version), p.Owner, nanos(p.Started), int64(p.KeyVersion))
		return exists(err)
	})
	if err != nil {
		return pendingErr(&p, err)
	}
	return nil
}

func (c *sqlCatalog) AbortPut(ctx context.Context, id keys.ID) error {
	err := c.write(ctx, func(t *txn) error {
		return affected(t.exec(`DELETE FROM pending WHERE object_id = ?`, id[:]))
	})
	if err != nil {
		return fmt.Errorf("catalog: abort write of %x: %w", id, err)
	}
	return nil
}

// affected turns a result that affected no row into ErrNotFound.
func affected(r sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := r.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (c *sqlCatalog) ListPending(ctx context.Context) ([]Pending, error) {
	rows, err := c.query(ctx, `SELECT object_id, kind, bucket, key, version, owner, started, key_version
		FROM pending ORDER BY started, object_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: pending writes: %w", err)
	}
	defer rows.Close()
	var ps []Pending
	for rows.Next() {
		var p Pending
		var kind, version, started, keyVersion int64
		if err := rows.Scan(fixed{p.ObjectID[:], "object id"}, &kind, &p.Bucket, &p.Key, &version, &p.Owner, &started, &keyVersion); err != nil {
			return nil, fmt.Errorf("catalog: pending writes: %w", err)
		}
		p.Kind, p.Version, p.Started, p.KeyVersion = int(kind), uint64(version), fromNanos(started), uint32(keyVersion)
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: pending writes: %w", err)
	}
	return ps, nil
}

// ---- entries ----

const entryCols = `bucket, key, version, object_id, size, stored_len, manifest_off, manifest_len,
	pin, key_commit, key_version, wrapped, modified, content_type, meta, segments`

const entryNCols = 16

func entryArgs(e *Entry) []any {
	return []any{e.Bucket, e.Key, int64(e.Version), e.ObjectID[:], e.Size, e.StoredLen,
		e.ManifestOff, e.ManifestLen, e.Pin[:], e.Commit[:], int64(e.KeyVersion), blob(e.Wrapped),
		nanos(e.Modified), e.ContentType, encodeMeta(e.Meta), int64(e.Segments)}
}

type scanner interface{ Scan(...any) error }

func scanEntry(s scanner) (Entry, error) {
	var e Entry
	var version, keyVersion, modified, segments int64
	var meta []byte
	err := s.Scan(&e.Bucket, &e.Key, &version, fixed{e.ObjectID[:], "object id"}, &e.Size, &e.StoredLen,
		&e.ManifestOff, &e.ManifestLen, fixed{e.Pin[:], "pin"}, fixed{e.Commit[:], "commit"},
		&keyVersion, &e.Wrapped, &modified, &e.ContentType, &meta, &segments)
	if err != nil {
		return Entry{}, err
	}
	e.Version, e.KeyVersion, e.Segments = uint64(version), uint32(keyVersion), int(segments)
	e.Wrapped = nilIfEmpty(e.Wrapped)
	e.Modified = fromNanos(modified)
	if e.Meta, err = decodeMeta(meta); err != nil {
		return Entry{}, fmt.Errorf("%q/%q: %w", e.Bucket, e.Key, err)
	}
	return e, nil
}

func validEntry(e *Entry) error {
	switch {
	case e.Bucket == "" || e.Key == "":
		return errors.New("entry needs a bucket and a key")
	case e.Version == 0 || e.Version > maxVersion:
		return fmt.Errorf("version %d out of range", e.Version)
	case e.Size < 0 || e.StoredLen < 0 || e.ManifestOff < 0 || e.ManifestLen < 0 || e.Segments < 0:
		return errors.New("negative size")
	}
	return nil
}

func commitErr(e *Entry, err error) error {
	return fmt.Errorf("catalog: commit %q/%q version %d: %w", e.Bucket, e.Key, e.Version, err)
}

// current returns the current entry of (bucket,key), or nil.
func (t *txn) current(bucket, key string) (*Entry, error) {
	e, err := scanEntry(t.queryRow(`SELECT `+entryCols+` FROM objects WHERE bucket = ? AND key = ?`, bucket, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// retire moves cur from the current table to history in state st and its
// object id to garbage.
func (t *txn) retire(cur *Entry, st HistoryState) error {
	if _, err := t.exec(`INSERT INTO history (object_id, bucket, key, version, pin, key_commit, state, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		cur.ObjectID[:], cur.Bucket, cur.Key, int64(cur.Version), cur.Pin[:], cur.Commit[:], int64(st), t.now); err != nil {
		return err
	}
	if _, err := t.exec(`INSERT INTO garbage (object_id, at) VALUES (?, ?)`, cur.ObjectID[:], t.now); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM objects WHERE bucket = ? AND key = ?`, cur.Bucket, cur.Key)
	return err
}

// pinIs is an SQL condition on objects: the pin is p (through the index
// on its first 8 bytes). The equality comes first: it gives a parameter
// its type (BYTEA) on PostgreSQL, which substr alone would take for text.
func pinIs(p string) string {
	return `pin = ` + p + ` AND substr(pin, 1, 8) = substr(` + p + `, 1, 8)`
}

// commitState is everything CommitPut checks, in one query: bucket ?1
// exists; the highest version ever current for (?1,?2), and the current
// one; object id ?3 recorded anywhere but pending; pin ?4 current. An id in history or
// garbage must never become current again: the garbage collector would
// delete its store object. A pending row for ?3 proves the rest: BeginPut
// checked the id, and every other use of it removes the pending row.
var commitState = `SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?1),
	` + highestCommitted("?1", "?2") + `,
	coalesce((SELECT version FROM objects WHERE bucket = ?1 AND key = ?2), 0),
	NOT ` + knownIn("pending", "?3") + ` AND (` + knownIn("objects", "?3") + ` OR ` + knownIn("garbage", "?3") +
	` OR ` + knownIn("history", "?3") + ` OR ` + knownIn("system_objects", "?3") + `),
	EXISTS (SELECT 1 FROM objects WHERE ` + pinIs("?4") + `)`

func (c *sqlCatalog) CommitPut(ctx context.Context, e Entry) (*Entry, error) {
	if err := validEntry(&e); err != nil {
		return nil, commitErr(&e, err)
	}
	var old *Entry
	err := c.write(ctx, func(t *txn) (err error) {
		old, err = t.commitPut(&e, false, nil)
		return err
	})
	if err != nil {
		return nil, commitErr(&e, err)
	}
	return old, nil
}

func (c *sqlCatalog) CommitReplace(ctx context.Context, e Entry, prev keys.ID) (*Entry, error) {
	if err := validEntry(&e); err != nil {
		return nil, commitErr(&e, err)
	}
	var old *Entry
	err := c.write(ctx, func(t *txn) (err error) {
		old, err = t.commitPut(&e, false, &prev)
		return err
	})
	if err != nil {
		return nil, commitErr(&e, err)
	}
	return old, nil
}

func (c *sqlCatalog) CommitCreate(ctx context.Context, e Entry) error {
	if err := validEntry(&e); err != nil {
		return commitErr(&e, err)
	}
	err := c.write(ctx, func(t *txn) error {
		_, err := t.commitPut(&e, true, nil)
		return err
	})
	if err != nil {
		return commitErr(&e, err)
	}
	return nil
}

// commitPut is CommitPut (CommitCreate with createOnly, CommitReplace
// with replacing) inside a transaction (a multipart completion commits
// its upload's removal with it).
func (t *txn) commitPut(e *Entry, createOnly bool, replacing *keys.ID) (old *Entry, err error) {
	var bucketOK, known, pinUsed bool
	var high, current int64
	if err := t.queryRow(commitState, e.Bucket, e.Key, e.ObjectID[:], e.Pin[:]).Scan(&bucketOK, &high, &current, &known, &pinUsed); err != nil {
		return nil, err
	}
	switch {
	case !bucketOK:
		return nil, fmt.Errorf("bucket %q: %w", e.Bucket, ErrNotFound)
	case createOnly && current > 0:
		// Before the version check: a create that another writer's commit
		// overtook finds the key taken, whichever version it reserved.
		return nil, fmt.Errorf("%s/%s: %w", e.Bucket, e.Key, ErrKeyExists)
	case e.Version <= uint64(high):
		return nil, fmt.Errorf("%w: version %d already committed", ErrStaleVersion, high)
	case known:
		return nil, fmt.Errorf("object id %x: %w", e.ObjectID, ErrExists)
	case pinUsed:
		return nil, fmt.Errorf("pin %x: %w", e.Pin, ErrExists)
	case replacing != nil && current == 0:
		return nil, fmt.Errorf("%w: %s/%s has no current object to replace", ErrStaleVersion, e.Bucket, e.Key)
	}
	if replacing != nil {
		// A replacement (a reseal: the same object with new attributes)
		// yields to a write of the key that began before it and has not
		// committed (a PUT, a copy, a multipart completion): committing
		// over it would make that write's older version stale, failing a
		// client's upload — or, for a completion, dropping its parts —
		// for a change of tags.
		var earlier int
		if err := t.queryRow(`SELECT
			(SELECT count(*) FROM pending WHERE bucket = ?1 AND key = ?2 AND kind = ?3 AND version > 0 AND version < ?4) +
			(SELECT count(*) FROM uploads WHERE bucket = ?1 AND key = ?2 AND completing <> 0 AND version > 0 AND version < ?4)`,
			e.Bucket, e.Key, KindObject, int64(e.Version)).Scan(&earlier); err != nil {
			return nil, err
		}
		if earlier > 0 {
			return nil, fmt.Errorf("%w: a write of %s/%s that began first is in progress", ErrStaleVersion, e.Bucket, e.Key)
		}
	}
	if current > 0 {
		if old, err = t.current(e.Bucket, e.Key); err != nil {
			return nil, err
		}
		if replacing != nil && (old == nil || old.ObjectID != *replacing) {
			return nil, fmt.Errorf("%w: %s/%s was replaced since object %x was read", ErrStaleVersion, e.Bucket, e.Key, replacing[:])
		}
		if err := t.retire(old, Superseded); err != nil {
			return nil, err
		}
	}
	if err := affected(t.exec(`DELETE FROM pending WHERE object_id = ?`, e.ObjectID[:])); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotPending
		}
		return nil, err
	}
	if _, err := t.exec(`INSERT INTO objects (`+entryCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, entryArgs(e)...); err != nil {
		return nil, exists(err)
	}
	if err := t.changed(1); err != nil {
		return nil, err
	}
	return old, t.reserve(e.Bucket, e.Key, e.Version)
}

func (c *sqlCatalog) Get(ctx context.Context, bucket, key string) (Entry, error) {
	e, err := scanEntry(c.queryRow(ctx, `SELECT `+entryCols+` FROM objects WHERE bucket = ? AND key = ?`, bucket, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("catalog: %q/%q: %w", bucket, key, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("catalog: %q/%q: %w", bucket, key, err)
	}
	return e, nil
}

// page reads up to pageSize entries with q and calls fn for each once the
// rows are closed. It returns the number read and the last entry.
func (c *sqlCatalog) page(ctx context.Context, fn func(Entry) error, q string, args ...any) (int, Entry, error) {
	rows, err := c.query(ctx, q, args...)
	if err != nil {
		return 0, Entry{}, err
	}
	es := make([]Entry, 0, pageSize)
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			rows.Close()
			return 0, Entry{}, err
		}
		es = append(es, e)
	}
	if err := rows.Close(); err != nil {
		return 0, Entry{}, err
	}
	if err := rows.Err(); err != nil {
		return 0, Entry{}, err
	}
	for _, e := range es {
		if err := fn(e); err != nil {
			return 0, Entry{}, errStop{err}
		}
	}
	if len(es) == 0 {
		return 0, Entry{}, nil
	}
	return len(es), es[len(es)-1], nil
}

// errStop carries an error from fn through page, so that it is returned
// unwrapped.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

func (c *sqlCatalog) List(ctx context.Context, bucket, prefix, startAfter string, fn func(Entry) error) error {
	after, inclusive := startAfter, false
	if prefix > startAfter {
		after, inclusive = prefix, true
	}
	end, bounded := prefixEnd(prefix)
	for {
		q := `SELECT ` + entryCols + ` FROM objects WHERE bucket = ? AND key > ?`
		if inclusive {
			q = `SELECT ` + entryCols + ` FROM objects WHERE bucket = ? AND key >= ?`
		}
		args := []any{bucket, after}
		if bounded {
			q += ` AND key < ?`
			args = append(args, end)
		}
		q += fmt.Sprintf(` ORDER BY key LIMIT %d`, pageSize)
		n, last, err := c.page(ctx, fn, q, args...)
		if stop, ok := err.(errStop); ok {
			return stop.err
		}
		if err != nil {
			return fmt.Errorf("catalog: list %q prefix %q: %w", bucket, prefix, err)
		}
		if n < pageSize {
			return nil
		}
		after, inclusive = last.Key, false
	}
}

func (c *sqlCatalog) All(ctx context.Context, fn func(Entry) error) error {
	bucket, key := "", ""
	for {
		n, last, err := c.page(ctx, fn, fmt.Sprintf(`SELECT `+entryCols+` FROM objects
			WHERE (bucket, key) > (?, ?) ORDER BY bucket, key LIMIT %d`, pageSize), bucket, key)
		if stop, ok := err.(errStop); ok {
			return stop.err
		}
		if err != nil {
			return fmt.Errorf("catalog: all entries: %w", err)
		}
		if n < pageSize {
			return nil
		}
		bucket, key = last.Bucket, last.Key
	}
}

func (c *sqlCatalog) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := c.queryRow(ctx, `SELECT count(*) FROM objects`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: count: %w", err)
	}
	return n, nil
}

func (c *sqlCatalog) CountByKeyVersion(ctx context.Context) (map[string]map[uint32]int64, error) {
	rows, err := c.query(ctx, `SELECT bucket, key_version, count(*) FROM objects GROUP BY bucket, key_version`)
	if err != nil {
		return nil, fmt.Errorf("catalog: count by key version: %w", err)
	}
	defer rows.Close()
	counts := map[string]map[uint32]int64{}
	for rows.Next() {
		var bucket string
		var ver uint32
		var n int64
		if err := rows.Scan(&bucket, &ver, &n); err != nil {
			return nil, fmt.Errorf("catalog: count by key version: %w", err)
		}
		if counts[bucket] == nil {
			counts[bucket] = map[uint32]int64{}
		}
		counts[bucket][ver] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: count by key version: %w", err)
	}
	return counts, nil
}

func (c *sqlCatalog) Delete(ctx context.Context, bucket, key string) (Entry, error) {
	var old *Entry
	err := c.write(ctx, func(t *txn) error {
		var err error
		if old, err = t.current(bucket, key); err != nil {
			return err
		}
		if old == nil {
			return ErrNotFound
		}
		if err := t.changed(1); err != nil {
			return err
		}
		return t.retire(old, Deleted)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("catalog: delete %q/%q: %w", bucket, key, err)
	}
	return *old, nil
}

func (c *sqlCatalog) Rewrap(ctx context.Context, bucket, key string, id keys.ID, keyVersion uint32, wrapped []byte) error {
	err := c.write(ctx, func(t *txn) error {
		r, err := t.exec(`UPDATE objects SET key_version = ?, wrapped = ?
			WHERE bucket = ? AND key = ? AND object_id = ?`,
			int64(keyVersion), blob(wrapped), bucket, key, id[:])
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return t.changed(1)
		}
		if cur, err := t.current(bucket, key); err != nil {
			return err
		} else if cur == nil {
			return ErrNotFound
		}
		return fmt.Errorf("%w: object %x is no longer current", ErrStaleVersion, id)
	})
	if err != nil {
		return fmt.Errorf("catalog: rewrap %q/%q: %w", bucket, key, err)
	}
	return nil
}

// ---- garbage, history, system objects ----

func (c *sqlCatalog) Garbage(ctx context.Context) ([]keys.ID, error) {
	rows, err := c.query(ctx, `SELECT object_id FROM garbage ORDER BY at, object_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: garbage: %w", err)
	}
	defer rows.Close()
	var ids []keys.ID
	for rows.Next() {
		var id keys.ID
		if err := rows.Scan(fixed{id[:], "object id"}); err != nil {
			return nil, fmt.Errorf("catalog: garbage: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: garbage: %w", err)
	}
	return ids, nil
}

func (c *sqlCatalog) ForgetGarbage(ctx context.Context, id keys.ID) error {
	err := c.write(ctx, func(t *txn) error {
		return affected(t.exec(`DELETE FROM garbage WHERE object_id = ?`, id[:]))
	})
	if err != nil {
		return fmt.Errorf("catalog: forget garbage %x: %w", id, err)
	}
	return nil
}

func (c *sqlCatalog) ForgetNames(ctx context.Context, bucket, key string) error {
	err := c.write(ctx, func(t *txn) error {
		var live bool
		if err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = ?1 AND (?2 = '' OR key = ?2))
			OR EXISTS (SELECT 1 FROM pending WHERE kind = `+strconv.Itoa(KindObject)+` AND bucket = ?1 AND (?2 = '' OR key = ?2))`,
			bucket, key).Scan(&live); err != nil {
			return err
		}
		if live {
			return ErrNotEmpty
		}
		for _, table := range []string{"versions", "history"} {
			if _, err := t.exec(`DELETE FROM `+table+` WHERE bucket = ?1 AND (?2 = '' OR key = ?2)`, bucket, key); err != nil {
				return err
			}
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: forget names in bucket %q: %w", bucket, err)
	}
	return nil
}

const historyCols = `object_id, bucket, key, version, pin, key_commit, state, at`

func scanHistory(s scanner) (HistoryEntry, error) {
	var h HistoryEntry
	var version, state, at int64
	err := s.Scan(fixed{h.ObjectID[:], "object id"}, &h.Bucket, &h.Key, &version, fixed{h.Pin[:], "pin"},
		fixed{h.Commit[:], "commit"}, &state, &at)
	h.Version, h.State, h.At = uint64(version), HistoryState(state), fromNanos(at)
	return h, err
}

func (c *sqlCatalog) history(ctx context.Context, what string, q string, arg []byte) (HistoryEntry, error) {
	h, err := scanHistory(c.queryRow(ctx, `SELECT `+historyCols+` FROM history WHERE `+q, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return HistoryEntry{}, fmt.Errorf("catalog: history with %s %x: %w", what, arg, ErrNotFound)
	}
	if err != nil {
		return HistoryEntry{}, fmt.Errorf("catalog: history with %s %x: %w", what, arg, err)
	}
	return h, nil
}

func (c *sqlCatalog) HistoryByObjectID(ctx context.Context, id keys.ID) (HistoryEntry, error) {
	return c.history(ctx, "object id", `object_id = ?`, id[:])
}

func (c *sqlCatalog) HistoryByPin(ctx context.Context, pin [32]byte) (HistoryEntry, error) {
	return c.history(ctx, "pin", `pin = ?1 AND substr(pin, 1, 8) = substr(?1, 1, 8)
		ORDER BY at DESC, version DESC LIMIT 1`, pin[:])
}

func (c *sqlCatalog) HistoryByCommit(ctx context.Context, commit [32]byte) (HistoryEntry, error) {
	return c.history(ctx, "commit", `key_commit = ?1 AND substr(key_commit, 1, 8) = substr(?1, 1, 8)
		ORDER BY at DESC, version DESC LIMIT 1`, commit[:])
}

func (c *sqlCatalog) current(ctx context.Context, what string, q string, arg []byte) (Entry, error) {
	e, err := scanEntry(c.queryRow(ctx, `SELECT `+entryCols+` FROM objects WHERE `+q, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("catalog: entry with %s %x: %w", what, arg, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("catalog: entry with %s %x: %w", what, arg, err)
	}
	return e, nil
}

func (c *sqlCatalog) CurrentByPin(ctx context.Context, pin [32]byte) (Entry, error) {
	return c.current(ctx, "pin", pinIs("?1"), pin[:])
}

func (c *sqlCatalog) CurrentByCommit(ctx context.Context, commit [32]byte) (Entry, error) {
	return c.current(ctx, "commit", `key_commit = ?1 AND substr(key_commit, 1, 8) = substr(?1, 1, 8) LIMIT 1`, commit[:])
}

func insertSystem(t *txn, s *SystemObject) error {
	if err := t.checkRoot(s.RootVersion); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO system_objects (object_id, kind, pin, stored_len, manifest_off, manifest_len, created)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		s.ObjectID[:], int64(s.Kind), s.Pin[:], s.StoredLen, s.ManifestOff, s.ManifestLen, nanos(s.Created))
	return exists(err)
}

func (c *sqlCatalog) CommitSystem(ctx context.Context, s SystemObject) error {
	return c.commitSystem(ctx, s, nil)
}

func (c *sqlCatalog) CommitBucketKey(ctx context.Context, s SystemObject, k BucketKey) error {
	return c.commitSystem(ctx, s, &k)
}

// commitSystem records system object s and, in the same transaction, the
// bucket key record it holds, if any.
func (c *sqlCatalog) commitSystem(ctx context.Context, s SystemObject, k *BucketKey) error {
	err := c.write(ctx, func(t *txn) error {
		if k != nil {
			if err := insertBucketKey(t, k); err != nil {
				return err
			}
			if err := t.changed(1); err != nil {
				return err
			}
		}
		return t.commitPendingSystem(&s)
	})
	if err != nil {
		return fmt.Errorf("catalog: commit system object %x: %w", s.ObjectID, err)
	}
	return nil
}

func (c *sqlCatalog) SystemObjects(ctx context.Context) ([]SystemObject, error) {
	rows, err := c.query(ctx, `SELECT object_id, kind, pin, stored_len, manifest_off, manifest_len, created
		FROM system_objects ORDER BY created, object_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: system objects: %w", err)
	}
	defer rows.Close()
	var ss []SystemObject
	for rows.Next() {
		var s SystemObject
		var kind, created int64
		if err := rows.Scan(fixed{s.ObjectID[:], "object id"}, &kind, fixed{s.Pin[:], "pin"},
			&s.StoredLen, &s.ManifestOff, &s.ManifestLen, &created); err != nil {
			return nil, fmt.Errorf("catalog: system objects: %w", err)
		}
		s.Kind, s.Created = int(kind), fromNanos(created)
		ss = append(ss, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: system objects: %w", err)
	}
	return ss, nil
}
