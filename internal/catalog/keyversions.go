package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/keys"
)

// schemaV3KeyVersions adds what the key version lifecycle needs: the
// bucket key version of each pending object write (a version is not
// retired while a write under it is in flight), and the key journal
// entries that hold batches of data key rewraps, by the bucket key version
// their records are wrapped under (retiring that version deletes them).
var schemaV3KeyVersions = []string{
	`ALTER TABLE pending ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0`,
	`CREATE TABLE key_batches (
		journal_id  BLOB PRIMARY KEY CHECK (length(journal_id) = 16),
		bucket_id   BLOB NOT NULL CHECK (length(bucket_id) = 16),
		key_version INTEGER NOT NULL,
		records     INTEGER NOT NULL
	) WITHOUT ROWID`,
	`CREATE INDEX key_batches_version ON key_batches (bucket_id, key_version)`,
}

// Bucket key states.
const (
	KeyActive      = 1
	KeyDecryptOnly = 2
	KeyDestroyed   = 3
)

// Rewrap is one data key rewrapped under a newer bucket key version: the
// object it belongs to (as current when the rewrap read it) and the new
// wrap.
type Rewrap struct {
	Bucket, Key string
	ObjectID    keys.ID
	Wrapped     []byte
}

// KeyBatch is a key journal entry holding a batch of data key rewraps.
type KeyBatch struct {
	JournalID  keys.ID
	BucketID   keys.ID
	KeyVersion uint32
	Records    int
}

// KeyUse is what still depends on one bucket key version.
type KeyUse struct {
	Objects int64 // current entries whose data keys it wraps
	Uploads int64 // multipart uploads in progress under it
	Pending int64 // object writes in flight under it
}

// Total is the number of things that depend on the version.
func (u KeyUse) Total() int64 { return u.Objects + u.Uploads + u.Pending }

// KeyVersions is the catalog's part of the key version lifecycle (docs/keys.md).
type KeyVersions interface {
	// CommitRewrapBatch records, in one transaction, the key journal entry
	// s (a pending write) holding a batch of rewraps under bucket key
	// (bucketID, keyVersion), and the rewraps themselves: each entry that
	// is still the current one of its key (same object id) takes
	// keyVersion and the new wrap. It returns how many entries changed
	// (an entry replaced or deleted meanwhile is left alone: its
	// successor was written under the primary key). ErrKeyRetired if
	// keyVersion is destroyed.
	CommitRewrapBatch(ctx context.Context, s SystemObject, bucketID keys.ID, keyVersion uint32, items []Rewrap) (int, error)
	// KeyBatches lists the rewrap batch entries, by bucket id and version.
	KeyBatches(ctx context.Context) ([]KeyBatch, error)
	// ReplaceKeyBatch records s (a pending write: the same records sealed
	// under the primary root key) in the place of batch entry old, which
	// goes to garbage. ErrNotFound if old is not a batch entry.
	ReplaceKeyBatch(ctx context.Context, old keys.ID, s SystemObject) error
	// RewrapBucketKey records, in one transaction, k (the same bucket key
	// version wrapped under another root key version) with its new key
	// journal entry s (a pending write, k.JournalID), and sends the
	// entry that held the old record to garbage.
	RewrapBucketKey(ctx context.Context, s SystemObject, k BucketKey) error
	// ReplaceSystem replaces the record of system object s.ObjectID, which
	// was rewritten in place under the same name (the repository marker).
	// ErrNotFound if it is not a system object.
	ReplaceSystem(ctx context.Context, s SystemObject) error
	// KeyVersionUse says what depends on bucket key (bucketID, version).
	KeyVersionUse(ctx context.Context, bucketID keys.ID, version uint32) (KeyUse, error)
	// RetireBucketKey destroys bucket key (bucketID, version): its record
	// keeps its version, creation time and journal id with state
	// destroyed and its wrapped key and key check zeroed, and its key
	// journal entry and the rewrap batches under it go to garbage (their
	// ids are returned, for the caller to delete from the store). It
	// refuses with ErrKeyInUse (the error says what) while anything
	// depends on the version, and — unless primaryToo — if it is the
	// bucket's newest live version (rotate first). Retiring a destroyed
	// version changes nothing. ErrNotFound if there is no such version.
	RetireBucketKey(ctx context.Context, bucketID keys.ID, version uint32, primaryToo bool) ([]keys.ID, error)
	// RestoreKeyBatches records rewrap batch entries found by recovery
	// (their system objects are restored with Restore). A batch already
	// recorded fails the call with ErrExists; all or nothing.
	RestoreKeyBatches(ctx context.Context, bs []KeyBatch) error
	// RetireRoot records that root key version v is being retired, so
	// that no bucket key or system object sealed under it is committed
	// from now on (ErrKeyRetired: the writer reloads its key source and
	// seals again), whatever process wrote it. It refuses with
	// ErrKeyInUse while a live bucket key version is wrapped under v.
	RetireRoot(ctx context.Context, v uint32) error
	// RetiredRoots lists the versions RetireRoot recorded.
	RetiredRoots(ctx context.Context) ([]uint32, error)
}

// metaRetiredRoots holds the retired root key versions, comma-separated.
const metaRetiredRoots = "retired-roots"

// checkKeyVersion refuses a write under a destroyed key version of bucket
// (0: no key version; a bucket that does not exist is BeginPut's to report).
func (t *txn) checkKeyVersion(bucket string, version uint32) error {
	if version == 0 {
		return nil
	}
	var state int64
	err := t.queryRow(`SELECT k.state FROM bucket_keys k JOIN buckets b ON b.id = k.bucket_id
		WHERE b.name = ? AND k.version = ?`, bucket, int64(version)).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	case state == KeyDestroyed:
		return fmt.Errorf("bucket %q key version %d: %w", bucket, version, ErrKeyRetired)
	}
	return nil
}

// keyState returns the state of (bucketID, version); ErrNotFound if none.
func (t *txn) keyState(bucketID keys.ID, version uint32) (int, error) {
	var state int64
	err := t.queryRow(`SELECT state FROM bucket_keys WHERE bucket_id = ? AND version = ?`, bucketID[:], int64(version)).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("bucket key %x version %d: %w", bucketID, version, ErrNotFound)
	}
	return int(state), err
}

// commitPendingSystem turns the pending write of s into a system object.
func (t *txn) commitPendingSystem(s *SystemObject) error {
	if k, err := t.lookup(s.ObjectID); err != nil {
		return err
	} else if k != KnownNone && k != KnownPending {
		return ErrExists
	}
	if err := affected(t.exec(`DELETE FROM pending WHERE object_id = ?`, s.ObjectID[:])); err != nil {
		if errors.Is(err, ErrNotFound) {
			return ErrNotPending
		}
		return err
	}
	return insertSystem(t, s)
}

// toGarbage forgets system object id and lists it as garbage.
func (t *txn) toGarbage(id keys.ID) error {
	if err := affected(t.exec(`DELETE FROM system_objects WHERE object_id = ?`, id[:])); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO garbage (object_id, at) VALUES (?, ?)`, id[:], t.now)
	return err
}

func (c *sqlCatalog) CommitRewrapBatch(ctx context.Context, s SystemObject, bucketID keys.ID, keyVersion uint32, items []Rewrap) (int, error) {
	n := 0
	err := c.write(ctx, func(t *txn) error {
		n = 0
		st, err := t.keyState(bucketID, keyVersion)
		if err != nil {
			return err
		}
		if st == KeyDestroyed {
			return fmt.Errorf("bucket key version %d: %w", keyVersion, ErrKeyRetired)
		}
		if err := t.commitPendingSystem(&s); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO key_batches (journal_id, bucket_id, key_version, records) VALUES (?, ?, ?, ?)`,
			s.ObjectID[:], bucketID[:], int64(keyVersion), int64(len(items))); err != nil {
			return exists(err)
		}
		for _, it := range items {
			r, err := t.exec(`UPDATE objects SET key_version = ?, wrapped = ?
				WHERE bucket = ? AND key = ? AND object_id = ? AND key_version < ?`,
				int64(keyVersion), blob(it.Wrapped), it.Bucket, it.Key, it.ObjectID[:], int64(keyVersion))
			if err != nil {
				return err
			}
			m, err := r.RowsAffected()
			if err != nil {
				return err
			}
			n += int(m)
		}
		return t.changed(max(n, 1))
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: rewrap batch %x: %w", s.ObjectID, err)
	}
	return n, nil
}

func (c *sqlCatalog) KeyBatches(ctx context.Context) ([]KeyBatch, error) {
	rows, err := c.query(ctx, `SELECT journal_id, bucket_id, key_version, records FROM key_batches ORDER BY bucket_id, key_version, journal_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: key batches: %w", err)
	}
	defer rows.Close()
	var out []KeyBatch
	for rows.Next() {
		var b KeyBatch
		var v, n int64
		if err := rows.Scan(fixed{b.JournalID[:], "journal id"}, fixed{b.BucketID[:], "bucket id"}, &v, &n); err != nil {
			return nil, fmt.Errorf("catalog: key batches: %w", err)
		}
		b.KeyVersion, b.Records = uint32(v), int(n)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: key batches: %w", err)
	}
	return out, nil
}

func (c *sqlCatalog) ReplaceKeyBatch(ctx context.Context, old keys.ID, s SystemObject) error {
	err := c.write(ctx, func(t *txn) error {
		if err := affected(t.exec(`UPDATE key_batches SET journal_id = ? WHERE journal_id = ?`, s.ObjectID[:], old[:])); err != nil {
			return err
		}
		if err := t.commitPendingSystem(&s); err != nil {
			return err
		}
		if err := t.toGarbage(old); err != nil {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: replace key batch %x: %w", old, err)
	}
	return nil
}

func (c *sqlCatalog) RewrapBucketKey(ctx context.Context, s SystemObject, k BucketKey) error {
	err := c.write(ctx, func(t *txn) error {
		var old []byte
		if err := t.queryRow(`SELECT journal_id FROM bucket_keys WHERE bucket_id = ? AND version = ?`,
			k.BucketID[:], int64(k.Version)).Scan(&old); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := t.checkRoot(k.Wrapped.KEKVersion); err != nil {
			return err
		}
		if err := t.commitPendingSystem(&s); err != nil {
			return err
		}
		k.JournalID = s.ObjectID
		a := bucketKeyArgs(&k)
		args := append(append([]any{}, a[2:]...), a[0], a[1])
		if err := affected(t.exec(`UPDATE bucket_keys SET source = ?, alg = ?, kek_version = ?, wrapped = ?,
			key_check = ?, created = ?, journal_id = ?, state = ? WHERE bucket_id = ? AND version = ?`, args...)); err != nil {
			return err
		}
		var oldID keys.ID
		copy(oldID[:], old)
		if err := t.toGarbage(oldID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: rewrap bucket key %x version %d: %w", k.BucketID, k.Version, err)
	}
	return nil
}

func (c *sqlCatalog) ReplaceSystem(ctx context.Context, s SystemObject) error {
	err := c.write(ctx, func(t *txn) error {
		if err := affected(t.exec(`UPDATE system_objects SET kind = ?, pin = ?, stored_len = ?, manifest_off = ?,
			manifest_len = ?, created = ? WHERE object_id = ?`,
			int64(s.Kind), s.Pin[:], s.StoredLen, s.ManifestOff, s.ManifestLen, nanos(s.Created), s.ObjectID[:])); err != nil {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: replace system object %x: %w", s.ObjectID, err)
	}
	return nil
}

// keyUse counts what depends on (bucketID, version).
func (t *txn) keyUse(bucketID keys.ID, version uint32) (KeyUse, error) {
	var u KeyUse
	err := t.queryRow(`SELECT
		(SELECT count(*) FROM objects o JOIN buckets b ON b.name = o.bucket WHERE b.id = ?1 AND o.key_version = ?2),
		(SELECT count(*) FROM uploads u JOIN buckets b ON b.name = u.bucket WHERE b.id = ?1 AND u.key_version = ?2),
		(SELECT count(*) FROM pending p JOIN buckets b ON b.name = p.bucket WHERE b.id = ?1 AND p.key_version = ?2)`,
		bucketID[:], int64(version)).Scan(&u.Objects, &u.Uploads, &u.Pending)
	return u, err
}

func (c *sqlCatalog) KeyVersionUse(ctx context.Context, bucketID keys.ID, version uint32) (KeyUse, error) {
	var u KeyUse
	err := c.locked(ctx, func(t *txn) (err error) {
		u, err = t.keyUse(bucketID, version)
		return err
	})
	if err != nil {
		return u, fmt.Errorf("catalog: use of bucket key %x version %d: %w", bucketID, version, err)
	}
	return u, nil
}

func (c *sqlCatalog) RetireBucketKey(ctx context.Context, bucketID keys.ID, version uint32, primaryToo bool) ([]keys.ID, error) {
	var gone []keys.ID
	err := c.write(ctx, func(t *txn) error {
		gone = nil
		st, err := t.keyState(bucketID, version)
		if err != nil {
			return err
		}
		if st == KeyDestroyed {
			return nil
		}
		if !primaryToo {
			var newer int64
			if err := t.queryRow(`SELECT count(*) FROM bucket_keys WHERE bucket_id = ? AND version > ? AND state != ?`,
				bucketID[:], int64(version), KeyDestroyed).Scan(&newer); err != nil {
				return err
			}
			if newer == 0 {
				return fmt.Errorf("%w: version %d is the bucket's primary key; rotate first", ErrKeyInUse, version)
			}
		}
		u, err := t.keyUse(bucketID, version)
		if err != nil {
			return err
		}
		if u.Total() > 0 {
			return fmt.Errorf("%w: version %d still wraps the data keys of %d objects, %d uploads in progress and %d writes in flight",
				ErrKeyInUse, version, u.Objects, u.Uploads, u.Pending)
		}
		var journal []byte
		if err := t.queryRow(`SELECT journal_id FROM bucket_keys WHERE bucket_id = ? AND version = ?`,
			bucketID[:], int64(version)).Scan(&journal); err != nil {
			return err
		}
		var jid keys.ID
		copy(jid[:], journal)
		var ids []keys.ID
		rows, err := t.query(`SELECT journal_id FROM key_batches WHERE bucket_id = ? AND key_version = ?`, bucketID[:], int64(version))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id keys.ID
			if err := rows.Scan(fixed{id[:], "journal id"}); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM key_batches WHERE bucket_id = ? AND key_version = ?`, bucketID[:], int64(version)); err != nil {
			return err
		}
		// The wrapped key and its check are overwritten with zeros of the
		// same length: a catalog backup keeps the record's shape.
		var wrappedLen, checkLen int64
		if err := t.queryRow(`SELECT length(wrapped), length(key_check) FROM bucket_keys WHERE bucket_id = ? AND version = ?`,
			bucketID[:], int64(version)).Scan(&wrappedLen, &checkLen); err != nil {
			return err
		}
		if _, err := t.exec(`UPDATE bucket_keys SET wrapped = ?, key_check = ?, state = ? WHERE bucket_id = ? AND version = ?`,
			make([]byte, wrappedLen), make([]byte, checkLen), KeyDestroyed, bucketID[:], int64(version)); err != nil {
			return err
		}
		for _, id := range append([]keys.ID{jid}, ids...) {
			switch err := t.toGarbage(id); {
			case err == nil:
				gone = append(gone, id)
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		return t.changed(1)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: retire bucket key %x version %d: %w", bucketID, version, err)
	}
	return gone, nil
}

func (c *sqlCatalog) RestoreKeyBatches(ctx context.Context, bs []KeyBatch) error {
	err := c.write(ctx, func(t *txn) error {
		for _, b := range bs {
			if _, err := t.exec(`INSERT INTO key_batches (journal_id, bucket_id, key_version, records) VALUES (?, ?, ?, ?)`,
				b.JournalID[:], b.BucketID[:], int64(b.KeyVersion), int64(b.Records)); err != nil {
				return exists(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: restore key batches: %w", err)
	}
	return nil
}

// retiredRoots reads the retired root key versions.
func (t *txn) retiredRoots() ([]uint32, error) {
	var v []byte
	err := t.queryRow(`SELECT value FROM meta WHERE key = ?`, metaRetiredRoots).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, f := range strings.Split(string(v), ",") {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("retired root versions %q: %w", v, err)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// checkRoot refuses a record sealed under a retired root key version
// (0: not checked).
func (t *txn) checkRoot(v uint32) error {
	if v == 0 {
		return nil
	}
	rs, err := t.retiredRoots()
	if err != nil {
		return err
	}
	if slices.Contains(rs, v) {
		return fmt.Errorf("root key version %d: %w", v, ErrKeyRetired)
	}
	return nil
}

func (c *sqlCatalog) RetireRoot(ctx context.Context, v uint32) error {
	err := c.write(ctx, func(t *txn) error {
		var n int64
		if err := t.queryRow(`SELECT count(*) FROM bucket_keys WHERE kek_version = ? AND state != ?`, int64(v), KeyDestroyed).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: root key version %d still wraps %d bucket key versions", ErrKeyInUse, v, n)
		}
		rs, err := t.retiredRoots()
		if err != nil || slices.Contains(rs, v) {
			return err
		}
		rs = append(rs, v)
		slices.Sort(rs)
		f := make([]string, len(rs))
		for i, r := range rs {
			f[i] = strconv.FormatUint(uint64(r), 10)
		}
		_, err = t.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			metaRetiredRoots, []byte(strings.Join(f, ",")))
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: retire root key version %d: %w", v, err)
	}
	return nil
}

func (c *sqlCatalog) RetiredRoots(ctx context.Context) ([]uint32, error) {
	var rs []uint32
	err := c.locked(ctx, func(t *txn) (err error) {
		rs, err = t.retiredRoots()
		return err
	})
	return rs, err
}
