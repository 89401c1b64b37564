package catalog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"modernc.org/sqlite"
)

// SQLite's primary result codes (https://sqlite.org/rescode.html).
const (
	sqliteBusy       = 5
	sqliteConstraint = 19
)

// busyTimeout is how long a connection waits for another's lock, and how
// long Open keeps trying to set a new database up while others do too.
const busyTimeout = 10 * time.Second

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
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	// synchronous=FULL: a commit is durable when it returns. Holdfast
	// deletes store objects right after commits that supersede them; with
	// NORMAL a power loss could roll the catalog back to a version whose
	// object is already gone.
	q.Set("_synchronous", "FULL")
	// BEGIN IMMEDIATE for every transaction: see sqlCatalog.
	q.Set("_txlock", "immediate")
	// The batch calls stage rows in temporary tables; keep them in memory.
	q.Add("_pragma", "temp_store(MEMORY)")
	// A file: URI keeps a '?' or '#' in the path from being read as the
	// start of the parameters.
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String()

	conn, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("catalog: %q: %w", path, err)
	}
	db := sql.OpenDB(withTempTables{conn, sqliteDialect})
	// Each connection has its own page cache; bound them.
	n := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)

	c := newSQLCatalog(db, sqliteDialect)
	if err := c.checkSQLiteRetrying(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog: %q: %w", path, err)
	}
	return c, nil
}

// withTempTables makes the staging tables (tempTables) on every new
// connection, before database/sql hands it out.
type withTempTables struct {
	driver.Connector
	d *dialect
}

func (c withTempTables) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("catalog: the %T connection cannot execute statements", conn)
	}
	for _, q := range tempTables {
		if _, err := ex.ExecContext(ctx, c.d.rebind(q), nil); err != nil {
			conn.Close()
			return nil, fmt.Errorf("catalog: making the staging tables: %w", err)
		}
	}
	return conn, nil
}

// checkSQLiteRetrying is checkSQLite, tried again while it fails with
// SQLITE_BUSY, for up to busyTimeout. Turning a new database to WAL mode
// needs an exclusive lock, and a connection that meets another doing the
// same gets SQLITE_BUSY at once: SQLite does not wait there, as waiting
// could deadlock. Once the database is in WAL mode the busy timeout
// applies and this does not recur.
func (c *sqlCatalog) checkSQLiteRetrying(ctx context.Context) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := c.checkSQLite(ctx)
		if !isSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(time.Duration(1+rand.IntN(20)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// checkSQLite makes sure the connection settings took and the schema is ours.
func (c *sqlCatalog) checkSQLite(ctx context.Context) error {
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

// isSQLiteBusy reports whether err is SQLite's "database is locked".
func isSQLiteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteBusy
}

// isSQLiteConstraint reports whether err is SQLite's constraint violation.
func isSQLiteConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteConstraint
}
