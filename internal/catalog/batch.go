package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/holdfast/holdfast/internal/keys"
)

// The batch calls (BeginPutBatch, CommitPutBatch, Restore) do not run the
// single-row statements once per row: a transaction costs a fixed amount
// (locks, WAL write) and every statement a fixed amount more, so per-row
// statements would cap a recursive put at a few thousand files a second.
// Instead a batch is staged in a temporary table with multi-row INSERTs,
// checked with one query that returns the first offending row, and applied
// with one set-based statement per table. The result is the same as
// running the single calls in order, which the tests check.
//
// A set-based statement sees the database as it was before the statement,
// so a batch that names one (bucket,key) twice is cut into segments in
// which every (bucket,key) is distinct; segments run in order in the same
// transaction.

// chunkRows are the row counts of the staging INSERTs, largest first.
var chunkRows = [...]int{64, 8, 1}

// stage inserts rows (ncols values each, flattened in args) into table,
// which may carry a column list.
func (t *txn) stage(table string, ncols int, args []any) error {
	for _, size := range chunkRows {
		for len(args) >= size*ncols {
			if _, err := t.exec(multiInsert(table, ncols, size), args[:size*ncols]...); err != nil {
				return err
			}
			args = args[size*ncols:]
		}
	}
	return nil
}

func multiInsert(table string, ncols, rows int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncols), ", ") + ")"
	return "INSERT INTO " + table + " VALUES " + strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}

// segments cuts [0,n) into runs in which key(i) is distinct; key returns
// "" for rows that never conflict.
func segments(n int, key func(i int) string) [][2]int {
	var segs [][2]int
	seen := map[string]bool{}
	start := 0
	for i := range n {
		k := key(i)
		if k == "" {
			continue
		}
		if seen[k] {
			segs = append(segs, [2]int{start, i})
			clear(seen)
			start = i
		}
		seen[k] = true
	}
	return append(segs, [2]int{start, n})
}

func bucketKey(bucket, key string) string {
	return fmt.Sprintf("%q/%q", bucket, key)
}

// ---- pending writes ----

const createBeginBatch = `CREATE TEMP TABLE IF NOT EXISTS begin_batch (
	seq       INTEGER PRIMARY KEY,
	object_id BLOB NOT NULL,
	kind      INTEGER NOT NULL,
	bucket    TEXT NOT NULL,
	key       TEXT NOT NULL,
	version   INTEGER NOT NULL,
	owner     TEXT NOT NULL,
	started   INTEGER NOT NULL,
	key_version INTEGER NOT NULL
)`

// Why a staged row is refused.
const (
	whyBucket = 1 + iota
	whyStale
	whyKnown
	whyCurrent // Restore only: the key has a current entry
	whyPin     // the pin is current
)

// checkBegin finds the first staged pending row that BeginPut would refuse.
var checkBegin = fmt.Sprintf(`SELECT seq, why, reserved FROM (SELECT b.seq AS seq, CASE
		WHEN %[1]s THEN %[2]d
		WHEN b.kind = %[3]d AND NOT EXISTS (SELECT 1 FROM buckets WHERE name = b.bucket) THEN %[4]d
		WHEN b.kind = %[3]d AND b.version > 0 AND b.version <= coalesce(v.reserved, 0) THEN %[5]d
		ELSE 0 END AS why,
	coalesce(v.reserved, 0) AS reserved
	FROM begin_batch b
	LEFT JOIN versions v ON b.kind = %[3]d AND v.bucket = b.bucket AND v.key = b.key) AS c
	WHERE why > 0 ORDER BY seq LIMIT 1`,
	knownIn("objects", "b.object_id")+" OR "+knownIn("pending", "b.object_id")+" OR "+
		knownIn("garbage", "b.object_id")+" OR "+knownIn("history", "b.object_id")+" OR "+
		knownIn("system_objects", "b.object_id"),
	whyKnown, KindObject, whyBucket, whyStale)

func (c *sqlCatalog) BeginPutBatch(ctx context.Context, ps []Pending) error {
	ids := make(map[keys.ID]bool, len(ps))
	for i := range ps {
		p := &ps[i]
		if err := validPending(p); err != nil {
			return pendingErr(p, err)
		}
		if ids[p.ObjectID] {
			return pendingErr(p, fmt.Errorf("object id %x twice in the batch: %w", p.ObjectID, ErrExists))
		}
		ids[p.ObjectID] = true
	}
	if len(ps) == 0 {
		return nil
	}
	segs := segments(len(ps), func(i int) string {
		if ps[i].Kind != KindObject {
			return ""
		}
		return bucketKey(ps[i].Bucket, ps[i].Key)
	})
	assigned := make([]uint64, len(ps))
	err := c.write(ctx, func(t *txn) error {
		for _, s := range segs {
			if err := beginSegment(t, ps[s[0]:s[1]], assigned[s[0]:s[1]]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, v := range assigned {
		if v != 0 {
			ps[i].Version = v
		}
	}
	return nil
}

func beginSegment(t *txn, ps []Pending, assigned []uint64) error {
	if _, err := t.exec(createBeginBatch); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM begin_batch`); err != nil {
		return err
	}
	const ncols = 9
	args := make([]any, 0, len(ps)*ncols)
	assign := false
	checked := map[[2]string]bool{}
	for i := range ps {
		p := &ps[i]
		if kv := [2]string{p.Bucket, fmt.Sprint(p.KeyVersion)}; p.KeyVersion > 0 && !checked[kv] {
			checked[kv] = true
			if err := t.checkKeyVersion(p.Bucket, p.KeyVersion); err != nil {
				return pendingErr(p, err)
			}
		}
		args = append(args, int64(i), p.ObjectID[:], int64(p.Kind), p.Bucket, p.Key, int64(p.Version), p.Owner, nanos(p.Started), int64(p.KeyVersion))
		assign = assign || p.Kind == KindObject && p.Version == 0
	}
	if err := t.stage("begin_batch", ncols, args); err != nil {
		return err
	}

	var seq, reserved int64
	var why int
	err := t.queryRow(checkBegin).Scan(&seq, &why, &reserved)
	if err == nil {
		p := &ps[seq]
		switch why {
		case whyKnown:
			return pendingErr(p, fmt.Errorf("object id %x: %w", p.ObjectID, ErrExists))
		case whyBucket:
			return pendingErr(p, fmt.Errorf("bucket %q: %w", p.Bucket, ErrNotFound))
		default:
			return pendingErr(p, fmt.Errorf("%w: version %d already recorded", ErrStaleVersion, reserved))
		}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}

	if assign {
		if _, err := t.exec(fmt.Sprintf(`UPDATE begin_batch SET version = 1 + coalesce(
			(SELECT reserved FROM versions v WHERE v.bucket = begin_batch.bucket AND v.key = begin_batch.key), 0)
			WHERE kind = %d AND version = 0`, KindObject)); err != nil {
			return err
		}
		rows, err := t.query(fmt.Sprintf(`SELECT seq, version FROM begin_batch WHERE kind = %d`, KindObject))
		if err != nil {
			return err
		}
		for rows.Next() {
			var seq, v int64
			if err := rows.Scan(&seq, &v); err != nil {
				rows.Close()
				return err
			}
			if ps[seq].Version == 0 {
				assigned[seq] = uint64(v)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	if _, err := t.exec(insertPending + ` SELECT object_id, kind, bucket, key, version, owner, started, key_version
		FROM begin_batch ORDER BY seq`); err != nil {
		return exists(err)
	}
	if _, err := t.exec(upsertVersions + fmt.Sprintf(` SELECT bucket, key, version FROM begin_batch
		WHERE kind = %d AND version > 0`, KindObject) + onVersionConflict); err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM begin_batch`)
	return err
}

// ---- commits ----

// commit_batch stages only what the checks and the set-based statements
// need; the entries themselves go straight into objects.
const createCommitBatch = `CREATE TEMP TABLE IF NOT EXISTS commit_batch (
	seq       INTEGER PRIMARY KEY,
	bucket    TEXT NOT NULL,
	key       TEXT NOT NULL,
	version   INTEGER NOT NULL,
	object_id BLOB NOT NULL,
	pin       BLOB NOT NULL
)`

// tempTables are the staging tables. Every connection has them from the
// start (the connectors of Open and OpenPostgres make them, see
// withTempTables), because statements are prepared once per handle on
// whichever connection is free, and then once on each connection they
// run on: a statement naming a staging table must prepare on any of
// them. The batch calls still create them if absent, which costs nothing
// once they exist.
var tempTables = [...]string{createBeginBatch, createCommitBatch}

// checkCommit finds the first staged entry that CommitPut would refuse,
// in the order CommitPut checks. ?1 is true for Restore, which also
// refuses a key with a current entry and an object id that is pending.
var checkCommit = fmt.Sprintf(`SELECT seq, why, high FROM (SELECT b.seq AS seq, CASE
		WHEN NOT EXISTS (SELECT 1 FROM buckets WHERE name = b.bucket) THEN %[1]d
		WHEN ?1 AND EXISTS (SELECT 1 FROM objects WHERE bucket = b.bucket AND key = b.key) THEN %[2]d
		WHEN b.version <= %[3]s THEN %[4]d
		WHEN ?1 AND %[5]s OR NOT %[5]s AND (%[6]s) THEN %[7]d
		WHEN EXISTS (SELECT 1 FROM objects WHERE %[8]s) THEN %[9]d
		ELSE 0 END AS why,
	%[3]s AS high
	FROM commit_batch b) AS c
	WHERE why > 0 ORDER BY seq LIMIT 1`,
	whyBucket, whyCurrent, highestCommitted("b.bucket", "b.key"), whyStale,
	knownIn("pending", "b.object_id"),
	knownIn("objects", "b.object_id")+" OR "+knownIn("garbage", "b.object_id")+" OR "+
		knownIn("history", "b.object_id")+" OR "+knownIn("system_objects", "b.object_id"),
	whyKnown, pinIs("b.pin"), whyPin)

// replacedFrom joins the staged entries to the current entries they replace.
const replacedFrom = ` FROM commit_batch b JOIN objects o ON o.bucket = b.bucket AND o.key = b.key`

func (c *sqlCatalog) CommitPutBatch(ctx context.Context, es []Entry) ([]*Entry, error) {
	if err := checkEntries(es); err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, nil
	}
	replaced := make([]*Entry, len(es))
	err := c.write(ctx, func(t *txn) error {
		if err := commitEntries(t, es, replaced); err != nil {
			return err
		}
		return t.changed(len(es))
	})
	if err != nil {
		return nil, err
	}
	return replaced, nil
}

// checkEntries validates entries and refuses an object id or pin given twice.
func checkEntries(es []Entry) error {
	ids := make(map[keys.ID]bool, len(es))
	pins := make(map[[32]byte]bool, len(es))
	for i := range es {
		e := &es[i]
		if err := validEntry(e); err != nil {
			return commitErr(e, err)
		}
		if ids[e.ObjectID] {
			return commitErr(e, fmt.Errorf("object id %x twice in the batch: %w", e.ObjectID, ErrExists))
		}
		if pins[e.Pin] {
			return commitErr(e, fmt.Errorf("pin %x twice in the batch: %w", e.Pin, ErrExists))
		}
		ids[e.ObjectID], pins[e.Pin] = true, true
	}
	return nil
}

// commitEntries commits es in order; replaced (nil for Restore) receives
// the entries they replace.
func commitEntries(t *txn, es []Entry, replaced []*Entry) error {
	segs := segments(len(es), func(i int) string { return bucketKey(es[i].Bucket, es[i].Key) })
	for _, s := range segs {
		var r []*Entry
		if replaced != nil {
			r = replaced[s[0]:s[1]]
		}
		if err := commitSegment(t, es[s[0]:s[1]], r); err != nil {
			return err
		}
	}
	return nil
}

func commitSegment(t *txn, es []Entry, replaced []*Entry) error {
	restore := replaced == nil
	if _, err := t.exec(createCommitBatch); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM commit_batch`); err != nil {
		return err
	}
	args := make([]any, 0, len(es)*5)
	for i := range es {
		e := &es[i]
		args = append(args, int64(i), e.Bucket, e.Key, int64(e.Version), e.ObjectID[:], e.Pin[:])
	}
	if err := t.stage("commit_batch", 6, args); err != nil {
		return err
	}

	var seq, high int64
	var why int
	err := t.queryRow(checkCommit, restore).Scan(&seq, &why, &high)
	if err == nil {
		e := &es[seq]
		switch why {
		case whyBucket:
			return commitErr(e, fmt.Errorf("bucket %q: %w", e.Bucket, ErrNotFound))
		case whyCurrent:
			return commitErr(e, fmt.Errorf("%q/%q has a current entry: %w", e.Bucket, e.Key, ErrExists))
		case whyStale:
			return commitErr(e, fmt.Errorf("%w: version %d already committed", ErrStaleVersion, high))
		case whyPin:
			return commitErr(e, fmt.Errorf("pin %x: %w", e.Pin, ErrExists))
		default:
			return commitErr(e, fmt.Errorf("object id %x: %w", e.ObjectID, ErrExists))
		}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}

	if !restore {
		n, err := t.readReplaced(replaced)
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := t.exec(`INSERT INTO history (object_id, bucket, key, version, pin, key_commit, state, at)
				SELECT o.object_id, o.bucket, o.key, o.version, o.pin, o.key_commit, CAST(? AS BIGINT), CAST(? AS BIGINT)`+replacedFrom,
				int64(Superseded), t.now); err != nil {
				return err
			}
			if _, err := t.exec(`INSERT INTO garbage (object_id, at) SELECT o.object_id, CAST(? AS BIGINT)`+replacedFrom, t.now); err != nil {
				return err
			}
			if _, err := t.exec(`DELETE FROM objects WHERE (bucket, key) IN (SELECT bucket, key FROM commit_batch)`); err != nil {
				return err
			}
		}
		// Every entry must still be pending: a write whose pending row
		// was removed (its object cleaned up as an orphan) must not
		// commit.
		res, err := t.exec(`DELETE FROM pending WHERE object_id IN (SELECT object_id FROM commit_batch)`)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != int64(len(es)) {
			return fmt.Errorf("%d of %d writes are no longer pending: %w", int64(len(es))-n, len(es), ErrNotPending)
		}
	}
	args = make([]any, 0, len(es)*entryNCols)
	for i := range es {
		args = append(args, entryArgs(&es[i])...)
	}
	if err := t.stage("objects ("+entryCols+")", entryNCols, args); err != nil {
		return exists(err)
	}
	if _, err := t.exec(upsertVersions + ` SELECT bucket, key, version FROM commit_batch WHERE true` +
		onVersionConflict); err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM commit_batch`)
	return err
}

// readReplaced reads the current entries the staged ones replace into
// replaced, by position, and returns how many there are.
func (t *txn) readReplaced(replaced []*Entry) (int, error) {
	rows, err := t.query(`SELECT b.seq, ` + prefixed("o.", entryCols) + replacedFrom)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq int64
		e, err := scanEntry(withSeq{rows, &seq})
		if err != nil {
			return 0, err
		}
		replaced[seq] = &e
		n++
	}
	return n, rows.Err()
}

// withSeq scans a leading sequence number before the columns of a row.
type withSeq struct {
	s   scanner
	seq *int64
}

func (w withSeq) Scan(dst ...any) error {
	return w.s.Scan(append([]any{w.seq}, dst...)...)
}

// prefixed qualifies each column of a column list.
func prefixed(p, cols string) string {
	fs := strings.Split(cols, ",")
	for i, f := range fs {
		fs[i] = p + strings.TrimSpace(f)
	}
	return strings.Join(fs, ", ")
}

// ---- recovery ----

func (c *sqlCatalog) Restore(ctx context.Context, buckets []Bucket, bkeys []BucketKey, entries []Entry, sys []SystemObject, rs []Reservation) error {
	if err := checkEntries(entries); err != nil {
		return fmt.Errorf("catalog: restore: %w", err)
	}
	err := c.write(ctx, func(t *txn) error {
		for i := range buckets {
			if err := insertBucket(t, buckets[i]); err != nil {
				return fmt.Errorf("bucket %q: %w", buckets[i].Name, err)
			}
		}
		for i := range bkeys {
			if err := insertBucketKey(t, &bkeys[i]); err != nil {
				return fmt.Errorf("bucket key %x version %d: %w", bkeys[i].BucketID, bkeys[i].Version, err)
			}
		}
		if len(entries) > 0 {
			if err := commitEntries(t, entries, nil); err != nil {
				return err
			}
		}
		for i := range sys {
			if err := insertSystem(t, &sys[i]); err != nil {
				return fmt.Errorf("system object %x: %w", sys[i].ObjectID, err)
			}
		}
		return t.restoreReservations(rs)
	})
	if err != nil {
		return fmt.Errorf("catalog: restore: %w", err)
	}
	return nil
}
