package catalog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/keys"
)

// TestEntriesAfter walks every current entry in object id order in small
// pages, across buckets, and sees each exactly once, in the order of their
// hex store names; deleted entries are not seen.
func TestEntriesAfter(t *testing.T) {
	ctx := context.Background()
	c, path := newCatalog(t)
	mustCreateBucket(t, c, "a")
	want := map[keys.ID]bool{}
	var gone Entry
	for i := range 300 {
		e := putNext(t, c, []string{"a", "b"}[i%2], fmt.Sprintf("k%03d", i))
		want[e.ObjectID] = true
		if i == 17 {
			gone = e
		}
	}
	if _, err := c.Delete(ctx, gone.Bucket, gone.Key); err != nil {
		t.Fatal(err)
	}
	delete(want, gone.ObjectID)

	var got []keys.ID
	var after []byte
	for {
		page, err := c.EntriesAfter(ctx, after, 7)
		mustNot(t, "EntriesAfter", err)
		if len(page) > 7 {
			t.Fatalf("page of %d entries, limit 7", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.ObjectID)
		}
		last := page[len(page)-1].ObjectID
		after = last[:]
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries walked, want %d", len(got), len(want))
	}
	names := make([]string, len(got))
	for i, id := range got {
		if !want[id] {
			t.Fatalf("entry %x walked but not current", id)
		}
		names[i] = fmt.Sprintf("%x", id[:])
	}
	if !sort.StringsAreSorted(names) {
		t.Fatal("entries not in store name order")
	}
	for i := 1; i < len(got); i++ {
		if bytes.Equal(got[i-1][:], got[i][:]) {
			t.Fatalf("entry %x walked twice", got[i])
		}
	}
	if _, err := c.EntriesAfter(ctx, nil, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}

	if onPostgres(t) {
		return // the query plan below is SQLite's
	}
	// The walk reads through the object_id index, with no sort of the whole
	// table; the control (ordering by a column with no index) sorts.
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	mustNot(t, "open", err)
	defer db.Close()
	plan := func(order string) string {
		rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT `+entryCols+` FROM objects WHERE object_id > ? ORDER BY `+order+` LIMIT 5`, []byte{})
		mustNot(t, "explain", err)
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			mustNot(t, "scan", rows.Scan(&id, &parent, &notused, &detail))
			b.WriteString(detail + "\n")
		}
		return b.String()
	}
	if p := plan("object_id"); strings.Contains(p, "TEMP B-TREE") || !strings.Contains(p, "INDEX") {
		t.Fatalf("EntriesAfter query plan does not walk an index:\n%s", p)
	}
	if p := plan("size"); !strings.Contains(p, "TEMP B-TREE") {
		t.Fatalf("control: ordering by size should sort:\n%s", p)
	}
}
