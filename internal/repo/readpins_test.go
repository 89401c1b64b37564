package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
)

// storeHolds reports whether the store still holds object id.
func (e *env) storeHolds(id keys.ID) bool {
	e.t.Helper()
	_, err := e.r.st.Stat(context.Background(), format.StoreName(id))
	if err != nil && !isNotExist(err) {
		e.t.Fatal(err)
	}
	return err == nil
}

// readRange reads n bytes at off of rd.
func readRange(t *testing.T, rd *Reader, off, n int64) []byte {
	t.Helper()
	rc, err := rd.Range(context.Background(), off, n)
	if err != nil {
		t.Fatalf("range at %d: %v", off, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("range at %d: %v", off, err)
	}
	return b
}

// TestReadOutlivesReplacement: a read that opened a version before it was
// overwritten, deleted or sealed again (a tag change) reads all of it
// afterwards, in store requests made after the replacement, as S3 lets a
// GET finish; the old version leaves the store when the last of its
// readers closes, and the catalog's garbage list with it. Controls: the
// same replacement with no reader open removes the old version at once;
// while a reader is open, Cleanup and verify leave the version alone (and
// verify reports nothing).
func TestReadOutlivesReplacement(t *testing.T) {
	ctx := context.Background()
	for _, replace := range []struct {
		name string
		do   func(e *env, key string) error
	}{
		{"overwrite", func(e *env, key string) error {
			_, err := e.r.Put(ctx, "pins", key, bytes.NewReader(random(3<<20)), PutOptions{})
			return err
		}},
		{"overwrite in a batch", func(e *env, key string) error {
			return e.r.PutMany(ctx, "pins", []PutItem{{Key: key, Open: func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(random(1000))), nil
			}}}, nil)
		}},
		{"delete", func(e *env, key string) error {
			_, err := e.r.Delete(ctx, "pins", key)
			return err
		}},
		{"tag change", func(e *env, key string) error {
			rd, err := e.r.OpenObject(ctx, "pins", key)
			if err != nil {
				return err
			}
			defer rd.Close()
			_, err = e.r.Reseal(ctx, rd, map[string]string{"tagging": "k=v"})
			return err
		}},
	} {
		t.Run(replace.name, func(t *testing.T) {
			e := newEnv(t)
			data := random(2<<20 + 7)
			half := int64(1 << 20)
			for _, key := range []string{"read", "unread"} {
				if _, err := e.r.Put(ctx, "pins", key, bytes.NewReader(data), PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			// The control: nobody reads "unread".
			unread, err := e.r.Stat(ctx, "pins", "unread")
			if err != nil {
				t.Fatal(err)
			}
			if err := replace.do(e, "unread"); err != nil {
				t.Fatal(err)
			}
			e.r.bg.Wait() // a tag change's own reader closes after the commit
			if e.storeHolds(unread.ObjectID) {
				t.Fatal("control: with no reader, the old version is still in the store")
			}

			// Two readers of "read", both opened before the replacement.
			rd, err := e.r.OpenObject(ctx, "pins", "read")
			if err != nil {
				t.Fatal(err)
			}
			rd2, err := e.r.OpenObject(ctx, "pins", "read")
			if err != nil {
				t.Fatal(err)
			}
			first := readRange(t, rd, 0, half)
			if err := replace.do(e, "read"); err != nil {
				t.Fatal(err)
			}
			old := rd.Entry.ObjectID
			if n, err := e.r.Cleanup(ctx); err != nil || !e.storeHolds(old) {
				t.Fatalf("after Cleanup (%d removed, %v), the store holds the version being read: %v", n, err, e.storeHolds(old))
			}
			if _, err := e.r.Verify(ctx, VerifyOptions{}, func(f Finding) { t.Errorf("verify: %+v", f) }); err != nil || !e.storeHolds(old) {
				t.Fatalf("after verify (%v), the store holds the version being read: %v", err, e.storeHolds(old))
			}
			rest := readRange(t, rd, half, -1)
			if got := append(first, rest...); !bytes.Equal(got, data) {
				t.Fatalf("the read after the replacement: %d bytes, want the %d of the old version", len(got), len(data))
			}
			rd.Close()
			rd.Close() // a second Close does nothing
			if !e.storeHolds(old) {
				t.Fatal("the old version left the store while a second reader had it open")
			}
			if got := readRange(t, rd2, 0, -1); !bytes.Equal(got, data) {
				t.Fatalf("the second reader: %d bytes", len(got))
			}
			rd2.Close()
			e.r.bg.Wait() // the removal the last Close started
			if e.storeHolds(old) {
				t.Fatal("the old version is still in the store after its last reader closed")
			}
			if g, err := e.r.cat.Garbage(ctx); err != nil || len(g) != 0 {
				t.Fatalf("garbage after the last reader closed: %v %v", g, err)
			}
		})
	}
}

// TestOpenRacesReplacement: a replacement committed while a version is
// being opened — after the open has read the object, before it returns —
// does not leave an open reader whose version is then removed under it.
// OpenEntry answers ErrReplaced for that entry, OpenObject opens the new
// version and reads all of it, and the old version leaves the store.
// Control: the same open with no replacement reads the version it began
// with.
func TestOpenRacesReplacement(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var replaceNow bool
	next := random(3<<20 + 1)
	e.hooks = &Hooks{At: func(p string) {
		if p == "open:opened" && replaceNow {
			replaceNow = false
			if _, err := e.r.Put(ctx, "pins", "k", bytes.NewReader(next), PutOptions{}); err != nil {
				t.Error(err)
			}
		}
	}}
	e.reopen()
	first := random(2<<20 + 7)
	if _, err := e.r.Put(ctx, "pins", "k", bytes.NewReader(first), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	readAll := func(rd *Reader) []byte {
		t.Helper()
		defer rd.Close()
		return readRange(t, rd, 0, -1)
	}

	// The control.
	rd, err := e.r.OpenObject(ctx, "pins", "k")
	if err != nil || !bytes.Equal(readAll(rd), first) {
		t.Fatalf("open with no replacement: %v", err)
	}

	before, err := e.r.Stat(ctx, "pins", "k")
	if err != nil {
		t.Fatal(err)
	}
	replaceNow = true
	if _, err := e.r.OpenEntry(ctx, before); !errors.Is(err, ErrReplaced) {
		t.Fatalf("OpenEntry of a version replaced while it opened: %v, want ErrReplaced", err)
	}
	e.r.bg.Wait()
	if e.storeHolds(before.ObjectID) {
		t.Fatal("the replaced version is still in the store")
	}

	next, first = random(1<<20+3), next
	replaceNow = true
	rd, err = e.r.OpenObject(ctx, "pins", "k")
	if err != nil {
		t.Fatalf("OpenObject with a replacement while it opened: %v", err)
	}
	if got := readAll(rd); !bytes.Equal(got, next) {
		t.Fatalf("read %d bytes, want the %d of the version now current", len(got), len(next))
	}
	e.r.bg.Wait()
	if g, err := e.r.cat.Garbage(ctx); err != nil || len(g) != 0 {
		t.Fatalf("garbage left: %v %v", g, err)
	}
}

// TestReaderClosedAfterRepo: a reader closed after its repository leaves
// the version it kept for the next run's Cleanup (nothing runs on the
// closed store and catalog); the control, the same reader closed before
// the repository, removes it at once.
func TestReaderClosedAfterRepo(t *testing.T) {
	ctx := context.Background()
	for _, after := range []bool{false, true} {
		e := newEnv(t)
		if _, err := e.r.Put(ctx, "pins", "k", bytes.NewReader(random(1<<20)), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		rd, err := e.r.OpenObject(ctx, "pins", "k")
		if err != nil {
			t.Fatal(err)
		}
		old := rd.Entry.ObjectID
		if _, err := e.r.Put(ctx, "pins", "k", bytes.NewReader(random(1000)), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if !after {
			rd.Close()
		}
		e.reopen() // closes the repository (waiting for removals) and opens it again
		if after {
			rd.Close()
		}
		g, err := e.r.cat.Garbage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kept := len(g) == 1 && g[0] == old && e.storeHolds(old); kept != after {
			t.Fatalf("reader closed after the repository %v: version kept for Cleanup %v (garbage %x)", after, kept, g)
		}
		if after {
			if n, err := e.r.Cleanup(ctx); err != nil || n != 1 || e.storeHolds(old) {
				t.Fatalf("Cleanup: %d removed, %v; store holds it: %v", n, err, e.storeHolds(old))
			}
		}
	}
}
