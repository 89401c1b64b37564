package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// storedHash is the SHA-256 of every stored byte of bucket/key's body.
func (e *env) storedHash(bucket, key string) [32]byte {
	e.t.Helper()
	ctx := context.Background()
	name := e.nameOf(bucket, key)
	rc, err := e.r.Store().ReadRange(ctx, name, 0, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		e.t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// TestRewrapRetire: after rotating the root and the bucket key, rewrap
// moves every old object under the new versions without touching a body
// (the bodies' hashes are unchanged and the store receives at most 1 KiB
// per object), the old versions are then retired, and every object
// reads — on the local store and on versitygw. Retiring before the rewrap
// is refused (the control: the same retire after it succeeds).
func TestRewrapRetire(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		ctx := context.Background()
		const n = 40
		bodies := map[string][]byte{}
		for i := range n {
			key := fmt.Sprintf("obj/%03d", i)
			bodies[key] = body(uint64(i), 100+i*997)
			e.put("kbk", key, bodies[key])
		}
		hashes := map[string][32]byte{}
		for k := range bodies {
			hashes[k] = e.storedHash("kbk", k)
		}
		if v, err := e.r.RotateRootKey(); err != nil || v != 2 {
			t.Fatalf("root rotation: v%d %v", v, err)
		}
		if v, err := e.r.RotateBucketKey(ctx, "kbk"); err != nil || v != 2 {
			t.Fatalf("bucket rotation: v%d %v", v, err)
		}
		e.put("kbk", "new", []byte("written under v2"))
		if ent, _ := e.r.Stat(ctx, "kbk", "new"); ent.KeyVersion != 2 {
			t.Errorf("new object under bucket key v%d, want 2", ent.KeyVersion)
		}
		bodies["new"] = []byte("written under v2")

		// Nothing is retired while it protects something.
		if _, err := e.r.RetireBucketKey(ctx, "kbk", 1); !errors.Is(err, ErrKeyInUse) {
			t.Fatalf("retiring bucket key v1 before the rewrap: %v", err)
		}
		if err := e.r.RetireRootKey(ctx, 1); !errors.Is(err, ErrKeyInUse) {
			t.Fatalf("retiring root key v1 before the rewrap: %v", err)
		}
		if _, err := e.r.RetireBucketKey(ctx, "kbk", 2); !errors.Is(err, ErrKeyInUse) {
			t.Fatalf("retiring the primary bucket key: %v", err)
		}

		// The rewrap, counted at the store boundary.
		var cnt *storetest.Counting
		e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store { cnt = storetest.NewCounting(s); return cnt }}
		e.reopen()
		cnt.Reset()
		rewrapBatch = 16 // several batch entries
		t.Cleanup(func() { rewrapBatch = 1024 })
		rep, err := e.r.RewrapBucket(ctx, "kbk", nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Objects != n || rep.Skipped != 0 || rep.Entries != 3 {
			t.Errorf("rewrap: %+v, want %d objects in 3 entries", rep, n)
		}
		written := cnt.BytesWritten.Load()
		t.Logf("bucket rewrap of %d objects: %d bytes in %d store writes (%d per object)", n, written, cnt.Puts.Load(), written/n)
		if written > n*1024 || written == 0 {
			t.Errorf("bucket rewrap wrote %d bytes for %d objects, more than 1 KiB each", written, n)
		}
		cnt.Reset()
		rr, err := e.r.RewrapRoot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Bucket key v1 (v2 was made under root 2) and the marker; the
		// three batches were sealed under root 2 already.
		if rr.BucketKeys != 1 || rr.SystemObjects != 1 {
			t.Errorf("root rewrap: %+v, want 1 bucket key and the marker", rr)
		}
		t.Logf("root rewrap: %+v, %d bytes written", rr, cnt.BytesWritten.Load())
		for k := range bodies {
			ent, _ := e.r.Stat(ctx, "kbk", k)
			if ent.KeyVersion != 2 {
				t.Errorf("%s under bucket key v%d after the rewrap", k, ent.KeyVersion)
			}
		}

		// Now they retire.
		bksBefore, _ := e.r.cat.AllBucketKeys(ctx)
		if _, err := e.r.RetireBucketKey(ctx, "kbk", 1); err != nil {
			t.Fatalf("retiring bucket key v1 after the rewrap: %v", err)
		}
		if err := e.r.RetireRootKey(ctx, 1); err != nil {
			t.Fatalf("retiring root key v1 after the rewrap: %v", err)
		}
		for _, v := range e.r.RootKeyVersions() {
			if v.Version == 1 && v.State != keyring.StateDestroyed {
				t.Errorf("root key v1 is %v after retire", v.State)
			}
		}
		bks, _ := e.r.cat.AllBucketKeys(ctx)
		for i, bk := range bks {
			if bk.Version != 1 {
				continue
			}
			if bk.State != catalog.KeyDestroyed || !bytes.Equal(bk.Wrapped.Data, make([]byte, len(bk.Wrapped.Data))) {
				t.Errorf("bucket key v1 after retire: state %d, material kept", bk.State)
			}
			if _, err := e.r.Store().Stat(ctx, format.StoreName(bksBefore[i].JournalID)); !errors.Is(err, store.ErrNotExist) {
				t.Errorf("bucket key v1's journal entry is still in the store: %v", err)
			}
		}

		// Every object reads, in this process and a new one; no body
		// changed; verify is clean.
		for _, reopen := range []bool{false, true} {
			if reopen {
				e.hooks = nil
				e.reopen()
			}
			for k, want := range bodies {
				e.mustGet("kbk", k, want)
			}
		}
		for k, h := range hashes {
			if e.storedHash("kbk", k) != h {
				t.Errorf("%s: the stored body changed", k)
			}
		}
		e.mustVerifyClean()
	})
}

// TestRetiredVersionRefusesWrites: a writer that still holds a retired
// bucket key version (a serve process beside keys retire) takes the
// primary version instead, and its put succeeds.
func TestRetiredVersionRefusesWrites(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("bkt", "one", []byte("one"))
	w, err := e.r.writer(ctx, "bkt") // holds v1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RotateBucketKey(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RewrapBucket(ctx, "bkt", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RetireBucketKey(ctx, "bkt", 1); err != nil {
		t.Fatal(err)
	}
	ps := []catalog.Pending{{ObjectID: newIDMust(t), Kind: catalog.KindObject, Bucket: "bkt", Key: "two", Owner: ownerToken()}}
	if err := e.r.begin(ctx, &w, ps); err != nil {
		t.Fatalf("begin under a retired version: %v", err)
	}
	if w.bk.Version != 2 || ps[0].KeyVersion != 2 {
		t.Errorf("the writer moved to v%d (pending v%d), want 2", w.bk.Version, ps[0].KeyVersion)
	}
	if _, err := e.r.bucketKey(ctx, catalog.BucketKey{BucketID: w.bucket.ID, Version: 1, State: catalog.KeyDestroyed}); !errors.Is(err, ErrKeyRetired) {
		t.Errorf("the retired key: %v", err)
	}
	e.mustGet("bkt", "one", []byte("one"))
}

func newIDMust(t *testing.T) [16]byte {
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRetiredRootBesideARunningProcess: a process that still takes a root
// key version for primary after another process rotated, rewrapped and
// retired it (keys commands beside a running serve) makes a new bucket
// and a catalog backup under the new version, and nothing it wrote is
// lost: a new process reads it all. The control is the same process's
// write before the retirement.
func TestRetiredRootBesideARunningProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t) // the long-running process
	e.put("old", "before", []byte("written before"))

	other, err := Open(ctx, OpenOptions{Home: e.home, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.RotateRootKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.RewrapRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.RetireRootKey(ctx, 1); err != nil {
		t.Fatal(err)
	}
	other.Close()

	if e.r.src.Primary() != 1 {
		t.Fatalf("the running process already knows root v%d", e.r.src.Primary())
	}
	e.put("new-bucket", "after", []byte("written after")) // a new bucket key
	if _, err := e.r.Backup(ctx); err != nil {
		t.Fatalf("backup beside the retirement: %v", err)
	}
	bks, _ := e.r.cat.AllBucketKeys(ctx)
	for _, bk := range bks {
		if bk.Wrapped.KEKVersion != 2 {
			t.Errorf("bucket key %x v%d under root v%d", bk.BucketID, bk.Version, bk.Wrapped.KEKVersion)
		}
	}
	e.reopen()
	e.mustGet("old", "before", []byte("written before"))
	e.mustGet("new-bucket", "after", []byte("written after"))
	e.mustVerifyClean()
}

// TestRewrapAfterLostMarkerReseal: keys rewrap seals the repository
// marker again under the primary root key, in place under its fixed name.
// When that write lands in the store but its catalog record does not
// follow (the store's answer is lost, or the process dies in between),
// running keys rewrap again seals it anew, so that rewrap, retire and
// shred go on and verify is clean. The control: the same failure before
// the write landed.
func TestRewrapAfterLostMarkerReseal(t *testing.T) {
	for _, landed := range []bool{false, true} {
		t.Run(fmt.Sprintf("landed=%v", landed), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			e.put("bkt", "one", []byte("one"))
			e.put("bkt", "two", []byte("two"))
			marker := format.MarkerName(e.r.id)
			phase := storetest.PutBegin
			if landed {
				phase = storetest.PutEnd
			}
			failed := false
			e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store {
				return storetest.NewFaulty(s, func(p storetest.Point) error {
					if p.Op == storetest.OpPut && p.Name == marker && p.Phase == phase && !failed {
						failed = true
						return fmt.Errorf("lost answer: %w", store.ErrUnavailable)
					}
					return nil
				})
			}}
			e.reopen()
			if _, err := e.r.RotateRootKey(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.r.RewrapRoot(ctx); !errors.Is(err, store.ErrUnavailable) || !failed {
				t.Fatalf("root rewrap with the marker's write failing: %v", err)
			}
			e.hooks = nil
			e.reopen()
			rep, err := e.r.RewrapRoot(ctx)
			if err != nil {
				t.Fatalf("root rewrap run again: %v", err)
			}
			if rep.SystemObjects != 1 {
				t.Errorf("root rewrap run again: %+v, want the marker sealed again", rep)
			}
			if err := e.r.RetireRootKey(ctx, 1); err != nil {
				t.Fatalf("retiring root key v1: %v", err)
			}
			e.mustVerifyClean()
			if _, err := e.r.Shred(ctx, "bkt", "one", ShredOptions{}); err != nil {
				t.Fatalf("shred: %v", err)
			}
			e.mustGet("bkt", "two", []byte("two"))
			e.mustVerifyClean()
		})
	}
}
