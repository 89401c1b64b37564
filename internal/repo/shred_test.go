package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// systemPlaintexts opens every system object of the store that the root
// key versions still alive can open (key journal entries, catalog
// backups, the marker) and returns their plaintexts by store name.
func (e *env) systemPlaintexts() map[string][]byte {
	ctx := context.Background()
	out := map[string][]byte{}
	var names []string
	if err := e.r.st.List(ctx, "", func(oi store.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		e.t.Fatal(err)
	}
	for _, n := range names {
		id, ok := format.ParseStoreName(n)
		if !ok {
			continue
		}
		o, err := object.Open(ctx, e.r.st, n, object.Expect{Identity: object.Identity{Repo: e.r.id, Object: id}},
			e.r.unwrapSystem(ctx, id, e.r.rootVersions()))
		if err != nil {
			continue // an object's body, or one under a destroyed key
		}
		var b bytes.Buffer
		if _, err := o.WriteTo(ctx, &b); err != nil {
			e.t.Fatal(err)
		}
		o.Wipe()
		out[n] = b.Bytes()
	}
	return out
}

// TestShredLeavesNoNames: after shredding one key and a whole bucket,
// nothing sealed under the surviving root key (the catalog backups, the
// key journal) names a shredded key, nor does the catalog. Control: a
// live key of the same bucket is named.
func TestShredLeavesNoNames(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("vault", "alice-medical-record.pdf", []byte("secret"))
	e.put("vault", "stays.txt", []byte("stays"))
	e.put("gone", "bob-salary.xlsx", []byte("x"))
	e.backup()
	if _, err := e.r.Shred(ctx, "vault", "alice-medical-record.pdf", ShredOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Shred(ctx, "gone", "", ShredOptions{}); err != nil {
		t.Fatal(err)
	}
	e.backup()
	named := map[string]bool{}
	for _, p := range e.systemPlaintexts() {
		for _, s := range []string{"alice-medical-record.pdf", "bob-salary.xlsx", "stays.txt"} {
			named[s] = named[s] || bytes.Contains(p, []byte(s))
		}
	}
	if !named["stays.txt"] {
		t.Fatal("control: no backup names a live object")
	}
	for _, s := range []string{"alice-medical-record.pdf", "bob-salary.xlsx"} {
		if named[s] {
			t.Errorf("something sealed under the surviving root key names shredded %q", s)
		}
	}
	for _, bk := range [][2]string{{"vault", "alice-medical-record.pdf"}, {"gone", "bob-salary.xlsx"}} {
		if v, err := e.r.cat.NextVersion(ctx, bk[0], bk[1]); err != nil || v != 1 {
			t.Errorf("the catalog still knows %s/%s (next version %d, %v)", bk[0], bk[1], v, err)
		}
	}
	// A shredded name is not found again; so is one never written.
	for _, k := range []string{"alice-medical-record.pdf", "never-written"} {
		if _, err := e.r.Shred(ctx, "vault", k, ShredOptions{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("shred of %s: %v", k, err)
		}
	}
}

// TestShredInterruptedCanBeFinished: a shred that fails after it deleted
// the object (a store outage), of one key or of a whole bucket, says it
// did not finish, and running it again finishes it: every bucket key and
// root key version that could open the object is destroyed. Control: the
// same shred without the outage.
func TestShredInterruptedCanBeFinished(t *testing.T) {
	for _, whole := range []bool{false, true} {
		for _, outage := range []bool{false, true} {
			t.Run(fmt.Sprintf("whole=%v/outage=%v", whole, outage), func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t)
				e.put("vault", "secret", []byte("secret"))
				e.put("vault", "other", []byte("other"))
				e.put("kept", "x", []byte("kept"))
				deleted := false
				e.hooks = &Hooks{
					At: func(p string) { deleted = deleted || p == "rm:committed" },
					WrapStore: func(s store.Store) store.Store {
						return storetest.NewFaulty(s, func(p storetest.Point) error {
							if outage && deleted && p.Op == storetest.OpPut && p.Phase == storetest.PutBegin {
								return fmt.Errorf("outage: %w", store.ErrUnavailable)
							}
							return nil
						})
					}}
				e.reopen()
				key := "secret"
				if whole {
					key = ""
				}
				_, err := e.r.Shred(ctx, "vault", key, ShredOptions{})
				if outage {
					if err == nil || !strings.Contains(err.Error(), "run it again") {
						t.Fatalf("shred through the outage: %v", err)
					}
					e.hooks = nil
					e.reopen()
					if _, err := e.r.Shred(ctx, "vault", key, ShredOptions{}); err != nil {
						t.Fatalf("shred run again: %v", err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				bks, err := e.r.cat.AllBucketKeys(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, bk := range bks {
					if bk.Version == 1 && bk.State != catalog.KeyDestroyed {
						if b, _ := e.r.cat.GetBucket(ctx, "kept"); b.ID != bk.BucketID {
							t.Errorf("vault's bucket key v1, which wrapped the shredded object, is alive")
						}
					}
				}
				for _, v := range e.r.RootKeyVersions() {
					if v.Version == 1 && v.State.String() != "destroyed" {
						t.Errorf("root key v1, which wrapped bucket key v1, is %v", v.State)
					}
				}
				if _, err := e.get("vault", "secret"); !errors.Is(err, ErrNotFound) {
					t.Errorf("get of the shredded object: %v", err)
				}
				if got, err := e.get("kept", "x"); err != nil || string(got) != "kept" {
					t.Errorf("another bucket's object: %q, %v", got, err)
				}
				if !whole {
					if got, err := e.get("vault", "other"); err != nil || string(got) != "other" {
						t.Errorf("the bucket's other object: %q, %v", got, err)
					}
				} else if _, err := e.r.cat.GetBucket(ctx, "vault"); !errors.Is(err, catalog.ErrNotFound) {
					t.Errorf("the shredded bucket: %v", err)
				}
			})
		}
	}
}

// TestShredDeletedKey: shredding a key removed earlier (whose old body
// the provider may have kept, under keys still alive) destroys those keys,
// where the plain delete left them. Control: a name never written is not
// found and destroys nothing.
func TestShredDeletedKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("vault", "old", []byte("old"))
	e.put("vault", "other", []byte("other"))
	if _, err := e.r.Delete(ctx, "vault", "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Shred(ctx, "vault", "never", ShredOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("shred of a name never written: %v", err)
	}
	for _, v := range e.r.RootKeyVersions() {
		if v.State.String() == "destroyed" {
			t.Fatalf("a refused shred destroyed root key v%d", v.Version)
		}
	}
	rep, err := e.r.Shred(ctx, "vault", "old", ShredOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Objects != 0 || len(rep.BucketVersions) == 0 || len(rep.RootVersions) == 0 {
		t.Errorf("shred of a deleted key: %+v", rep)
	}
	if got, err := e.get("vault", "other"); err != nil || string(got) != "other" {
		t.Errorf("the bucket's other object: %q, %v", got, err)
	}
}

// TestShredStoppedAfterForgetting: a shred that stops while destroying
// the older root key versions (the names already forgotten, so it cannot
// be named again) says which versions remain and how to destroy them, and
// doing so finishes it. Control: TestShredInterruptedCanBeFinished's run
// without an outage.
func TestShredStoppedAfterForgetting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("vault", "secret", []byte("secret"))
	e.put("vault", "other", []byte("other"))
	e.backup()
	outage := false
	e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store {
		return storetest.NewFaulty(s, func(p storetest.Point) error {
			if outage && p.Op == storetest.OpPut && p.Phase == storetest.PutBegin {
				return fmt.Errorf("outage: %w", store.ErrUnavailable)
			}
			return nil
		})
	}}
	e.reopen()
	_, err := e.r.Shred(ctx, "vault", "secret", ShredOptions{BeforeRootRetire: func() error { outage = true; return nil }})
	if err == nil || !strings.Contains(err.Error(), "root key versions 1") || !strings.Contains(err.Error(), "holdfast keys retire") {
		t.Fatalf("shred stopped at the root key versions: %v", err)
	}
	outage = false
	if _, err := e.r.Shred(ctx, "vault", "secret", ShredOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("the same shred again: %v (its name is forgotten)", err)
	}
	if _, err := e.r.RewrapRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.r.RetireRootKey(ctx, 1); err != nil {
		t.Fatalf("retiring root key v1 as the error says: %v", err)
	}
	for _, v := range e.r.RootKeyVersions() {
		if v.Version == 1 && v.State.String() != "destroyed" {
			t.Errorf("root key v1 is %v", v.State)
		}
	}
	if got, err := e.get("vault", "other"); err != nil || string(got) != "other" {
		t.Errorf("the bucket's other object: %q, %v", got, err)
	}
}
