package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/repo"
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

// TestKeysRotate: after a rotation new objects use the new version and
// old ones still read, for a bucket key and for the root key; a fresh
// catalog recovered from the store reads them all. A bucket that does not
// exist cannot be rotated (exit 3), beside the one that can.
func TestKeysRotate(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	write := func(name, body string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.must("put", write("a", "object a"), "photos/a")
	if out := c.must("keys", "rotate", "--bucket", "photos"); !strings.Contains(out, "bucket photos key v2 is primary") {
		t.Fatalf("rotate --bucket: %s", out)
	}
	if code, _, errs := c.run("keys", "rotate", "--bucket", "nosuch"); code != exitNotFound || !strings.Contains(errs, "nosuch") {
		t.Fatalf("rotating a missing bucket: exit %d: %s", code, errs)
	}
	c.must("put", write("b", "object b"), "photos/b")
	if out := c.must("keys", "rotate"); !strings.Contains(out, "root key v2 is primary") {
		t.Fatalf("rotate: %s", out)
	}
	c.must("keys", "rotate", "--bucket", "photos")
	c.must("put", write("c", "object c"), "photos/c")

	var l keyList
	if err := json.Unmarshal([]byte(c.must("--json", "keys", "list")), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Root) != 2 || l.Root[0].State != "decrypt-only" || l.Root[0].Primary || !l.Root[1].Primary || l.Root[1].Version != 2 {
		t.Fatalf("root keys after rotation: %+v", l.Root)
	}
	want := []string{"v1 root1 1 obj", "v2 root1 1 obj", "v3 root2 1 obj primary"}
	var got []string
	for _, b := range l.Buckets {
		s := fmt.Sprintf("v%d root%d %d obj", b.Version, b.RootVersion, b.Objects)
		if b.Primary {
			s += " primary"
		}
		got = append(got, s)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("bucket keys: %q, want %q", got, want)
	}
	readAll := func(what string) {
		t.Helper()
		for k, body := range map[string]string{"a": "object a", "b": "object b", "c": "object c"} {
			if out := c.must("cat", "photos/"+k); out != body {
				t.Fatalf("%s: photos/%s reads %q", what, k, out)
			}
		}
	}
	readAll("after the rotations")
	c.must("verify")

	// A lost catalog rebuilt from the store: every version's key record is
	// in the store's journal.
	c.must("backup")
	if err := os.Remove(filepath.Join(c.home, repo.CatalogFile)); err != nil {
		t.Fatal(err)
	}
	c.must("recover")
	readAll("after recover")
}
