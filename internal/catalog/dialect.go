package catalog

import (
	"database/sql"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The catalog's SQL is written once, in the dialect both engines share,
// with SQLite's spelling where they differ; a dialect turns a statement
// into its engine's once, when it is first prepared (rebind). What differs:
//
//   - placeholders: SQLite takes ? and ?N; PostgreSQL takes $N.
//   - types in DDL: PostgreSQL has BYTEA for BLOB, BIGINT for INTEGER,
//     and compares TEXT by the database's collation unless told "C"
//     (bytewise, the order of Go strings and of S3 listings); it has no
//     WITHOUT ROWID tables.
//   - the larger of two values: greatest(a, b) is SQLite's max(a, b).
//   - counters kept in meta rows (changes, the access table's version):
//     SQLite adds to an integer stored in the BLOB column; PostgreSQL
//     stores the same decimal digits as bytes and converts.
//   - how writers are serialised (lockSQL) and how a consistent
//     read-only view is opened (snapshot).
//
// Everything else (ON CONFLICT upserts, row values, multi-row VALUES,
// CHECK constraints, substr and length on byte strings, temporary
// tables) is the same on both.
type dialect struct {
	name string
	// dollar: rewrite ? and ?N placeholders to $N.
	dollar bool
	// ddlTypes rewrites the column types of CREATE and ALTER statements.
	ddlTypes *strings.Replacer
	// words rewrites function names, in every statement.
	words *strings.Replacer
	// tables counts the tables of the catalog's schema.
	tables string
	// counterAdd adds ?2 to the counter in meta row ?1, creating it.
	counterAdd string
	// counterGet is the value of the counter in meta row %s (0 if absent).
	counterGet string
	// lockSQL, run first in every serialised transaction, takes the lock
	// that serialises writers across processes and hosts ("" when the
	// transaction's BEGIN takes it).
	lockSQL string
	// write opens a serialised transaction (nil: the driver's default).
	write *sql.TxOptions
	// snapshot opens a consistent read-only transaction.
	snapshot sql.TxOptions

	mu      sync.Mutex
	rebound map[string]string
}

var sqliteDialect = &dialect{
	name:   "sqlite",
	words:  strings.NewReplacer("greatest(", "max("),
	tables: `SELECT count(*) FROM sqlite_schema WHERE type = 'table'`,
	counterAdd: `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = meta.value + excluded.value`,
	counterGet: `SELECT coalesce((SELECT value FROM meta WHERE key = '%s'), 0)`,
	// Read-only transactions begin DEFERRED (the driver ignores the
	// IMMEDIATE default for them); in WAL mode the first read fixes the
	// snapshot every later read sees.
	snapshot: sql.TxOptions{ReadOnly: true},
	rebound:  map[string]string{},
}

// advisoryLockKey is the PostgreSQL advisory lock every write transaction
// takes: the first 8 bytes of SHA-256("holdfast catalog"), as a signed
// big-endian integer (TestAdvisoryLockKey recomputes it).
const advisoryLockKey int64 = -0x6a7b_4a34_cf56_3a89

var postgresDialect = &dialect{
	name:   "postgres",
	dollar: true,
	ddlTypes: strings.NewReplacer(" WITHOUT ROWID", "", " BLOB", " BYTEA", " INTEGER", " BIGINT",
		" TEXT", ` TEXT COLLATE "C"`),
	words:  strings.NewReplacer(),
	tables: `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`,
	// The value is the counter's decimal digits, as SQLite gives them to a
	// reader of the BLOB column (GetMeta).
	counterAdd: `INSERT INTO meta (key, value) VALUES (?1, decode(CAST(?2 AS BIGINT)::text, 'escape'))
		ON CONFLICT (key) DO UPDATE SET value =
			decode((encode(meta.value, 'escape')::bigint + CAST(?2 AS BIGINT))::text, 'escape')`,
	counterGet: `SELECT coalesce((SELECT encode(value, 'escape')::bigint FROM meta WHERE key = '%s'), 0)`,
	lockSQL:    `SELECT pg_advisory_xact_lock(` + strconv.FormatInt(advisoryLockKey, 10) + `)`,
	// READ COMMITTED, whatever the database's default: each statement
	// after the lock must see what the writers before committed. Under
	// REPEATABLE READ (a DBA's default_transaction_isolation) the lock
	// statement would fix the snapshot before the lock is granted, and
	// the second of two writers would fail on a serialisation error.
	write: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	// REPEATABLE READ: every statement sees the snapshot of the first.
	snapshot: sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	rebound:  map[string]string{},
}

var ddlStatement = regexp.MustCompile(`^\s*(CREATE|ALTER)\b`)

// rebind returns q in the dialect's SQL, computed once per statement.
func (d *dialect) rebind(q string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.rebound[q]; ok {
		return r
	}
	r := q
	if d.ddlTypes != nil && ddlStatement.MatchString(r) {
		r = d.ddlTypes.Replace(r)
	}
	r = d.words.Replace(r)
	if d.dollar {
		r = dollarPlaceholders(r)
	}
	d.rebound[q] = r
	return r
}

// dollarPlaceholders rewrites SQLite's placeholders as PostgreSQL's: ?N
// is $N, and a bare ? is one more than the highest number before it (as
// SQLite numbers them). Quoted strings and identifiers are left alone.
func dollarPlaceholders(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	highest := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			n := highest + 1
			if j > i+1 {
				n, _ = strconv.Atoi(q[i+1 : j])
			}
			highest = max(highest, n)
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j - 1
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// counter is the query reading the counter in meta row key.
func (d *dialect) counter(key string) string {
	return strings.Replace(d.counterGet, "%s", key, 1)
}
