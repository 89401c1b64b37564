package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/holdfast/holdfast/internal/keys"
)

// pageSize is how many entries List and All read per query: it bounds
// memory and the time a read holds a connection.
const pageSize = 1000

// sqliteConstraint is SQLite's primary result code for a constraint
// violation (https://sqlite.org/rescode.html).
const sqliteConstraint = 19

// sqliteCatalog is the embedded Catalog. Writes from one handle are
// serialised by wsem before they reach SQLite, so goroutines queue in Go;
// writes from other handles and processes queue on SQLite's lock, waiting
// up to the busy timeout because every transaction begins IMMEDIATE (the
// write lock is taken at BEGIN, so a reader never has to upgrade to a writer
// and fail with SQLITE_BUSY). Reads are single statements outside any
// transaction and run concurrently with writers (WAL).
type sqliteCatalog struct {
	db   *sql.DB
	wsem chan struct{}

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

var _ Catalog = (*sqliteCatalog)(nil)

// Open opens the catalog at path, creating the file (mode 0600) and the
// schema if absent. It refuses a catalog written by a newer schema
// (ErrNewerSchema). Several handles, in one process or several, may use the
// same file at once.
func Open(ctx context.Context, path string) (Catalog, error) {
	if path == "" {
		return nil, errors.New("catalog: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %q: %w", path, err)
	}
	// Create the file ourselves so that it is 0600; SQLite gives the -wal
	// and -shm files the mode of the database file.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}

	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	// synchronous=FULL: a commit is durable when it returns. Holdfast
	// deletes store objects right after commits that supersede them; with
	// NORMAL a power loss could roll the catalog back to a version whose
	// object is already gone.
	q.Set("_synchronous", "FULL")
	// BEGIN IMMEDIATE for every transaction: see sqliteCatalog.
	q.Set("_txlock", "immediate")
	// The batch calls stage rows in temporary tables; keep them in memory.
	q.Add("_pragma", "temp_store(MEMORY)")
	// A file: URI keeps a '?' or '#' in the path from being read as the
	// start of the parameters.
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("catalog: %q: %w", path, err)
	}
	// Each connection has its own page cache; bound them.
	n := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)

	c := &sqliteCatalog{db: db, wsem: make(chan struct{}, 1), stmts: map[string]*sql.Stmt{}}
	if err := c.check(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog: %q: %w", path, err)
	}
	return c, nil
}

// check makes sure the connection settings took and the schema is ours.
func (c *sqliteCatalog) check(ctx context.Context) error {
	var mode string
	if err := c.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, want \"wal\"", mode)
	}
	var fk int
	if err := c.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
		return err
	}
	if fk != 1 {
		return errors.New("foreign keys are not enforced")
	}
	return c.initSchema(ctx)
}

func (c *sqliteCatalog) Close() error {
	c.mu.Lock()
	for q, s := range c.stmts {
		s.Close()
		delete(c.stmts, q)
	}
	c.mu.Unlock()
	return c.db.Close()
}

// prepared returns the statement for q, prepared once per handle (and by
// database/sql once per connection).
func (c *sqliteCatalog) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stmts[q]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.stmts[q] = s
	return s, nil
}

func (c *sqliteCatalog) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	s, err := c.prepared(ctx, q)
	if err != nil {
		// QueryRowContext on the pool reports the same error through Scan.
		return c.db.QueryRowContext(ctx, q, args...)
	}
	return s.QueryRowContext(ctx, args...)
}

func (c *sqliteCatalog) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	s, err := c.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// txn is one write transaction with its statements.
type txn struct {
	ctx   context.Context
	c     *sqliteCatalog
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	now   int64 // one timestamp for everything the transaction records
	// local: prepare statements on the transaction's connection only. The
	// batch statements need it: they use temporary tables, which exist
	// only on the connection that made them.
	local bool
}

func (t *txn) stmt(q string) (*sql.Stmt, error) {
	if s, ok := t.stmts[q]; ok {
		return s, nil
	}
	var s *sql.Stmt
	if t.local {
		var err error
		if s, err = t.tx.PrepareContext(t.ctx, q); err != nil {
			return nil, err
		}
	} else {
		ps, err := t.c.prepared(t.ctx, q)
		if err != nil {
			return nil, err
		}
		s = t.tx.StmtContext(t.ctx, ps)
	}
	t.stmts[q] = s
	return s, nil
}

func (t *txn) query(q string, args ...any) (*sql.Rows, error) {
	s, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(t.ctx, args...)
}

func (t *txn) exec(q string, args ...any) (sql.Result, error) {
	s, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(t.ctx, args...)
}

func (t *txn) queryRow(q string, args ...any) *sql.Row {
	s, err := t.stmt(q)
	if err != nil {
		return t.tx.QueryRowContext(t.ctx, q, args...)
	}
	return s.QueryRowContext(t.ctx, args...)
}

// write runs fn in a write transaction (BEGIN IMMEDIATE) and commits it if
// fn returns nil. fn works through t only: a read on c.db would run on
// another connection, outside the transaction.
func (c *sqliteCatalog) write(ctx context.Context, fn func(t *txn) error) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.wsem }()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := &txn{ctx: ctx, c: c, tx: tx, stmts: map[string]*sql.Stmt{}, now: time.Now().UnixNano()}
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// exists maps a constraint violation (a duplicate, the writers having
// checked everything else) to ErrExists.
func exists(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqliteConstraint {
		return fmt.Errorf("%w (%v)", ErrExists, err)
	}
	return err
}

// ---- meta ----

func (c *sqliteCatalog) GetMeta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := c.queryRow(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("catalog: meta %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: meta %q: %w", key, err)
	}
	return v, nil
}

func (c *sqliteCatalog) SetMeta(ctx context.Context, key string, v []byte) error {
	if key == metaSchemaVersion || key == metaChanges || key == metaLastBackup || key == metaRetiredRoots {
		return fmt.Errorf("catalog: meta %q is reserved", key)
	}
	err := c.write(ctx, func(t *txn) error {
		_, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, blob(v))
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: set meta %q: %w", key, err)
	}
	return nil
}

// ---- buckets ----

func (c *sqliteCatalog) CreateBucket(ctx context.Context, b Bucket) error {
	err := c.write(ctx, func(t *txn) error {
		if err := insertBucket(t, b); err != nil {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: create bucket %q: %w", b.Name, err)
	}
	return nil
}

func insertBucket(t *txn, b Bucket) error {
	if b.Name == "" {
		return errors.New("empty bucket name")
	}
	_, err := t.exec(`INSERT INTO buckets (name, id, created) VALUES (?, ?, ?)`,
		b.Name, b.ID[:], nanos(b.Created))
	return exists(err)
}

func scanBucket(s scanner) (Bucket, error) {
	var b Bucket
	var created int64
	err := s.Scan(&b.Name, fixed{b.ID[:], "bucket id"}, &created)
	b.Created = fromNanos(created)
	return b, err
}

func (c *sqliteCatalog) GetBucket(ctx context.Context, name string) (Bucket, error) {
	b, err := scanBucket(c.queryRow(ctx, `SELECT name, id, created FROM buckets WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Bucket{}, fmt.Errorf("catalog: bucket %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Bucket{}, fmt.Errorf("catalog: bucket %q: %w", name, err)
	}
	return b, nil
}

func (c *sqliteCatalog) Buckets(ctx context.Context) ([]Bucket, error) {
	rows, err := c.query(ctx, `SELECT name, id, created FROM buckets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: buckets: %w", err)
	}
	defer rows.Close()
	var bs []Bucket
	for rows.Next() {
		b, err := scanBucket(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: buckets: %w", err)
		}
		bs = append(bs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: buckets: %w", err)
	}
	return bs, nil
}

func (c *sqliteCatalog) DeleteBucket(ctx context.Context, name string) error {
	err := c.write(ctx, func(t *txn) error {
		var found, used bool
		if err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?1),
			EXISTS (SELECT 1 FROM objects WHERE bucket = ?1)`, name).Scan(&found, &used); err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		if used {
			return ErrNotEmpty
		}
		if _, err := t.exec(`DELETE FROM buckets WHERE name = ?`, name); err != nil {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: delete bucket %q: %w", name, err)
	}
	return nil
}

// ---- bucket keys ----

const bucketKeyCols = `bucket_id, version, source, alg, kek_version, wrapped, key_check, created, journal_id, state`

func bucketKeyArgs(k *BucketKey) []any {
	return []any{k.BucketID[:], int64(k.Version), int64(k.Wrapped.Source), int64(k.Wrapped.Alg),
		int64(k.Wrapped.KEKVersion), blob(k.Wrapped.Data), blob(k.KeyCheck), nanos(k.Created),
		k.JournalID[:], int64(k.State)}
}

func scanBucketKey(s scanner) (BucketKey, error) {
	var k BucketKey
	var version, source, alg, kek, created, state int64
	err := s.Scan(fixed{k.BucketID[:], "bucket id"}, &version, &source, &alg, &kek,
		&k.Wrapped.Data, &k.KeyCheck, &created, fixed{k.JournalID[:], "journal id"}, &state)
	k.Version = uint32(version)
	k.Wrapped.Source = keys.SourceKind(source)
	k.Wrapped.Alg = keys.Alg(alg)
	k.Wrapped.KEKVersion = uint32(kek)
	k.Wrapped.Data = nilIfEmpty(k.Wrapped.Data)
	k.KeyCheck = nilIfEmpty(k.KeyCheck)
	k.Created = fromNanos(created)
	k.State = int(state)
	return k, err
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func insertBucketKey(t *txn, k *BucketKey) error {
	if err := t.checkRoot(k.Wrapped.KEKVersion); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO bucket_keys (`+bucketKeyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		bucketKeyArgs(k)...)
	return exists(err)
}

func (c *sqliteCatalog) AddBucketKey(ctx context.Context, k BucketKey) error {
	if err := c.write(ctx, func(t *txn) error { return insertBucketKey(t, &k) }); err != nil {
		return fmt.Errorf("catalog: add bucket key %x version %d: %w", k.BucketID, k.Version, err)
	}
	return nil
}

func (c *sqliteCatalog) UpdateBucketKey(ctx context.Context, k BucketKey) error {
	err := c.write(ctx, func(t *txn) error {
		a := bucketKeyArgs(&k) // bucket_id, version, then the columns set
		args := append(slices.Clone(a[2:]), a[0], a[1])
		if err := affected(t.exec(`UPDATE bucket_keys SET source = ?, alg = ?, kek_version = ?, wrapped = ?,
			key_check = ?, created = ?, journal_id = ?, state = ? WHERE bucket_id = ? AND version = ?`, args...)); err != nil {
			return err
		}
		return t.changed(1)
	})
	if err != nil {
		return fmt.Errorf("catalog: update bucket key %x version %d: %w", k.BucketID, k.Version, err)
	}
	return nil
}

func (c *sqliteCatalog) bucketKeys(ctx context.Context, q string, args ...any) ([]BucketKey, error) {
	rows, err := c.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ks []BucketKey
	for rows.Next() {
		k, err := scanBucketKey(rows)
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	return ks, rows.Err()
}

func (c *sqliteCatalog) BucketKeys(ctx context.Context, bucketID keys.ID) ([]BucketKey, error) {
	ks, err := c.bucketKeys(ctx, `SELECT `+bucketKeyCols+` FROM bucket_keys WHERE bucket_id = ? ORDER BY version`, bucketID[:])
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket keys of %x: %w", bucketID, err)
	}
	return ks, nil
}

func (c *sqliteCatalog) AllBucketKeys(ctx context.Context) ([]BucketKey, error) {
	ks, err := c.bucketKeys(ctx, `SELECT `+bucketKeyCols+` FROM bucket_keys ORDER BY bucket_id, version`)
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket keys: %w", err)
	}
	return ks, nil
}
