package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// TestStagingTablesOnEveryConnection: every connection of a handle has
// the batch calls' staging tables before anything uses it, so that their
// statements, prepared once per handle, prepare on whichever connection
// is free. Each connection is held at once (so they are all distinct);
// the control is the same query on a table of the schema, and the query
// on a table nobody made, which fails.
func TestStagingTablesOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	cat, _ := newCatalog(t)
	c := cat.(*sqlCatalog)
	n := c.db.Stats().MaxOpenConnections
	if n < 2 {
		t.Fatalf("the handle opens at most %d connection(s)", n)
	}
	var conns []*sql.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range n {
		conn, err := c.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	count := func(conn *sql.Conn, table string) error {
		var rows int
		return conn.QueryRowContext(ctx, c.d.rebind("SELECT count(*) FROM "+table)).Scan(&rows)
	}
	for i, conn := range conns {
		for _, table := range []string{"begin_batch", "commit_batch", "objects"} {
			if err := count(conn, table); err != nil {
				t.Errorf("connection %d of %d: %s: %v", i+1, n, table, err)
			}
		}
		if err := count(conn, "no_such_batch"); err == nil {
			t.Errorf("connection %d: a table nobody made answers", i+1)
		}
	}
}

// TestBatchStatementsPreparedOnce: the batch calls' statements are
// prepared once per handle, like every other statement, not once per
// transaction: after one batch put the handle holds them, and twenty more
// add none.
func TestBatchStatementsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	cat, _ := newCatalog(t)
	c := cat.(*sqlCatalog)
	put := func(round int) {
		t.Helper()
		ps := []Pending{{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: fmt.Sprintf("k%d", round), Owner: "test"}}
		if err := c.BeginPutBatch(ctx, ps); err != nil {
			t.Fatal(err)
		}
		e := mkEntry("b", ps[0].Key, ps[0].Version)
		e.ObjectID, e.Pin = ps[0].ObjectID, pinOf(ps[0].ObjectID)
		if _, err := c.CommitPutBatch(ctx, []Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	prepared := func() (all, staging int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for q := range c.stmts {
			if strings.Contains(q, "begin_batch") || strings.Contains(q, "commit_batch") {
				staging++
			}
		}
		return len(c.stmts), staging
	}
	put(0)
	all, staging := prepared()
	if staging == 0 {
		t.Fatalf("after a batch put the handle holds %d statements, none of them the batch's", all)
	}
	for i := 1; i <= 20; i++ {
		put(i)
	}
	if all2, staging2 := prepared(); all2 != all || staging2 != staging {
		t.Fatalf("twenty more batch puts prepared more statements: %d (%d staging) after one, %d (%d) after 21", all, staging, all2, staging2)
	}
}
