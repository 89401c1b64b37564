package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
)

// failingReader yields some bytes, then an error: a file that fails in
// the middle of being read.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("read error in the middle")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// TestPutManySkipping: items whose source fails to open or to read are
// left out and reported; the rest of their batch and the other batches
// are committed, and nothing of the failed ones is left in the store.
func TestPutManySkipping(t *testing.T) {
	smallBatches(t)
	ctx := context.Background()
	e := newEnv(t)
	its, want := items(putBatch+8, 3) // item 3 cannot be opened
	bad := putBatch + 5               // this one fails in the middle of its read
	its[bad].Open = func() (io.ReadCloser, error) { return io.NopCloser(&failingReader{n: 70000}), nil }
	var skipped []string
	n := 0
	err := e.r.PutManySkipping(ctx, "bulk", its, func(catalog.Entry) { n++ }, func(it PutItem, err error) {
		skipped = append(skipped, it.Key)
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(skipped) != fmt.Sprintf("[%s %s]", its[3].Key, its[bad].Key) && fmt.Sprint(skipped) != fmt.Sprintf("[%s %s]", its[bad].Key, its[3].Key) {
		t.Fatalf("skipped %v", skipped)
	}
	if n != len(its)-2 {
		t.Fatalf("done called %d times for %d stored items", n, len(its)-2)
	}
	for i, it := range its {
		_, err := e.get("bulk", it.Key)
		if i == 3 || i == bad {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: skipped item is visible: %v", it.Key, err)
			}
			continue
		}
		e.mustGet("bulk", it.Key, want[it.Key])
	}
	e.mustVerifyClean() // no orphans of the skipped items in the store
	// PutMany (the control) fails the batch on the same item.
	if err := e.r.PutMany(ctx, "bulk2", its[:5], nil); err == nil {
		t.Fatal("PutMany did not fail on an item that cannot be opened")
	}
}

func TestLocalName(t *testing.T) {
	for _, c := range []struct {
		rel string
		ok  bool
	}{
		{"a.txt", true},
		{"dir/sub/a.txt", true},
		{"..a/b..", true},
		{`back\slash`, true}, // one name on Unix
		{"", false},
		{"..", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/../b", false},
		{"/etc/passwd", false},
		{"a//b", false},
		{"./a", false},
		{"a/.", false},
		{"a/", false},
	} {
		name, err := localName(c.rel)
		if (err == nil) != c.ok {
			t.Errorf("localName(%q) = %q, %v", c.rel, name, err)
		}
		if err != nil && !errors.Is(err, ErrUnsafeName) {
			t.Errorf("localName(%q): %v is not ErrUnsafeName", c.rel, err)
		}
	}
}

func TestSameModTime(t *testing.T) {
	base := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	whole := base.Truncate(time.Second)
	for _, c := range []struct {
		a, b time.Time
		same bool
	}{
		{base, base, true},
		{base, base.In(time.FixedZone("x", 3600)), true},
		{base, base.Add(time.Nanosecond), false},
		{base, base.Add(time.Second), false},
		{whole, base, true}, // a file system that keeps whole seconds
		{base, whole, true},
		{whole, base.Add(time.Second), false},
		{whole, whole.Add(time.Second), false},
	} {
		if got := sameModTime(c.a, c.b); got != c.same {
			t.Errorf("sameModTime(%v, %v) = %v", c.a, c.b, got)
		}
	}
}

// TestSyncDownStaysInside: planted keys that lead out of the directory
// write nothing outside it; the good keys of the same run are written.
func TestSyncDownStaysInside(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	good := []byte("good")
	for _, k := range []string{"../x", "../../x", "/x", "a/../../x", "a//x", "./x"} {
		e.put("evil", k, []byte("escaped"))
	}
	e.put("evil", "ok/good.txt", good)
	parent := t.TempDir()
	dir := filepath.Join(parent, "a", "b")
	var refused int
	sum, err := e.r.SyncDown(ctx, "evil", "", dir, SyncOptions{Report: func(ev SyncEvent) {
		if ev.Action == SyncFail && errors.Is(ev.Err, ErrUnsafeName) {
			refused++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if refused != 6 || sum.Failed != 6 || sum.Transferred != 1 {
		t.Fatalf("refused %d, summary %+v", refused, sum)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ok", "good.txt")); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("good key: %q, %v", b, err)
	}
	var found []string
	filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("files written: %v", found)
	}
}

// TestSyncDownLinkInside: a symbolic link inside the directory, pointing
// to another directory in it, is not followed: the key link/f is refused
// (it used to overwrite sub/f, which no object names, and --delete then
// removed sub/f), sub/f keeps its content, and the failure withholds the
// deletions. Control: the same tree with link a real directory gets
// link/f written.
func TestSyncDownLinkInside(t *testing.T) {
	ctx := context.Background()
	for _, asLink := range []bool{true, false} {
		e := newEnv(t)
		e.put("bkt", "link/f", []byte("remote"))
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("local only"), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if asLink {
			err = os.Symlink("sub", filepath.Join(dir, "link"))
		} else {
			err = os.Mkdir(filepath.Join(dir, "link"), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		sum, err := e.r.SyncDown(ctx, "bkt", "", dir, SyncOptions{Delete: true})
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := os.ReadFile(filepath.Join(dir, "sub", "f"))
		if asLink {
			if sum.Failed != 1 || sum.Transferred != 0 || string(sub) != "local only" {
				t.Errorf("through a link: summary %+v, sub/f %q", sum, sub)
			}
			continue
		}
		got, _ := os.ReadFile(filepath.Join(dir, "link", "f"))
		if sum.Failed != 0 || string(got) != "remote" {
			t.Errorf("control: summary %+v, link/f %q", sum, got)
		}
	}
}
