package catalog

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/holdfast/holdfast/internal/keys"
)

// What the catalog needs for catalog backups (docs/design.md §9): a change
// counter, a consistent snapshot to export, the record of the last backup
// committed, and a way to retire old backups.

// Reserved meta rows: SetMeta refuses them.
const (
	metaChanges    = "changes"     // INTEGER: changes committed so far
	metaLastBackup = "last-backup" // BLOB: the encoded BackupState
)

// changed adds n to the change counter, in t's transaction.
func (t *txn) changed(n int) error {
	return t.addCounter(metaChanges, n)
}

// addCounter adds n to the counter in meta row key, in t's transaction.
func (t *txn) addCounter(key string, n int) error {
	_, err := t.exec(t.c.d.counterAdd, key, int64(n))
	return err
}

func (c *sqlCatalog) Changes(ctx context.Context) (uint64, error) {
	var n int64
	if err := c.queryRow(ctx, c.d.counter(metaChanges)).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: changes: %w", err)
	}
	return uint64(n), nil
}

// backupStateLen is the length of an encoded BackupState: sequence, hash,
// object id, created, changes.
const backupStateLen = 8 + 32 + 16 + 8 + 8

func encodeBackupState(b BackupState) []byte {
	out := binary.BigEndian.AppendUint64(nil, b.Sequence)
	out = append(out, b.Hash[:]...)
	out = append(out, b.ObjectID[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(nanos(b.Created)))
	return binary.BigEndian.AppendUint64(out, b.Changes)
}

func decodeBackupState(v []byte) (BackupState, error) {
	var b BackupState
	if len(v) != backupStateLen {
		return b, fmt.Errorf("last backup record is %d bytes, want %d", len(v), backupStateLen)
	}
	b.Sequence = binary.BigEndian.Uint64(v)
	copy(b.Hash[:], v[8:40])
	copy(b.ObjectID[:], v[40:56])
	b.Created = fromNanos(int64(binary.BigEndian.Uint64(v[56:64])))
	b.Changes = binary.BigEndian.Uint64(v[64:72])
	return b, nil
}

func (c *sqlCatalog) LastBackup(ctx context.Context) (BackupState, error) {
	var v []byte
	err := c.queryRow(ctx, `SELECT value FROM meta WHERE key = ?`, metaLastBackup).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return BackupState{}, fmt.Errorf("catalog: last backup: %w", ErrNotFound)
	}
	if err != nil {
		return BackupState{}, fmt.Errorf("catalog: last backup: %w", err)
	}
	b, err := decodeBackupState(v)
	if err != nil {
		return BackupState{}, fmt.Errorf("catalog: %w", err)
	}
	return b, nil
}

// setLastBackup records b if its sequence is above the recorded one.
func (t *txn) setLastBackup(b BackupState) error {
	if b.Sequence == 0 {
		return errors.New("backup sequence zero")
	}
	var v []byte
	err := t.queryRow(`SELECT value FROM meta WHERE key = ?`, metaLastBackup).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	default:
		cur, err := decodeBackupState(v)
		if err != nil {
			return err
		}
		if b.Sequence <= cur.Sequence {
			return fmt.Errorf("%w: backup sequence %d is recorded already", ErrStaleVersion, cur.Sequence)
		}
	}
	_, err = t.exec(`INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, metaLastBackup, encodeBackupState(b))
	return err
}

func (c *sqlCatalog) CommitBackup(ctx context.Context, s SystemObject, b BackupState) error {
	if s.Kind != KindBackup || s.ObjectID != b.ObjectID {
		return fmt.Errorf("catalog: commit backup %x: not a catalog backup record", s.ObjectID)
	}
	err := c.write(ctx, func(t *txn) error {
		if err := t.setLastBackup(b); err != nil {
			return err
		}
		if k, err := t.lookup(s.ObjectID); err != nil {
			return err
		} else if k != KnownPending {
			return ErrNotPending
		}
		if _, err := t.exec(`DELETE FROM pending WHERE object_id = ?`, s.ObjectID[:]); err != nil {
			return err
		}
		return insertSystem(t, &s)
	})
	if err != nil {
		return fmt.Errorf("catalog: commit backup %d (%x): %w", b.Sequence, s.ObjectID, err)
	}
	return nil
}

func (c *sqlCatalog) SetLastBackup(ctx context.Context, b BackupState) error {
	if err := c.write(ctx, func(t *txn) error { return t.setLastBackup(b) }); err != nil {
		return fmt.Errorf("catalog: set last backup %d: %w", b.Sequence, err)
	}
	return nil
}

func (c *sqlCatalog) RetireSystem(ctx context.Context, id keys.ID) error {
	err := c.write(ctx, func(t *txn) error {
		if err := affected(t.exec(`DELETE FROM system_objects WHERE object_id = ?`, id[:])); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO garbage (object_id, at) VALUES (?, ?)`, id[:], t.now)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: retire system object %x: %w", id, err)
	}
	return nil
}

// ---- snapshots ----

// txSnapshot is a Snapshot that reads through one read-only transaction.
type txSnapshot struct {
	ctx context.Context
	tx  *sql.Tx
	d   *dialect
}

func (s *txSnapshot) query(q string, args ...any) (*sql.Rows, error) {
	return s.tx.QueryContext(s.ctx, s.d.rebind(q), args...)
}

func (s *txSnapshot) queryRow(q string, args ...any) *sql.Row {
	return s.tx.QueryRowContext(s.ctx, s.d.rebind(q), args...)
}

func (c *sqlCatalog) View(ctx context.Context, fn func(Snapshot) error) error {
	// The dialect's snapshot transaction: it takes no write lock, and its
	// first read fixes the snapshot every later read sees.
	tx, err := c.db.BeginTx(ctx, &c.d.snapshot)
	if err != nil {
		return fmt.Errorf("catalog: txSnapshot: %w", err)
	}
	defer tx.Rollback()
	return fn(&txSnapshot{ctx: ctx, tx: tx, d: c.d})
}

func (s *txSnapshot) Changes() (uint64, error) {
	var n int64
	if err := s.queryRow(s.d.counter(metaChanges)).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: txSnapshot: changes: %w", err)
	}
	return uint64(n), nil
}

func (s *txSnapshot) Count() (int64, error) {
	var n int64
	if err := s.queryRow(`SELECT count(*) FROM objects`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: txSnapshot: count: %w", err)
	}
	return n, nil
}

func (s *txSnapshot) Buckets() ([]Bucket, error) {
	rows, err := s.query(`SELECT name, id, created FROM buckets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: txSnapshot: buckets: %w", err)
	}
	defer rows.Close()
	var bs []Bucket
	for rows.Next() {
		b, err := scanBucket(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: txSnapshot: buckets: %w", err)
		}
		bs = append(bs, b)
	}
	return bs, rows.Err()
}

func (s *txSnapshot) BucketKeys() ([]BucketKey, error) {
	rows, err := s.query(`SELECT ` + bucketKeyCols + ` FROM bucket_keys ORDER BY bucket_id, version`)
	if err != nil {
		return nil, fmt.Errorf("catalog: txSnapshot: bucket keys: %w", err)
	}
	defer rows.Close()
	var ks []BucketKey
	for rows.Next() {
		k, err := scanBucketKey(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: txSnapshot: bucket keys: %w", err)
		}
		ks = append(ks, k)
	}
	return ks, rows.Err()
}

func (s *txSnapshot) All(fn func(Entry) error) error {
	rows, err := s.query(`SELECT ` + entryCols + ` FROM objects ORDER BY bucket, key`)
	if err != nil {
		return fmt.Errorf("catalog: txSnapshot: entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("catalog: txSnapshot: entries: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: txSnapshot: entries: %w", err)
	}
	return nil
}

func (s *txSnapshot) SystemObjects() ([]SystemObject, error) {
	rows, err := s.query(`SELECT object_id, kind, pin, stored_len, manifest_off, manifest_len, created
		FROM system_objects ORDER BY object_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: txSnapshot: system objects: %w", err)
	}
	defer rows.Close()
	var ss []SystemObject
	for rows.Next() {
		var so SystemObject
		var kind, created int64
		if err := rows.Scan(fixed{so.ObjectID[:], "object id"}, &kind, fixed{so.Pin[:], "pin"},
			&so.StoredLen, &so.ManifestOff, &so.ManifestLen, &created); err != nil {
			return nil, fmt.Errorf("catalog: txSnapshot: system objects: %w", err)
		}
		so.Kind, so.Created = int(kind), fromNanos(created)
		ss = append(ss, so)
	}
	return ss, rows.Err()
}

// reservationsQuery lists Snapshot.Reservations: the versions row of each
// key, stopped below its lowest pending version if it has one (but never
// below its highest committed version).
var reservationsQuery = `SELECT bucket, key, r FROM (
	SELECT v.bucket AS bucket, v.key AS key,
		CASE WHEN p.minv IS NULL THEN v.reserved
			ELSE greatest(p.minv - 1, ` + highestCommitted("v.bucket", "v.key") + `) END AS r
	FROM versions v LEFT JOIN (SELECT bucket, key, min(version) AS minv FROM pending
			WHERE kind = ` + strconv.Itoa(KindObject) + ` AND version > 0 GROUP BY bucket, key) p
		ON p.bucket = v.bucket AND p.key = v.key) AS rs
	WHERE r >= 1`

func (s *txSnapshot) ReservationCount() (uint64, error) {
	var n int64
	if err := s.queryRow(`SELECT count(*) FROM (` + reservationsQuery + `) AS n`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: txSnapshot: reservations: %w", err)
	}
	return uint64(n), nil
}

func (s *txSnapshot) Reservations(fn func(Reservation) error) error {
	rows, err := s.query(reservationsQuery + ` ORDER BY bucket, key`)
	if err != nil {
		return fmt.Errorf("catalog: txSnapshot: reservations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Reservation
		var v int64
		if err := rows.Scan(&r.Bucket, &r.Key, &v); err != nil {
			return fmt.Errorf("catalog: txSnapshot: reservations: %w", err)
		}
		r.Version = uint64(v)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: txSnapshot: reservations: %w", err)
	}
	return nil
}

// restoreReservations raises each reservation in rs, in t's transaction.
func (t *txn) restoreReservations(rs []Reservation) error {
	for _, r := range rs {
		if r.Version == 0 {
			continue
		}
		if err := t.reserve(r.Bucket, r.Key, r.Version); err != nil {
			return fmt.Errorf("reservation %q/%q: %w", r.Bucket, r.Key, err)
		}
	}
	return nil
}
