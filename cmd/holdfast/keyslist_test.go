package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysList: keys list shows each root and bucket key version with its
// state and what it protects, and the counts follow the catalog (a delete
// lowers them).
func TestKeysList(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"photos/a", "photos/b", "photos/c", "docs/x"} {
		c.must("put", f, o)
	}
	list := func() keyList {
		t.Helper()
		var l keyList
		if err := json.Unmarshal([]byte(c.must("--json", "keys", "list")), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := list()
	if len(l.Root) != 1 || l.Root[0].Version != 1 || !l.Root[0].Primary || l.Root[0].State != "active" ||
		l.Root[0].BucketKeys != 2 || l.Root[0].Objects != 4 || l.Root[0].Created.IsZero() {
		t.Fatalf("root keys: %+v", l.Root)
	}
	got := map[string]int64{}
	for _, b := range l.Buckets {
		if b.Version != 1 || !b.Primary || b.State != "active" || b.RootVersion != 1 || b.Created.IsZero() {
			t.Errorf("bucket key %+v", b)
		}
		got[b.Bucket] = b.Objects
	}
	if len(got) != 2 || got["photos"] != 3 || got["docs"] != 1 {
		t.Fatalf("objects per bucket key: %v, want photos 3, docs 1", got)
	}

	c.must("rm", "photos/b")
	if l := list(); l.Root[0].Objects != 3 {
		t.Errorf("after a delete the root key protects %d objects, want 3", l.Root[0].Objects)
	}
	out := c.must("keys", "list")
	for _, want := range []string{"root key v1  active (primary)", "wraps 2 bucket key version(s), 3 object(s)",
		"bucket photos key v1  active (primary)", "under root v1  protects 2 object(s)", "bucket docs key v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list lacks %q:\n%s", want, out)
		}
	}
}
