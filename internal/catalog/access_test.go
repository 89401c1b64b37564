package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func accessStore(t *testing.T, c Catalog) AccessStore {
	t.Helper()
	s, ok := c.(AccessStore)
	if !ok {
		t.Fatalf("%T is not an AccessStore", c)
	}
	return s
}

func TestAccessKeys(t *testing.T) {
	ctx := context.Background()
	c, _ := newCatalog(t)
	s := accessStore(t, c)
	changes, err := c.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.AccessVersion(ctx); err != nil || v != 0 {
		t.Fatalf("fresh version %d, %v", v, err)
	}
	if _, err := s.AccessTableKey(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fresh table key: %v", err)
	}
	// Neighbouring meta rows are not access keys.
	for _, k := range []string{"access-key", "access-key0", "access-keyz", "access-kex/x", "repo-id"} {
		if err := c.SetMeta(ctx, k, []byte("not a key")); err != nil {
			t.Fatal(err)
		}
	}
	v1, err := s.AddAccessKey(ctx, "A1", []byte("rec1"))
	if err != nil || v1 != 1 {
		t.Fatalf("add: %d, %v", v1, err)
	}
	v2, err := s.AddAccessKey(ctx, "B2", []byte("rec2"))
	if err != nil || v2 != 2 {
		t.Fatalf("add: %d, %v", v2, err)
	}
	if _, err := s.AddAccessKey(ctx, "A1", []byte("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	v, recs, err := s.AccessKeys(ctx)
	if err != nil || v != 2 || len(recs) != 2 || string(recs["A1"]) != "rec1" || string(recs["B2"]) != "rec2" {
		t.Fatalf("keys: %d %q %v", v, recs, err)
	}
	if _, err := s.RemoveAccessKey(ctx, "C3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove missing: %v", err)
	}
	if v, err := s.AccessVersion(ctx); err != nil || v != 2 {
		t.Fatalf("a failed add or remove changed the version: %d, %v", v, err)
	}
	if v, err := s.RemoveAccessKey(ctx, "A1"); err != nil || v != 3 {
		t.Fatalf("remove: %d, %v", v, err)
	}
	if _, recs, _ := s.AccessKeys(ctx); len(recs) != 1 || recs["B2"] == nil {
		t.Fatalf("after remove: %q", recs)
	}
	// Access changes are not catalog changes (they trigger no backup).
	if n, err := c.Changes(ctx); err != nil || n != changes {
		t.Fatalf("changes %d, was %d (%v)", n, changes, err)
	}
}

func TestAccessTableKey(t *testing.T) {
	ctx := context.Background()
	c, path := newCatalog(t)
	s := accessStore(t, c)
	// Many handles race to make the table key: one record wins and every
	// racer is told which.
	const n = 6
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		other := accessStore(t, openAt(t, path))
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := other.InitAccessTableKey(ctx, []byte(fmt.Sprintf("key-%d", i)))
			if err != nil {
				t.Error(err)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	winner, err := s.AccessTableKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if string(b) != string(winner) {
			t.Fatalf("racer %d was told %q, the record is %q", i, b, winner)
		}
	}
	if v, _ := s.AccessVersion(ctx); v != 1 {
		t.Fatalf("version %d after one key was made", v)
	}
	// Replace is a compare-and-swap.
	if err := s.ReplaceAccessTableKey(ctx, []byte("not the record"), []byte("new")); !errors.Is(err, ErrStaleVersion) {
		t.Fatalf("replace of a stale record: %v", err)
	}
	if err := s.ReplaceAccessTableKey(ctx, winner, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.AccessTableKey(ctx); string(b) != "new" {
		t.Fatalf("after replace: %q", b)
	}
	if b, _ := s.InitAccessTableKey(ctx, []byte("late")); string(b) != "new" {
		t.Fatalf("init over an existing key: %q", b)
	}
	if v, _ := s.AccessVersion(ctx); v != 2 {
		t.Fatalf("version %d after a replace", v)
	}
}
