package catalog

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// ErrCompleting: the upload is being completed; its parts are fixed.
var ErrCompleting = errors.New("upload is being completed")

// Upload is a multipart upload in progress (docs/design.md, "S3
// multipart"): one object version being built from parts. It is recorded
// with the object's pending write, so that the object id is known as
// pending (never unknown) from before anything is stored until the
// object is committed or the upload removed.
type Upload struct {
	ID          string // the upload id clients use
	ObjectID    keys.ID
	Bucket, Key string
	Created     time.Time
	KeyVersion  uint32   // bucket key version that wraps the data key
	Wrapped     []byte   // the data key, wrapped (alg 1) under that bucket key
	Commit      [32]byte // the data key's commitment, as in the header
	ContentType string
	Meta        map[string]string // the object's metadata, attributes included
	StoreHandle string            // the store's name for the construction ("" until made)

	// Set when the completion began (BeginComplete) and fixed from then
	// on, so that a retried completion seals the same manifest.
	Completing bool
	Version    uint64    // the object version reserved for it
	Modified   time.Time // the object's modified time
	Parts      []int     // the part numbers completed, ascending
}

// UploadPart is one part of an upload as last uploaded.
type UploadPart struct {
	Number   int
	Size     int64  // plaintext bytes
	ETag     string // hex MD5 of the plaintext
	Salt     [32]byte
	Token    string // the store's token, or the spool file of a held part
	Held     bool   // kept on premises until completion, not in the store
	Modified time.Time
	// Checksum is the caller's record of the part's checksum (the gateway
	// keeps S3's: "ALGORITHM VALUE"), or "". The catalog does not read it.
	Checksum string
}

// Uploads records multipart uploads in progress. It is part of Catalog.
type Uploads interface {
	// CreateUpload records u together with its pending write, owned by
	// owner, in one transaction. The bucket must exist (ErrNotFound);
	// ErrExists if u.ID or u.ObjectID is known.
	CreateUpload(ctx context.Context, u Upload, owner string) error
	// SetUploadHandle records the store's handle of upload id unless one
	// is recorded already, and returns the one recorded (so that of two
	// processes making it, both use the first). ErrNotFound if no upload.
	SetUploadHandle(ctx context.Context, id, handle string) (string, error)
	// GetUpload returns upload id, or ErrNotFound.
	GetUpload(ctx context.Context, id string) (Upload, error)
	// ListUploads returns the uploads of bucket whose key starts with
	// prefix (every upload when bucket is ""), by bucket, key, creation.
	ListUploads(ctx context.Context, bucket, prefix string) ([]Upload, error)
	// PutUploadPart records part p of upload id, replacing the record of
	// a part of the same number, which it returns (nil if none).
	// ErrNotFound if there is no such upload, ErrCompleting if it is
	// being completed.
	PutUploadPart(ctx context.Context, id string, p UploadPart) (*UploadPart, error)
	// UploadParts returns the parts of upload id by number.
	UploadParts(ctx context.Context, id string) ([]UploadPart, error)
	// BeginComplete fixes what the completion of upload id seals: the
	// part numbers, the modified time and the next object version of its
	// key, which it reserves (on the pending write too). Once begun, it
	// returns what was fixed the first time, whatever it is given; the
	// caller compares. ErrNotFound if there is no such upload;
	// ErrNotPending if its pending write is gone.
	BeginComplete(ctx context.Context, id string, parts []int, modified time.Time) (Upload, error)
	// CommitUpload commits e (as CommitPut does, with its errors; as
	// CommitCreate with createOnly) and removes upload id, in one
	// transaction. The upload must be completing with e's object id and
	// version (ErrNotFound otherwise).
	CommitUpload(ctx context.Context, id string, e Entry, createOnly bool) (*Entry, error)
	// DeleteUpload removes upload id, its parts and its pending write,
	// and returns what it removed. ErrNotFound if there is no such
	// upload.
	DeleteUpload(ctx context.Context, id string) (Upload, []UploadPart, error)
}

// Schema version 2: uploads and their parts. The bucket is not a foreign
// key: deleting a bucket does not wait for its uploads (they fail, and
// expire).
var schemaV2Uploads = []string{
	`CREATE TABLE uploads (
		id           TEXT PRIMARY KEY,
		object_id    BLOB NOT NULL UNIQUE CHECK (length(object_id) = 16),
		bucket       TEXT NOT NULL,
		key          TEXT NOT NULL,
		created      INTEGER NOT NULL,
		key_version  INTEGER NOT NULL,
		wrapped      BLOB NOT NULL,
		key_commit   BLOB NOT NULL CHECK (length(key_commit) = 32),
		content_type TEXT NOT NULL,
		meta         BLOB NOT NULL,
		store_handle TEXT NOT NULL,
		completing   INTEGER NOT NULL,
		version      INTEGER NOT NULL,
		modified     INTEGER NOT NULL,
		parts        BLOB NOT NULL
	) WITHOUT ROWID`,
	`CREATE INDEX uploads_bucket_key ON uploads (bucket, key, created)`,
	`CREATE TABLE upload_parts (
		upload   TEXT NOT NULL,
		number   INTEGER NOT NULL CHECK (number > 0),
		size     INTEGER NOT NULL,
		etag     TEXT NOT NULL,
		salt     BLOB NOT NULL CHECK (length(salt) = 32),
		token    TEXT NOT NULL,
		held     INTEGER NOT NULL,
		modified INTEGER NOT NULL,
		PRIMARY KEY (upload, number)
	) WITHOUT ROWID`,
}

// Schema version 5: the checksum of each uploaded part (UploadPart.Checksum),
// which S3 answers for the part and combines into the object's at
// completion. Parts recorded before it have none.
var schemaV5PartChecksums = []string{
	`ALTER TABLE upload_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT ''`,
}

const uploadCols = `id, object_id, bucket, key, created, key_version, wrapped, key_commit, content_type, meta,
	store_handle, completing, version, modified, parts`

func uploadArgs(u *Upload) []any {
	return []any{u.ID, u.ObjectID[:], u.Bucket, u.Key, nanos(u.Created), int64(u.KeyVersion), blob(u.Wrapped),
		u.Commit[:], u.ContentType, encodeMeta(u.Meta), u.StoreHandle, boolInt(u.Completing), int64(u.Version),
		nanos(u.Modified), encodeParts(u.Parts)}
}

func scanUpload(s scanner) (Upload, error) {
	var u Upload
	var created, keyVersion, version, modified int64
	var meta, parts []byte
	err := s.Scan(&u.ID, fixed{u.ObjectID[:], "object id"}, &u.Bucket, &u.Key, &created, &keyVersion, &u.Wrapped,
		fixed{u.Commit[:], "commit"}, &u.ContentType, &meta, &u.StoreHandle, &u.Completing, &version, &modified, &parts)
	if err != nil {
		return Upload{}, err
	}
	u.Created, u.Modified = fromNanos(created), fromNanos(modified)
	u.KeyVersion, u.Version = uint32(keyVersion), uint64(version)
	u.Wrapped = nilIfEmpty(u.Wrapped)
	if u.Meta, err = decodeMeta(meta); err != nil {
		return Upload{}, fmt.Errorf("upload %q: %w", u.ID, err)
	}
	if u.Parts, err = decodeParts(parts); err != nil {
		return Upload{}, fmt.Errorf("upload %q: %w", u.ID, err)
	}
	return u, nil
}

// encodeParts encodes ascending part numbers as big-endian u32s.
func encodeParts(ps []int) []byte {
	b := make([]byte, 0, 4*len(ps))
	for _, p := range ps {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
	}
	return b
}

func decodeParts(b []byte) ([]int, error) {
	if len(b)%4 != 0 {
		return nil, errors.New("bad part list encoding")
	}
	var ps []int
	for ; len(b) > 0; b = b[4:] {
		ps = append(ps, int(binary.BigEndian.Uint32(b)))
	}
	return ps, nil
}

const partCols = `number, size, etag, salt, token, held, modified, checksum`

func scanPart(s scanner) (UploadPart, error) {
	var p UploadPart
	var number, modified int64
	err := s.Scan(&number, &p.Size, &p.ETag, fixed{p.Salt[:], "salt"}, &p.Token, &p.Held, &modified, &p.Checksum)
	p.Number, p.Modified = int(number), fromNanos(modified)
	return p, err
}

func uploadErr(op, id string, err error) error {
	return fmt.Errorf("catalog: %s upload %q: %w", op, id, err)
}

func (c *sqlCatalog) CreateUpload(ctx context.Context, u Upload, owner string) error {
	switch {
	case u.ID == "" || u.Bucket == "" || u.Key == "":
		return uploadErr("create", u.ID, errors.New("upload needs an id, a bucket and a key"))
	case u.Completing || len(u.Parts) > 0 || u.Version != 0:
		return uploadErr("create", u.ID, errors.New("a new upload is not completing"))
	}
	err := c.write(ctx, func(t *txn) error {
		var bucketOK, known bool
		var reserved int64
		if err := t.queryRow(beginState, u.Bucket, u.Key, u.ObjectID[:]).Scan(&bucketOK, &reserved, &known); err != nil {
			return err
		}
		switch {
		case !bucketOK:
			return fmt.Errorf("bucket %q: %w", u.Bucket, ErrNotFound)
		case known:
			return fmt.Errorf("object id %x: %w", u.ObjectID, ErrExists)
		}
		if err := t.checkKeyVersion(u.Bucket, u.KeyVersion); err != nil {
			return err
		}
		// The pending write reserves no version yet: BeginComplete does.
		if _, err := t.exec(insertPending+` VALUES (?, ?, ?, ?, 0, ?, ?, 0)`,
			u.ObjectID[:], int64(KindObject), u.Bucket, u.Key, owner, nanos(u.Created)); err != nil {
			return exists(err)
		}
		_, err := t.exec(`INSERT INTO uploads (`+uploadCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, uploadArgs(&u)...)
		return exists(err)
	})
	if err != nil {
		return uploadErr("create", u.ID, err)
	}
	return nil
}

func (c *sqlCatalog) SetUploadHandle(ctx context.Context, id, handle string) (string, error) {
	var got string
	err := c.write(ctx, func(t *txn) error {
		if _, err := t.exec(`UPDATE uploads SET store_handle = ? WHERE id = ? AND store_handle = ''`, handle, id); err != nil {
			return err
		}
		err := t.queryRow(`SELECT store_handle FROM uploads WHERE id = ?`, id).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return "", uploadErr("set handle of", id, err)
	}
	return got, nil
}

func (c *sqlCatalog) GetUpload(ctx context.Context, id string) (Upload, error) {
	u, err := scanUpload(c.queryRow(ctx, `SELECT `+uploadCols+` FROM uploads WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Upload{}, uploadErr("get", id, ErrNotFound)
	}
	if err != nil {
		return Upload{}, uploadErr("get", id, err)
	}
	return u, nil
}

func (c *sqlCatalog) ListUploads(ctx context.Context, bucket, prefix string) ([]Upload, error) {
	q := `SELECT ` + uploadCols + ` FROM uploads`
	var args []any
	if bucket != "" {
		q += ` WHERE bucket = ? AND key >= ?`
		args = append(args, bucket, prefix)
		if end, ok := prefixEnd(prefix); ok {
			q += ` AND key < ?`
			args = append(args, end)
		}
	}
	q += ` ORDER BY bucket, key, created, id`
	rows, err := c.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: list uploads: %w", err)
	}
	defer rows.Close()
	var us []Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: list uploads: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: list uploads: %w", err)
	}
	return us, nil
}

// uploadState returns whether upload id exists and is completing.
func (t *txn) uploadState(id string) (completing bool, err error) {
	err = t.queryRow(`SELECT completing FROM uploads WHERE id = ?`, id).Scan(&completing)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrNotFound
	}
	return completing, err
}

func (c *sqlCatalog) PutUploadPart(ctx context.Context, id string, p UploadPart) (*UploadPart, error) {
	if p.Number < 1 || p.Size < 0 {
		return nil, uploadErr("record a part of", id, fmt.Errorf("part %d of %d bytes", p.Number, p.Size))
	}
	var old *UploadPart
	err := c.write(ctx, func(t *txn) error {
		completing, err := t.uploadState(id)
		if err != nil {
			return err
		}
		if completing {
			return ErrCompleting
		}
		o, err := scanPart(t.queryRow(`SELECT `+partCols+` FROM upload_parts WHERE upload = ? AND number = ?`, id, p.Number))
		switch {
		case err == nil:
			old = &o
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = t.exec(`INSERT INTO upload_parts (upload, `+partCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (upload, number) DO UPDATE SET size = excluded.size, etag = excluded.etag, salt = excluded.salt,
			token = excluded.token, held = excluded.held, modified = excluded.modified, checksum = excluded.checksum`,
			id, int64(p.Number), p.Size, p.ETag, p.Salt[:], p.Token, boolInt(p.Held), nanos(p.Modified), p.Checksum)
		return err
	})
	if err != nil {
		return nil, uploadErr(fmt.Sprintf("record part %d of", p.Number), id, err)
	}
	return old, nil
}

func (c *sqlCatalog) UploadParts(ctx context.Context, id string) ([]UploadPart, error) {
	rows, err := c.query(ctx, `SELECT `+partCols+` FROM upload_parts WHERE upload = ? ORDER BY number`, id)
	if err != nil {
		return nil, uploadErr("list parts of", id, err)
	}
	defer rows.Close()
	var ps []UploadPart
	for rows.Next() {
		p, err := scanPart(rows)
		if err != nil {
			return nil, uploadErr("list parts of", id, err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, uploadErr("list parts of", id, err)
	}
	return ps, nil
}

func (c *sqlCatalog) BeginComplete(ctx context.Context, id string, parts []int, modified time.Time) (Upload, error) {
	var u Upload
	err := c.write(ctx, func(t *txn) error {
		var err error
		u, err = scanUpload(t.queryRow(`SELECT `+uploadCols+` FROM uploads WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || u.Completing {
			return err
		}
		var reserved int64
		if err := t.queryRow(`SELECT coalesce((SELECT reserved FROM versions WHERE bucket = ? AND key = ?), 0)`,
			u.Bucket, u.Key).Scan(&reserved); err != nil {
			return err
		}
		u.Completing, u.Version, u.Modified, u.Parts = true, uint64(reserved)+1, modified, parts
		if u.Version > maxVersion {
			return fmt.Errorf("version %d out of range", u.Version)
		}
		if err := affected(t.exec(`UPDATE pending SET version = ? WHERE object_id = ?`, int64(u.Version), u.ObjectID[:])); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrNotPending
			}
			return err
		}
		if err := t.reserve(u.Bucket, u.Key, u.Version); err != nil {
			return err
		}
		_, err = t.exec(`UPDATE uploads SET completing = 1, version = ?, modified = ?, parts = ? WHERE id = ?`,
			int64(u.Version), nanos(u.Modified), encodeParts(u.Parts), id)
		return err
	})
	if err != nil {
		return Upload{}, uploadErr("begin completing", id, err)
	}
	return u, nil
}

func (c *sqlCatalog) CommitUpload(ctx context.Context, id string, e Entry, createOnly bool) (*Entry, error) {
	if err := validEntry(&e); err != nil {
		return nil, commitErr(&e, err)
	}
	var old *Entry
	err := c.write(ctx, func(t *txn) error {
		var obj []byte
		var completing bool
		var version int64
		err := t.queryRow(`SELECT object_id, completing, version FROM uploads WHERE id = ?`, id).Scan(&obj, &completing, &version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("upload %q: %w", id, ErrNotFound)
		case err != nil:
			return err
		case !completing || string(obj) != string(e.ObjectID[:]) || uint64(version) != e.Version:
			return fmt.Errorf("upload %q is not completing as this object: %w", id, ErrNotFound)
		}
		if old, err = t.commitPut(&e, createOnly, nil); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM upload_parts WHERE upload = ?`, id); err != nil {
			return err
		}
		_, err = t.exec(`DELETE FROM uploads WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return nil, commitErr(&e, err)
	}
	return old, nil
}

func (c *sqlCatalog) DeleteUpload(ctx context.Context, id string) (Upload, []UploadPart, error) {
	var u Upload
	var parts []UploadPart
	err := c.write(ctx, func(t *txn) error {
		var err error
		u, err = scanUpload(t.queryRow(`SELECT `+uploadCols+` FROM uploads WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+partCols+` FROM upload_parts WHERE upload = ? ORDER BY number`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			p, err := scanPart(rows)
			if err != nil {
				rows.Close()
				return err
			}
			parts = append(parts, p)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM upload_parts WHERE upload = ?`, `DELETE FROM uploads WHERE id = ?`} {
			if _, err := t.exec(q, id); err != nil {
				return err
			}
		}
		if _, err = t.exec(`DELETE FROM pending WHERE object_id = ?`, u.ObjectID[:]); err != nil {
			return err
		}
		if u.Completing {
			// What the completion stored (or is storing) is garbage from
			// now on: the caller removes it, or Cleanup does after a crash.
			_, err = t.exec(`INSERT INTO garbage (object_id, at) VALUES (?, ?)`, u.ObjectID[:], t.now)
		}
		return err
	})
	if err != nil {
		return Upload{}, nil, uploadErr("delete", id, err)
	}
	return u, parts, nil
}
