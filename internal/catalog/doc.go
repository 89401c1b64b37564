// Package catalog is the on-prem record of what is stored: logical bucket
// and key to opaque object id, version, sizes, metadata and the pin (a hash
// of the header, manifest and footer) that every read checks before it
// releases a byte. It is what makes rollback, deletion, swap and injection
// detectable.
//
// catalog.go is the contract (the Catalog interface). One implementation
// (db.go and the files beside it) runs on two engines through database/sql,
// its SQL rewritten per engine by a small dialect (dialect.go):
//
//   - Open: SQLite (modernc.org/sqlite, pure Go), one file, mode 0600, in
//     WAL mode with a busy timeout, so the CLI and `holdfast serve` can use
//     one catalog at once. Every write transaction begins IMMEDIATE, so
//     concurrent writers queue instead of failing with SQLITE_BUSY.
//   - OpenPostgres (postgres.go): PostgreSQL (jackc/pgx through its
//     database/sql driver), on premises, shared by several gateways on
//     several hosts. Always mutual TLS 1.3 with the server verified in full,
//     never a password. Every write transaction first takes one
//     transaction-scoped advisory lock, so writers are serialised across
//     processes and hosts exactly as on SQLite.
//
// On both, reads are single statements and never block on writers, and
// consistent multi-statement reads use snapshot transactions.
// Versions are monotonic per (bucket,key) across deletes and processes.
// The batch calls (BeginPutBatch, CommitPutBatch, Restore) apply many rows
// with a few set-based statements and give the same result as the single
// calls in order. The schema carries a version; a newer one is refused.
// For catalog backups (backup.go) it counts committed changes in the
// transactions that make them, exports consistent read-only snapshots
// that do not block writers, and records the last backup committed,
// refusing a sequence it already has. Every write advances the catalog
// head (head.go), a hash chain with fresh randomness per link, in the same
// transaction, so that a record of it kept off the host (the key server)
// detects a catalog rolled back or forked.
//
// The catalog never holds key material in the clear: wrapped keys only.
// It never touches the store: callers write and delete store objects and
// record what they did here.
package catalog
