package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

// The catalog's tests run on both engines. Every test opens its catalogs
// through newCatalog, newEmptyCatalog and openAt, which open SQLite files
// unless the test runs under TestPostgres; there they open fresh
// databases on the package's shared PostgreSQL cluster (pgtest.Shared,
// stopped by TestMain). A location is what openAt opens: a SQLite path, or
// the fields of a PostgresConfig.

// postgresSuite is every test that runs on PostgreSQL too, under
// TestPostgres. The tests left out are about SQLite's files (modes, WAL,
// migrations from old SQLite schemas, query plans) or use no database.
var postgresSuite = []struct {
	name string
	fn   func(*testing.T)
}{
	// catalog_test.go
	{"TestMeta", TestMeta},
	{"TestBuckets", TestBuckets},
	{"TestBucketKeys", TestBucketKeys},
	{"TestBucketKeyOf", TestBucketKeyOf},
	{"TestEntryRoundTrip", TestEntryRoundTrip},
	{"TestGetMissing", TestGetMissing},
	{"TestList", TestList},
	{"TestListPaging", TestListPaging},
	{"TestCommitSupersedes", TestCommitSupersedes},
	{"TestStaleVersionRefused", TestStaleVersionRefused},
	{"TestCommitRefusals", TestCommitRefusals},
	{"TestDeleteAndNextVersion", TestDeleteAndNextVersion},
	{"TestForgetNames", TestForgetNames},
	{"TestPending", TestPending},
	{"TestLookupAndPins", TestLookupAndPins},
	{"TestRewrap", TestRewrap},
	{"TestBatch", TestBatch},
	{"TestBeginPutBatchAssignsVersions", TestBeginPutBatchAssignsVersions},
	{"TestBatchDuplicatesInside", TestBatchDuplicatesInside},
	{"TestBatchMatchesSingle", TestBatchMatchesSingle},
	{"TestStagingTablesOnEveryConnection", TestStagingTablesOnEveryConnection},
	{"TestCommitReplaceYields", TestCommitReplaceYields},
	{"TestBatchStatementsPreparedOnce", TestBatchStatementsPreparedOnce},
	{"TestRestore", TestRestore},
	{"TestReopenPersists", TestReopenPersists},
	{"TestSchemaVersion", TestSchemaVersion},
	{"TestCommitNeedsPending", TestCommitNeedsPending},
	{"TestCommitBucketKeyIsAtomic", TestCommitBucketKeyIsAtomic},
	// concurrency_test.go
	{"TestConcurrentHandles", TestConcurrentHandles},
	{"TestConcurrentProcesses", TestConcurrentProcesses},
	// create_test.go
	{"TestCommitCreate", TestCommitCreate},
	// uploads_test.go
	{"TestUploadLifecycle", TestUploadLifecycle},
	{"TestCommitUploadStale", TestCommitUploadStale},
	{"TestDeleteUpload", TestDeleteUpload},
	{"TestListUploads", TestListUploads},
	// keyversions_test.go
	{"TestRetireBucketKey", TestRetireBucketKey},
	{"TestRewrapBatchSkipsReplaced", TestRewrapBatchSkipsReplaced},
	{"TestRewrapBucketKeyAndReplace", TestRewrapBucketKeyAndReplace},
	{"TestRetireRoot", TestRetireRoot},
	// access_test.go
	{"TestAccessKeys", TestAccessKeys},
	{"TestAccessTableKey", TestAccessTableKey},
	// backup_test.go
	{"TestChanges", TestChanges},
	{"TestView", TestView},
	{"TestCommitBackup", TestCommitBackup},
	{"TestReservations", TestReservations},
	// ordered_test.go
	{"TestEntriesAfter", TestEntriesAfter},
	// head_test.go
	{"TestHead", TestHead},
	{"TestHeadAt", TestHeadAt},
	{"TestHeadNotRolledBack", TestHeadNotRolledBack},
	{"TestHeadConcurrentHandles", TestHeadConcurrentHandles},
	{"TestOpenConcurrently", TestOpenConcurrently},
	// group_test.go
	{"TestGroupCommit", TestGroupCommit},
}

// TestPostgres runs postgresSuite on PostgreSQL.
func TestPostgres(t *testing.T) {
	for _, tc := range postgresSuite {
		t.Run(tc.name, tc.fn)
	}
}

// onPostgres says whether t runs under TestPostgres.
func onPostgres(t testing.TB) bool {
	return strings.HasPrefix(t.Name(), "TestPostgres/")
}

var databases atomic.Int64

// newLocation makes a place for a new catalog: a path in t's temporary
// directory, or a new database on the shared cluster.
func newLocation(t testing.TB) string {
	t.Helper()
	if !onPostgres(t) {
		return filepath.Join(t.TempDir(), "catalog.db")
	}
	db := pgtest.Shared(t).NewDatabase(t, fmt.Sprintf("catalog_%d", databases.Add(1)))
	return strings.Join([]string{"postgres", db.URL, db.CAFile, db.CertFile, db.KeyFile}, "\n")
}

// postgresConfigAt returns the configuration of a PostgreSQL location.
func postgresConfigAt(loc string) (PostgresConfig, bool) {
	f := strings.Split(loc, "\n")
	if len(f) != 5 || f[0] != "postgres" {
		return PostgresConfig{}, false
	}
	return PostgresConfig{URL: f[1], CAFile: f[2], CertFile: f[3], KeyFile: f[4]}, true
}

// openLocation opens the catalog at loc.
func openLocation(ctx context.Context, loc string) (Catalog, error) {
	if cfg, ok := postgresConfigAt(loc); ok {
		return OpenPostgres(ctx, cfg)
	}
	return Open(ctx, loc)
}

// rawDB opens the database at loc directly, for tests that change it
// behind the catalog's back; q rebinds a statement for it.
func rawDB(t testing.TB, loc string) (db *sql.DB, q func(string) string) {
	t.Helper()
	if cfg, ok := postgresConfigAt(loc); ok {
		pc, _, err := postgresConnConfig(cfg)
		mustNot(t, "postgres config", err)
		db = stdlib.OpenDB(*pc)
		t.Cleanup(func() { db.Close() })
		return db, postgresDialect.rebind
	}
	db, err := sql.Open("sqlite", loc)
	mustNot(t, "sql.Open", err)
	t.Cleanup(func() { db.Close() })
	return db, sqliteDialect.rebind
}

// newEmptyCatalog opens a fresh catalog with no bucket.
func newEmptyCatalog(t testing.TB) (Catalog, string) {
	t.Helper()
	loc := newLocation(t)
	return openAt(t, loc), loc
}
