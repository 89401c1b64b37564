package catalog

import (
	"context"
	"fmt"
	"strconv"
)

// schemaVersion is the version of the schema below. A catalog with a higher
// version is refused (ErrNewerSchema); a lower one is migrated by running
// the steps it lacks.
const schemaVersion = 5

// schemaSteps[i] takes an empty catalog, or one of version i, to version
// i+1. Version 2 adds multipart uploads (uploads.go); version 3 the key
// version lifecycle (keyversions.go); version 4 the catalog head
// (head.go); version 5 a checksum for each uploaded part (uploads.go).
// The statements are SQLite's; the dialect rewrites them for PostgreSQL
// (dialect.go).
var schemaSteps = [][]string{schemaV1, schemaV2Uploads, schemaV3KeyVersions, schemaV4Heads, schemaV5PartChecksums}

// metaSchemaVersion is the meta row holding the schema version. SetMeta
// refuses to touch it.
const metaSchemaVersion = "schema_version"

// Conventions: ids are 16-byte BLOBs, pins and commitments 32-byte BLOBs,
// times unix nanoseconds (0 is the zero time), keys TEXT compared bytewise
// (BINARY collation, the order of Go strings and of S3 listings).
var schemaV1 = []string{
	`CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value BLOB NOT NULL
	) WITHOUT ROWID`,

	`CREATE TABLE buckets (
		name    TEXT PRIMARY KEY,
		id      BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
		created INTEGER NOT NULL
	) WITHOUT ROWID`,

	// Bucket keys are kept when their bucket is deleted: they are records
	// of the key journal, and store objects of the bucket may remain.
	`CREATE TABLE bucket_keys (
		bucket_id   BLOB NOT NULL CHECK (length(bucket_id) = 16),
		version     INTEGER NOT NULL,
		source      INTEGER NOT NULL,
		alg         INTEGER NOT NULL,
		kek_version INTEGER NOT NULL,
		wrapped     BLOB NOT NULL,
		key_check   BLOB NOT NULL,
		created     INTEGER NOT NULL,
		journal_id  BLOB NOT NULL CHECK (length(journal_id) = 16),
		state       INTEGER NOT NULL,
		PRIMARY KEY (bucket_id, version)
	) WITHOUT ROWID`,

	// Current entries. The foreign key keeps objects out of missing
	// buckets and keeps non-empty buckets from being deleted.
	//
	// A rowid table, so that each secondary index entry carries an 8-byte
	// rowid rather than the (bucket,key) primary key, which may be a long
	// string. Pins and commitments are random: every insert lands on a
	// random index page, and at scale each one dirties a page of its own.
	// They are indexed on their first 8 bytes, which finds them as surely
	// (queries compare the whole value too) in a third of the space; pin
	// uniqueness is checked by the writers, not by the index.
	`CREATE TABLE objects (
		bucket       TEXT NOT NULL REFERENCES buckets (name),
		key          TEXT NOT NULL,
		version      INTEGER NOT NULL CHECK (version > 0),
		object_id    BLOB NOT NULL UNIQUE CHECK (length(object_id) = 16),
		size         INTEGER NOT NULL,
		stored_len   INTEGER NOT NULL,
		manifest_off INTEGER NOT NULL,
		manifest_len INTEGER NOT NULL,
		pin          BLOB NOT NULL CHECK (length(pin) = 32),
		key_commit   BLOB NOT NULL CHECK (length(key_commit) = 32),
		key_version  INTEGER NOT NULL,
		wrapped      BLOB NOT NULL,
		modified     INTEGER NOT NULL,
		content_type TEXT NOT NULL,
		meta         BLOB NOT NULL,
		segments     INTEGER NOT NULL,
		PRIMARY KEY (bucket, key)
	)`,
	`CREATE INDEX objects_pin ON objects (substr(pin, 1, 8))`,
	`CREATE INDEX objects_commit ON objects (substr(key_commit, 1, 8))`,

	// Versions makes NextVersion monotonic even after delete: one row per
	// (bucket,key) ever written, never removed, holding the highest version
	// reserved (BeginPut) or committed. The highest version ever current,
	// which CommitPut checks, is the larger of the current entry's and the
	// newest in history (which is never pruned).
	`CREATE TABLE versions (
		bucket   TEXT NOT NULL,
		key      TEXT NOT NULL,
		reserved INTEGER NOT NULL,
		PRIMARY KEY (bucket, key)
	) WITHOUT ROWID`,

	`CREATE TABLE history (
		object_id  BLOB PRIMARY KEY CHECK (length(object_id) = 16),
		bucket     TEXT NOT NULL,
		key        TEXT NOT NULL,
		version    INTEGER NOT NULL,
		pin        BLOB NOT NULL CHECK (length(pin) = 32),
		key_commit BLOB NOT NULL CHECK (length(key_commit) = 32),
		state      INTEGER NOT NULL,
		at         INTEGER NOT NULL
	) WITHOUT ROWID`,
	`CREATE INDEX history_pin ON history (substr(pin, 1, 8))`,
	`CREATE INDEX history_commit ON history (substr(key_commit, 1, 8))`,
	`CREATE INDEX history_bucket_key ON history (bucket, key, version)`,

	`CREATE TABLE pending (
		object_id BLOB PRIMARY KEY CHECK (length(object_id) = 16),
		kind      INTEGER NOT NULL,
		bucket    TEXT NOT NULL,
		key       TEXT NOT NULL,
		version   INTEGER NOT NULL,
		owner     TEXT NOT NULL,
		started   INTEGER NOT NULL
	) WITHOUT ROWID`,

	`CREATE TABLE garbage (
		object_id BLOB PRIMARY KEY CHECK (length(object_id) = 16),
		at        INTEGER NOT NULL
	) WITHOUT ROWID`,

	`CREATE TABLE system_objects (
		object_id    BLOB PRIMARY KEY CHECK (length(object_id) = 16),
		kind         INTEGER NOT NULL,
		pin          BLOB NOT NULL CHECK (length(pin) = 32),
		stored_len   INTEGER NOT NULL,
		manifest_off INTEGER NOT NULL,
		manifest_len INTEGER NOT NULL,
		created      INTEGER NOT NULL
	) WITHOUT ROWID`,
}

// initSchema creates the schema in an empty database, or checks the version
// of an existing one and migrates an older one. It runs serialised with
// every writer (SQLite's write lock, PostgreSQL's advisory lock), so that
// two processes opening a new database at once create it once; it does not
// advance the head.
func (c *sqlCatalog) initSchema(ctx context.Context) error {
	return c.locked(ctx, func(t *txn) error {
		var tables int
		if err := t.tx.QueryRowContext(ctx, c.d.rebind(c.d.tables)).Scan(&tables); err != nil {
			return err
		}
		from := 0
		if tables > 0 {
			var v []byte
			err := t.tx.QueryRowContext(ctx, c.d.rebind(`SELECT value FROM meta WHERE key = ?`), metaSchemaVersion).Scan(&v)
			if err != nil {
				return fmt.Errorf("not a holdfast catalog (no schema version): %w", err)
			}
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 1 {
				return fmt.Errorf("bad schema version %q", v)
			}
			if n > schemaVersion {
				return fmt.Errorf("%w: the catalog has schema version %d, this program knows up to %d; upgrade holdfast",
					ErrNewerSchema, n, schemaVersion)
			}
			if n == schemaVersion {
				return nil
			}
			from = n
		}
		for _, step := range schemaSteps[from:] {
			for _, q := range step {
				if _, err := t.execOnce(q); err != nil {
					if from == 0 {
						return fmt.Errorf("create schema: %w", err)
					}
					return fmt.Errorf("migrate schema from version %d: %w", from, err)
				}
			}
		}
		if from < 4 {
			// Head 0: the all-zero hash before the first write.
			if _, err := t.execOnce(`INSERT INTO heads (seq, hash) VALUES (0, ?)`, make([]byte, 32)); err != nil {
				return err
			}
		}
		version := []byte(strconv.Itoa(schemaVersion))
		if from == 0 {
			_, err := t.execOnce(`INSERT INTO meta (key, value) VALUES (?, ?)`, metaSchemaVersion, version)
			return err
		}
		_, err := t.execOnce(`UPDATE meta SET value = ? WHERE key = ?`, version, metaSchemaVersion)
		return err
	})
}
