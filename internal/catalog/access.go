package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The S3 gateway's access table (internal/access) lives in meta rows that
// the catalog keeps opaque: the table's wrapped key, one row per access
// key, and a version that every change raises in the same transaction, so
// that a running gateway notices a revocation by reading one row. The rows
// are not part of catalog backups: access keys are credentials to re-issue
// after a recovery, not data to restore.
const (
	metaAccessTableKey  = "access-table-key"
	metaAccessVersion   = "access-version"
	metaAccessKeyPrefix = "access-key/"
	// metaAccessKeyEnd is the first meta key after every access-key row
	// ('0' follows '/').
	metaAccessKeyEnd = "access-key0"
)

// AccessStore keeps the access table's records. The catalog Open returns
// implements it; callers find it by type assertion. Every method is one
// transaction, safe with other handles and processes on the same file.
type AccessStore interface {
	// AccessTableKey returns the table key record, or ErrNotFound if no key
	// was ever made.
	AccessTableKey(ctx context.Context) ([]byte, error)
	// InitAccessTableKey records rec as the table key record unless one is
	// already recorded, and returns the record that is recorded now: rec,
	// or the one another writer recorded first.
	InitAccessTableKey(ctx context.Context, rec []byte) ([]byte, error)
	// ReplaceAccessTableKey replaces the table key record old by rec (a
	// rewrap under another root key version). ErrStaleVersion, changing
	// nothing, if the recorded one is not old.
	ReplaceAccessTableKey(ctx context.Context, old, rec []byte) error
	// AccessVersion returns the table's version: 0 for a table never
	// changed; every add, removal and key replacement raises it.
	AccessVersion(ctx context.Context) (uint64, error)
	// AccessKeys returns the table's version and every access key record
	// by id, read in one snapshot.
	AccessKeys(ctx context.Context) (uint64, map[string][]byte, error)
	// AddAccessKey records rec under id and returns the new version.
	// ErrExists if id is taken.
	AddAccessKey(ctx context.Context, id string, rec []byte) (uint64, error)
	// RemoveAccessKey removes id's record and returns the new version.
	// ErrNotFound if there is none.
	RemoveAccessKey(ctx context.Context, id string) (uint64, error)
}

var _ AccessStore = (*sqlCatalog)(nil)

func (c *sqlCatalog) AccessTableKey(ctx context.Context) ([]byte, error) {
	var v []byte
	err := c.queryRow(ctx, `SELECT value FROM meta WHERE key = ?`, metaAccessTableKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("catalog: access table key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: access table key: %w", err)
	}
	return v, nil
}

func (c *sqlCatalog) InitAccessTableKey(ctx context.Context, rec []byte) ([]byte, error) {
	if len(rec) == 0 {
		return nil, errors.New("catalog: empty access table key record")
	}
	var out []byte
	err := c.write(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT value FROM meta WHERE key = ?`, metaAccessTableKey).Scan(&out)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, metaAccessTableKey, rec); err != nil {
			return err
		}
		out = rec
		return accessChanged(t, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: init access table key: %w", err)
	}
	return out, nil
}

func (c *sqlCatalog) ReplaceAccessTableKey(ctx context.Context, old, rec []byte) error {
	if len(rec) == 0 {
		return errors.New("catalog: empty access table key record")
	}
	err := c.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE meta SET value = ? WHERE key = ? AND value = ?`, rec, metaAccessTableKey, blob(old))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrStaleVersion
		}
		return accessChanged(t, nil)
	})
	if err != nil {
		return fmt.Errorf("catalog: replace access table key: %w", err)
	}
	return nil
}

func (c *sqlCatalog) AccessVersion(ctx context.Context) (uint64, error) {
	var n int64
	if err := c.queryRow(ctx, c.d.counter(metaAccessVersion)).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: access version: %w", err)
	}
	return uint64(n), nil
}

func (c *sqlCatalog) AccessKeys(ctx context.Context) (uint64, map[string][]byte, error) {
	// One snapshot transaction: its first read fixes the snapshot the
	// second one sees, so the version matches the records.
	tx, err := c.db.BeginTx(ctx, &c.d.snapshot)
	if err != nil {
		return 0, nil, fmt.Errorf("catalog: access keys: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, c.d.rebind(c.d.counter(metaAccessVersion))).Scan(&n); err != nil {
		return 0, nil, fmt.Errorf("catalog: access keys: %w", err)
	}
	rows, err := tx.QueryContext(ctx, c.d.rebind(`SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key`),
		metaAccessKeyPrefix, metaAccessKeyEnd)
	if err != nil {
		return 0, nil, fmt.Errorf("catalog: access keys: %w", err)
	}
	defer rows.Close()
	recs := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return 0, nil, fmt.Errorf("catalog: access keys: %w", err)
		}
		recs[k[len(metaAccessKeyPrefix):]] = v
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("catalog: access keys: %w", err)
	}
	return uint64(n), recs, nil
}

func (c *sqlCatalog) AddAccessKey(ctx context.Context, id string, rec []byte) (uint64, error) {
	if id == "" || len(rec) == 0 {
		return 0, errors.New("catalog: add access key: empty id or record")
	}
	var v uint64
	err := c.write(ctx, func(t *txn) error {
		if _, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, metaAccessKeyPrefix+id, rec); err != nil {
			return exists(err)
		}
		return accessChanged(t, &v)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: add access key %q: %w", id, err)
	}
	return v, nil
}

func (c *sqlCatalog) RemoveAccessKey(ctx context.Context, id string) (uint64, error) {
	var v uint64
	err := c.write(ctx, func(t *txn) error {
		res, err := t.exec(`DELETE FROM meta WHERE key = ?`, metaAccessKeyPrefix+id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrNotFound
		}
		return accessChanged(t, &v)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: remove access key %q: %w", id, err)
	}
	return v, nil
}

// accessChanged raises the access table's version within t and, with v
// set, returns the new one.
func accessChanged(t *txn, v *uint64) error {
	if err := t.addCounter(metaAccessVersion, 1); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	var n int64
	if err := t.queryRow(t.c.d.counter(metaAccessVersion)).Scan(&n); err != nil {
		return err
	}
	*v = uint64(n)
	return nil
}
