// Package catalog is the on-prem record of what is stored: logical bucket
// and key to opaque object id, version, sizes, metadata and the pin (a hash
// of the header, manifest and footer) that every read checks before it
// releases a byte. It is what makes rollback, deletion, swap and injection
// detectable.
//
// catalog.go is the contract (the Catalog interface); Open returns the
// embedded implementation on SQLite (modernc.org/sqlite, pure Go): one file,
// mode 0600, in WAL mode with a busy timeout, so the CLI and `holdfast
// serve` can use one catalog at once. Every write transaction begins
// IMMEDIATE, so concurrent writers queue instead of failing with
// SQLITE_BUSY; reads are single statements and never block on writers.
// Versions are monotonic per (bucket,key) across deletes and processes.
// The batch calls (BeginPutBatch, CommitPutBatch, Restore) apply many rows
// with a few set-based statements and give the same result as the single
// calls in order. The schema carries a version; a newer one is refused.
// For catalog backups (backup.go) it counts committed changes in the
// transactions that make them, exports consistent read-only snapshots
// that do not block writers, and records the last backup committed,
// refusing a sequence it already has.
//
// The catalog never holds key material in the clear: wrapped keys only.
// It never touches the store: callers write and delete store objects and
// record what they did here.
package catalog
