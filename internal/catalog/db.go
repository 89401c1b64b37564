package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/keys"
)

// pageSize is how many entries List and All read per query: it bounds
// memory and the time a read holds a connection.
const pageSize = 1000

// sqlCatalog is the Catalog on SQL, SQLite (Open) or PostgreSQL
// (OpenPostgres); d says which. Writes from one handle are serialised by
// wsem before they reach the database, so goroutines queue in Go; writes
// from other handles, processes and hosts queue on the database's lock:
// on SQLite the write lock every transaction takes at BEGIN IMMEDIATE
// (waiting up to the busy timeout; a reader never has to upgrade to a
// writer and fail with SQLITE_BUSY), on PostgreSQL a transaction-scoped
// advisory lock taken by the transaction's first statement. Either way
// writers run one at a time, in the order they got the lock, and each sees
// everything committed before it. Reads are single statements outside any
// transaction and run concurrently with writers.
type sqlCatalog struct {
	db   *sql.DB
	d    *dialect
	wsem chan struct{}
	// queue holds writes waiting for wsem: the writer that gets it runs
	// them all in one transaction (write, commitGroup).
	gmu   sync.Mutex
	queue []*pending

	mu    sync.Mutex
	stmts map[string]*sql.Stmt

	onCommit atomic.Pointer[func(Head)]
}

var (
	_ Catalog      = (*sqlCatalog)(nil)
	_ HeadNotifier = (*sqlCatalog)(nil)
)

func newSQLCatalog(db *sql.DB, d *dialect) *sqlCatalog {
	return &sqlCatalog{db: db, d: d, wsem: make(chan struct{}, 1), stmts: map[string]*sql.Stmt{}}
}

func (c *sqlCatalog) Close() error {
	c.mu.Lock()
	for q, s := range c.stmts {
		s.Close()
		delete(c.stmts, q)
	}
	c.mu.Unlock()
	return c.db.Close()
}

// prepared returns the statement for q, rebound to the dialect and
// prepared once per handle (and by database/sql once per connection).
func (c *sqlCatalog) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stmts[q]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, c.d.rebind(q))
	if err != nil {
		return nil, err
	}
	c.stmts[q] = s
	return s, nil
}

func (c *sqlCatalog) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	s, err := c.prepared(ctx, q)
	if err != nil {
		// QueryRowContext on the pool reports the same error through Scan.
		return c.db.QueryRowContext(ctx, c.d.rebind(q), args...)
	}
	return s.QueryRowContext(ctx, args...)
}

func (c *sqlCatalog) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	s, err := c.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// txn is one serialised transaction with its statements.
type txn struct {
	ctx   context.Context
	c     *sqlCatalog
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	now   int64 // one timestamp for everything the transaction records
}

func (t *txn) stmt(q string) (*sql.Stmt, error) {
	if s, ok := t.stmts[q]; ok {
		return s, nil
	}
	ps, err := t.c.prepared(t.ctx, q)
	if err != nil {
		return nil, err
	}
	s := t.tx.StmtContext(t.ctx, ps)
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

// execOnce runs q without preparing it (schema statements).
func (t *txn) execOnce(q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, t.c.d.rebind(q), args...)
}

func (t *txn) queryRow(q string, args ...any) *sql.Row {
	s, err := t.stmt(q)
	if err != nil {
		return t.tx.QueryRowContext(t.ctx, t.c.d.rebind(q), args...)
	}
	return s.QueryRowContext(t.ctx, args...)
}

// write runs fn in a write transaction and commits it if fn returns nil,
// advancing the catalog head in the same transaction (head.go); after the
// commit it tells the OnCommit hook the head committed. fn works through t
// only: a read on c.db would run on another connection, outside the
// transaction. Every change to the catalog goes through write.
func (c *sqlCatalog) write(ctx context.Context, fn func(t *txn) error) error {
	p := &pending{ctx: ctx, fn: fn, done: make(chan struct{})}
	c.gmu.Lock()
	c.queue = append(c.queue, p)
	c.gmu.Unlock()
	select {
	case c.wsem <- struct{}{}:
	case <-p.done: // another writer's transaction carried it
		return p.err
	case <-ctx.Done():
		c.gmu.Lock()
		if !p.taken {
			p.cancelled = true
			c.gmu.Unlock()
			return ctx.Err()
		}
		c.gmu.Unlock()
		<-p.done // taken: it may commit, so its outcome is the answer
		return p.err
	}
	defer func() { <-c.wsem }()
	c.gmu.Lock()
	var group []*pending
	for _, q := range c.queue {
		if !q.cancelled {
			q.taken = true
			group = append(group, q)
		}
	}
	c.queue = nil
	c.gmu.Unlock()
	if len(group) == 0 { // p was carried by the writer before: it is done
		<-p.done
		return p.err
	}
	c.commitGroup(group)
	<-p.done
	return p.err
}

// pending is a write waiting for a transaction (group commit: write).
type pending struct {
	ctx       context.Context
	fn        func(t *txn) error
	taken     bool // in a group: it runs (guarded by gmu)
	cancelled bool // its caller gave up before it was taken (gmu)
	err       error
	done      chan struct{}
}

// commitGroup runs the writes of group, in order, in one transaction —
// each inside a savepoint, so that one that fails is undone alone and
// gets its own error — and commits them together: writers that queued
// while another transaction ran share one commit, and so one sync of the
// database. Each write still sees every write before it, as if it ran
// alone. The head advances once for the group. Called holding wsem.
func (c *sqlCatalog) commitGroup(group []*pending) {
	finish := func(err error) {
		for _, q := range group {
			if q.err == nil {
				q.err = err
			}
			close(q.done)
		}
	}
	if len(group) == 1 {
		group[0].err = c.run(group[0].ctx, true, group[0].fn)
		close(group[0].done)
		return
	}
	// The transaction outlives any one caller's context: a caller that
	// gives up makes its own statements fail, not the others' commit.
	ctx := context.WithoutCancel(group[0].ctx)
	err := c.run(ctx, true, func(t *txn) error {
		ok := 0
		for i, q := range group {
			sp := fmt.Sprintf("w%d", i)
			if _, err := t.tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
				return err
			}
			qt := &txn{ctx: q.ctx, c: c, tx: t.tx, stmts: map[string]*sql.Stmt{}, now: t.now}
			q.err = q.ctx.Err()
			if q.err == nil {
				q.err = q.fn(qt)
			}
			if q.err != nil {
				if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
					return err
				}
			} else {
				ok++
			}
			if _, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
				return err
			}
		}
		if ok == 0 {
			return errNothingCommitted
		}
		return nil
	})
	if errors.Is(err, errNothingCommitted) {
		err = nil // each has its own error
	}
	finish(err)
}

// errNothingCommitted: every write of a group failed; nothing to commit.
var errNothingCommitted = errors.New("no write of the group succeeded")

// locked runs fn in a serialised transaction that does not count as a
// write (no head advance): reads that must see no writer halfway, and the
// schema's creation and migration.
func (c *sqlCatalog) locked(ctx context.Context, fn func(t *txn) error) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.wsem }()
	return c.run(ctx, false, fn)
}

// run runs fn in one database transaction, taking the database's write
// lock first, and commits it; advance: the head advances with it, and the
// handle's OnCommit hears of it. Called holding wsem.
func (c *sqlCatalog) run(ctx context.Context, advance bool, fn func(t *txn) error) error {
	tx, err := c.db.BeginTx(ctx, c.d.write)
	if err != nil {
		return err
	}
	t := &txn{ctx: ctx, c: c, tx: tx, stmts: map[string]*sql.Stmt{}, now: time.Now().UnixNano()}
	if c.d.lockSQL != "" {
		// The first statement: READ COMMITTED takes a fresh snapshot per
		// statement, so every later one sees all that the writers before
		// this one committed.
		if _, err := tx.ExecContext(ctx, c.d.lockSQL); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	var h Head
	if advance {
		if h, err = t.advanceHead(); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if fn := c.onCommit.Load(); advance && fn != nil {
		// Still holding wsem: this handle reports its heads in order.
		(*fn)(h)
	}
	return nil
}

// exists maps a constraint violation (a duplicate, the writers having
// checked everything else) to ErrExists.
func exists(err error) error {
	if isSQLiteConstraint(err) || isPostgresConstraint(err) {
		return fmt.Errorf("%w (%v)", ErrExists, err)
	}
	return err
}

// isPostgresConstraint reports whether err is PostgreSQL's integrity
// constraint violation (SQLSTATE class 23: unique 23505, foreign key
// 23503, check 23514, not null 23502).
func isPostgresConstraint(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "23"
}

// ---- meta ----

func (c *sqlCatalog) GetMeta(ctx context.Context, key string) ([]byte, error) {
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

func (c *sqlCatalog) SetMeta(ctx context.Context, key string, v []byte) error {
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

func (c *sqlCatalog) CreateBucket(ctx context.Context, b Bucket) error {
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

func (c *sqlCatalog) GetBucket(ctx context.Context, name string) (Bucket, error) {
	b, err := scanBucket(c.queryRow(ctx, `SELECT name, id, created FROM buckets WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Bucket{}, fmt.Errorf("catalog: bucket %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Bucket{}, fmt.Errorf("catalog: bucket %q: %w", name, err)
	}
	return b, nil
}

func (c *sqlCatalog) Buckets(ctx context.Context) ([]Bucket, error) {
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

func (c *sqlCatalog) DeleteBucket(ctx context.Context, name string) error {
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

func (c *sqlCatalog) AddBucketKey(ctx context.Context, k BucketKey) error {
	if err := c.write(ctx, func(t *txn) error { return insertBucketKey(t, &k) }); err != nil {
		return fmt.Errorf("catalog: add bucket key %x version %d: %w", k.BucketID, k.Version, err)
	}
	return nil
}

func (c *sqlCatalog) UpdateBucketKey(ctx context.Context, k BucketKey) error {
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

func (c *sqlCatalog) bucketKeys(ctx context.Context, q string, args ...any) ([]BucketKey, error) {
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

func (c *sqlCatalog) BucketKeys(ctx context.Context, bucketID keys.ID) ([]BucketKey, error) {
	ks, err := c.bucketKeys(ctx, `SELECT `+bucketKeyCols+` FROM bucket_keys WHERE bucket_id = ? ORDER BY version`, bucketID[:])
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket keys of %x: %w", bucketID, err)
	}
	return ks, nil
}

func (c *sqlCatalog) BucketKeyOf(ctx context.Context, name string, v uint32) (Bucket, BucketKey, error) {
	var b Bucket
	var created int64
	k, err := scanBucketKey(scanPrefix{c.queryRow(ctx, `SELECT b.name, b.id, b.created, `+bucketKeyColsK+
		` FROM buckets b JOIN bucket_keys k ON k.bucket_id = b.id WHERE b.name = ? AND k.version = ?`, name, int64(v)),
		[]any{&b.Name, fixed{b.ID[:], "bucket id"}, &created}})
	b.Created = fromNanos(created)
	if errors.Is(err, sql.ErrNoRows) {
		return Bucket{}, BucketKey{}, fmt.Errorf("catalog: bucket %q key v%d: %w", name, v, ErrNotFound)
	}
	if err != nil {
		return Bucket{}, BucketKey{}, fmt.Errorf("catalog: bucket %q key v%d: %w", name, v, err)
	}
	return b, k, nil
}

// bucketKeyColsK is bucketKeyCols qualified by the table alias k.
var bucketKeyColsK = bucketKeyColsOf("k")

// bucketKeyColsOf is bucketKeyCols, each qualified by the table alias t.
func bucketKeyColsOf(t string) string {
	cols := strings.Split(bucketKeyCols, ", ")
	for i := range cols {
		cols[i] = t + "." + cols[i]
	}
	return strings.Join(cols, ", ")
}

// scanPrefix scans a row whose first columns go to pre and the rest to
// the caller's destinations.
type scanPrefix struct {
	s   scanner
	pre []any
}

func (p scanPrefix) Scan(dest ...any) error {
	return p.s.Scan(append(p.pre[:len(p.pre):len(p.pre)], dest...)...)
}

func (c *sqlCatalog) AllBucketKeys(ctx context.Context) ([]BucketKey, error) {
	ks, err := c.bucketKeys(ctx, `SELECT `+bucketKeyCols+` FROM bucket_keys ORDER BY bucket_id, version`)
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket keys: %w", err)
	}
	return ks, nil
}
