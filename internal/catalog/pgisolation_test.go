package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

// TestPostgresIsolationPinned: writers serialise on the advisory lock and
// see each other's commits even where a DBA made REPEATABLE READ the
// database's default (the catalog asks for READ COMMITTED): two writers
// queued behind a held lock both succeed, with versions in order. Under
// the database default the second failed with a serialisation error.
// Control: a transaction begun with the driver's default does run at
// REPEATABLE READ there, so the setting is in force.
func TestPostgresIsolationPinned(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := srv.NewDatabase(t, "iso_pinned")
	loc := strings.Join([]string{"postgres", db.URL, db.CAFile, db.CertFile, db.KeyFile}, "\n")
	c1 := openAt(t, loc)
	mustNot(t, "bucket", c1.CreateBucket(ctx, Bucket{Name: "b", ID: keys.ID{1}, Created: time.Now()}))
	raw, _ := rawDB(t, loc)
	if _, err := raw.ExecContext(ctx, `ALTER DATABASE iso_pinned SET default_transaction_isolation = 'repeatable read'`); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	raw.Close()
	raw, _ = rawDB(t, loc) // new connections take the new default
	var level string
	ctl, err := raw.BeginTx(ctx, nil)
	mustNot(t, "begin", err)
	mustNot(t, "show", ctl.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&level))
	ctl.Rollback()
	if level != "repeatable read" {
		t.Fatalf("control: the default isolation is %q, not repeatable read", level)
	}

	c1, c2 := openAt(t, loc), openAt(t, loc)
	hold, err := raw.BeginTx(ctx, nil)
	mustNot(t, "begin", err)
	_, err = hold.ExecContext(ctx, postgresDialect.lockSQL)
	mustNot(t, "lock", err)
	// waiting waits until n writers wait for the advisory lock.
	waiting := func(n int) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for deadline := time.Now().Add(30 * time.Second); ; <-tick.C {
			var w int
			mustNot(t, "pg_locks", raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&w))
			if w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d writers wait for the lock, not %d", w, n)
			}
		}
	}
	pending := func(b byte) []Pending {
		return []Pending{{ObjectID: keys.ID{b}, Kind: KindObject, Bucket: "b", Key: "k", Owner: "x", Started: time.Now()}}
	}
	p1, p2 := pending(10), pending(20)
	e1, e2 := make(chan error, 1), make(chan error, 1)
	go func() { e1 <- c1.BeginPutBatch(ctx, p1) }()
	waiting(1)
	go func() { e2 <- c2.BeginPutBatch(ctx, p2) }()
	waiting(2)
	mustNot(t, "release", hold.Rollback())
	if err1, err2 := <-e1, <-e2; err1 != nil || err2 != nil {
		t.Fatalf("two writers queued on the lock: %v, %v", err1, err2)
	}
	if p1[0].Version == 0 || p2[0].Version <= p1[0].Version {
		t.Fatalf("versions %d then %d: the second writer did not see the first", p1[0].Version, p2[0].Version)
	}
}
