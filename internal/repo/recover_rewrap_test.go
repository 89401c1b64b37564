package repo

// Recovery after a key version's lifecycle ran to its end: objects put
// under bucket key v1, the root and the bucket key rotated, the data keys
// rewrapped under bucket key v2, v1 and root key v1 retired. The header of
// every old object names a key that no longer exists; the key journal's
// rewrap batches (and the catalog backup written since) are the way in.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// rewrapped is the state the tests recover from.
type rewrapped struct {
	*mpEnv
	bodies  map[string][]byte // "bucket/key" → body
	old     map[string]string // kbk's keys put under v1 → store name
	keyring []byte
	all     map[string][]byte  // the store's objects after the retires
	batches []catalog.KeyBatch // the original catalog's rewrap batches
	mid     string             // the backup taken after the rotation, before the rewrap
	last    string             // the backup RetireRootKey wrote
	extra   map[bool][]byte    // a v3 rewrap record for obj/000: genuine (true) or forged
	extraAt map[bool]string    // their store names
	x       catalog.Entry      // obj/000's entry after the rewrap
}

// buildRewrapped runs the lifecycle on e and copies the store aside.
func buildRewrapped(t *testing.T, e *mpEnv) *rewrapped {
	ctx := context.Background()
	w := &rewrapped{mpEnv: e, bodies: map[string][]byte{}, old: map[string]string{}}
	put := func(bucket, key string, b []byte) {
		e.put(bucket, key, b)
		w.bodies[bucket+"/"+key] = b
	}
	const n = 20
	for i := range n {
		put("kbk", fmt.Sprintf("obj/%03d", i), body(uint64(i), 100+i*997))
	}
	// A bucket never rotated: its key is only rewrapped under the new root.
	put("other", "plain", []byte("under bucket key v1, rewrapped under root key v2"))
	for k := range w.bodies {
		if b, key, _ := strings.Cut(k, "/"); b == "kbk" {
			w.old[key] = e.nameOf(b, key)
		}
	}
	if _, err := e.r.RotateRootKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RotateBucketKey(ctx, "kbk"); err != nil {
		t.Fatal(err)
	}
	put("kbk", "new", []byte("written under bucket key v2"))
	w.mid = e.backup().Object

	rewrapBatch = 8 // several batch entries
	t.Cleanup(func() { rewrapBatch = 1024 })
	if rep, err := e.r.RewrapBucket(ctx, "kbk", nil); err != nil || rep.Objects != n || rep.Entries != 3 {
		t.Fatalf("bucket rewrap: %+v %v", rep, err)
	}
	if _, err := e.r.RewrapRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RetireBucketKey(ctx, "kbk", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.r.RetireRootKey(ctx, 1); err != nil {
		t.Fatal(err)
	}

	var err error
	if w.batches, err = e.r.cat.KeyBatches(ctx); err != nil || len(w.batches) != 3 {
		t.Fatalf("key batches %+v %v", w.batches, err)
	}
	sos, err := e.r.cat.SystemObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, so := range sos {
		if name := format.StoreName(so.ObjectID); so.Kind == catalog.KindBackup && name != w.mid {
			w.last = name
		}
	}
	if w.last == "" {
		t.Fatal("no backup written by the root key retire")
	}
	if w.keyring, err = os.ReadFile(filepath.Join(e.home, KeyringFile)); err != nil {
		t.Fatal(err)
	}
	w.all = w.storeObjects()
	w.writeExtra()
	return w
}

// writeExtra rotates kbk to bucket key v3 (its journal entry joins the
// store's copy) and writes two one-record batches under v3 for obj/000:
// one wrapping its data key, one wrapping another key. They are kept
// aside, not in the copy.
func (w *rewrapped) writeExtra() {
	t, ctx, r := w.t, context.Background(), w.r
	if v, err := r.RotateBucketKey(ctx, "kbk"); err != nil || v != 3 {
		t.Fatalf("rotation to v3: v%d %v", v, err)
	}
	b, err := r.cat.GetBucket(ctx, "kbk")
	if err != nil {
		t.Fatal(err)
	}
	bks, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	kek := map[uint32]secret.Key{}
	for _, bk := range bks {
		if bk.State != catalog.KeyDestroyed {
			if kek[bk.Version], err = r.bucketKey(ctx, bk); err != nil {
				t.Fatal(err)
			}
		}
	}
	if w.x, err = r.Stat(ctx, "kbk", "obj/000"); err != nil || w.x.KeyVersion != 2 {
		t.Fatalf("obj/000 after the rewrap: %+v %v", w.x, err)
	}
	dek, err := keys.UnwrapSoftware(kek[2], r.dataAD(b.ID, 2, w.x.ObjectID), w.x.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Wipe()
	other, err := secret.FromBytes(random(secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Wipe()
	w.extra, w.extraAt = map[bool][]byte{}, map[bool]string{}
	for genuine, k := range map[bool]secret.Key{true: dek, false: other} {
		wr, err := keys.WrapSoftware(kek[3], r.dataAD(b.ID, 3, w.x.ObjectID), k, randReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		kc, _ := keys.KeyCheck(k)
		rec := format.KeyRecord{Type: format.RecordDataKey, Bucket: b.ID, BucketName: b.Name, KeyVersion: 3, Object: w.x.ObjectID,
			Wrapped: keys.Wrapped{Source: r.src.Kind(), Alg: keys.AlgHKDFGCMCommit, KEKVersion: 3, Data: wr}, Created: uint64(time.Now().UnixNano())}
		copy(rec.KeyCheck[:], kc)
		plain, err := format.MarshalKeyBatch([]format.KeyRecord{rec})
		if err != nil {
			t.Fatal(err)
		}
		id, err := r.writeSystem(ctx, format.KindJournal, nil, plain, func(so catalog.SystemObject) error {
			_, err := r.cat.CommitRewrapBatch(ctx, so, b.ID, 3, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		w.extraAt[genuine] = format.StoreName(id)
		w.extra[genuine] = w.read(w.extraAt[genuine])
	}
	// The copy gains v3's journal entry, not the two batches.
	objs := w.storeObjects()
	for name, data := range objs {
		if _, ok := w.all[name]; !ok && name != w.extraAt[true] && name != w.extraAt[false] {
			w.all[name] = data
		}
	}
}

func (w *rewrapped) read(name string) []byte {
	w.t.Helper()
	rc, err := w.r.Store().ReadRange(context.Background(), name, 0, -1)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// storeObjects reads every object of the store.
func (w *rewrapped) storeObjects() map[string][]byte {
	w.t.Helper()
	var names []string
	if err := w.r.Store().List(context.Background(), "", func(oi store.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		out[n] = w.read(n)
	}
	return out
}

// setStore makes the store hold exactly objs.
func (w *rewrapped) setStore(objs map[string][]byte) {
	w.t.Helper()
	ctx, st := context.Background(), w.r.Store()
	have := w.storeObjects()
	for name, data := range have {
		if want, ok := objs[name]; !ok || !bytes.Equal(want, data) {
			if err := st.Delete(ctx, name); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	for name, data := range objs {
		if old, ok := have[name]; ok && bytes.Equal(old, data) {
			continue
		}
		if err := st.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
			w.t.Fatal(err)
		}
	}
}

// without is the copy less the objects named.
func (w *rewrapped) without(names ...string) map[string][]byte {
	out := maps.Clone(w.all)
	for _, n := range names {
		if _, ok := out[n]; !ok {
			w.t.Fatalf("%s is not in the store's copy", n)
		}
		delete(out, n)
	}
	return out
}

func (w *rewrapped) batchNames() []string {
	var out []string
	for _, b := range w.batches {
		out = append(out, format.StoreName(b.JournalID))
	}
	return out
}

// recover makes the store hold objs and recovers it into a new home that
// holds only the keyring. The caller closes the result.
func (w *rewrapped) recover(objs map[string][]byte, accept bool) (*env, *RecoverReport, error) {
	t := w.t
	t.Helper()
	w.setStore(objs)
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, KeyringFile), w.keyring, 0o600); err != nil {
		t.Fatal(err)
	}
	o := RecoverOptions{Home: home, Passphrase: pass, AcceptUnverifiedFreshness: accept}
	if w.kind == "s3" {
		cfg, err := loadConfig(w.home)
		if err != nil {
			t.Fatal(err)
		}
		o.S3 = cfg.Store.S3
	} else {
		o.StorePath = w.store
	}
	r, rep, err := Recover(context.Background(), o)
	if err != nil {
		return nil, nil, err
	}
	return &env{t: t, home: home, store: w.store, r: r}, rep, nil
}

// mustRecover is recover, which must succeed.
func (w *rewrapped) mustRecover(objs map[string][]byte, accept bool) (*env, *RecoverReport) {
	w.t.Helper()
	e, rep, err := w.recover(objs, accept)
	if err != nil {
		w.t.Fatal(err)
	}
	return e, rep
}

// readsAll checks that every object reads byte-exact from e, and that
// kbk's are under bucket key version kv (obj/000: x).
func (w *rewrapped) readsAll(e *env, kv, x uint32) {
	w.t.Helper()
	for k, want := range w.bodies {
		b, key, _ := strings.Cut(k, "/")
		e.mustGet(b, key, want)
		ent, err := e.r.Stat(context.Background(), b, key)
		if err != nil {
			w.t.Fatal(err)
		}
		want := kv
		switch {
		case b != "kbk":
			want = 1
		case key == "obj/000":
			want = x
		}
		if ent.KeyVersion != want {
			w.t.Errorf("%s under bucket key v%d, want v%d", k, ent.KeyVersion, want)
		}
	}
}

// sameBatches checks that e's catalog records the original's rewrap
// batches.
func (w *rewrapped) sameBatches(e *env) {
	w.t.Helper()
	got, err := e.r.cat.KeyBatches(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	order := func(bs []catalog.KeyBatch) {
		sort.Slice(bs, func(i, j int) bool { return bytes.Compare(bs[i].JournalID[:], bs[j].JournalID[:]) < 0 })
	}
	want := slices.Clone(w.batches)
	order(got)
	order(want)
	if !slices.Equal(got, want) {
		w.t.Errorf("recovered key batches %+v, want %+v", got, want)
	}
}

// TestRecoverRewrapped: after the lifecycle, recovery from the store with
// its catalog backup, and from the store with no backup at all (the
// rewrap batches the only way to the old objects' keys), reads every
// object byte-exact and records the batches; verify is clean. Control:
// the same backup-less store without the batches recovers, but the
// objects whose header names the retired bucket key are unknown.
func TestRecoverRewrapped(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		w := buildRewrapped(t, e)

		// (a) The home's catalog lost; the store as it is.
		r, rep := w.mustRecover(w.all, false)
		if rep.Freshness != FreshnessVerified || rep.Backup == nil || rep.Backup.Object != w.last || len(rep.Unknown) != 0 ||
			rep.Objects != len(w.bodies) {
			t.Fatalf("recovery with the backup: %+v", rep)
		}
		w.readsAll(r, 2, 2)
		w.sameBatches(r)
		r.mustVerifyClean()
		r.r.Close()

		// (b) No catalog backup in the store: the batches alone.
		noBackups := w.without(w.mid, w.last)
		if _, _, err := w.recover(noBackups, false); !errors.Is(err, ErrUnverifiedFreshness) {
			t.Fatalf("recovery without backups, not accepted: %v", err)
		}
		r, rep = w.mustRecover(noBackups, true)
		if rep.Freshness != FreshnessUnverified || rep.Backup != nil || len(rep.Unknown) != 0 || rep.Objects != len(w.bodies) {
			t.Fatalf("recovery by the scan alone: %+v", rep)
		}
		w.readsAll(r, 2, 2)
		w.sameBatches(r)
		r.mustVerifyClean()
		r.r.Close()

		// Control: the same, without the batches.
		r, rep = w.mustRecover(w.without(append([]string{w.mid, w.last}, w.batchNames()...)...), true)
		unknown := slices.Sorted(maps.Values(w.old))
		slices.Sort(rep.Unknown)
		if !slices.Equal(rep.Unknown, unknown) || rep.Objects != len(w.bodies)-len(w.old) {
			t.Fatalf("recovery without the batches: %d objects, unknown %v, want %v", rep.Objects, rep.Unknown, unknown)
		}
		for key := range w.old {
			if _, err := r.r.Stat(context.Background(), "kbk", key); !errors.Is(err, ErrNotFound) {
				t.Errorf("kbk/%s recovered without its batch: %v", key, err)
			}
		}
		r.mustGet("kbk", "new", w.bodies["kbk/new"])
		r.mustGet("other", "plain", w.bodies["other/plain"])
		r.r.Close()
	})
}

// TestRecoverRewrappedFromOldBackup: the store rolled back to before the
// newest backup (accepted), so recovery starts from one taken before the
// rewrap, which lists kbk's objects under the retired bucket key v1 and
// the other bucket's key under the retired root key: the batches move the
// objects to v2, checked against the backup's commitments without reading
// a body, and the root rewrap's journal entry stands in for the bucket key
// record. Control: without the batches the objects are listed but do not
// read.
func TestRecoverRewrappedFromOldBackup(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		w := buildRewrapped(t, e)
		rolled := w.without(w.last)
		r, rep := w.mustRecover(rolled, true)
		if rep.Freshness != FreshnessUnverified || rep.Backup == nil || rep.Backup.Object != w.mid || rep.Objects != len(w.bodies) {
			t.Fatalf("recovery from the older backup: %+v", rep)
		}
		w.readsAll(r, 2, 2)
		w.sameBatches(r)
		r.r.Close()

		// Control.
		r, rep = w.mustRecover(w.without(append([]string{w.last}, w.batchNames()...)...), true)
		if rep.Backup == nil || rep.Backup.Object != w.mid || rep.Objects != len(w.bodies) {
			t.Fatalf("recovery from the older backup without the batches: %+v", rep)
		}
		for key := range w.old {
			ent, err := r.r.Stat(context.Background(), "kbk", key)
			if err != nil || ent.KeyVersion != 1 {
				t.Errorf("kbk/%s: %+v %v, want listed under v1", key, ent, err)
			}
			if _, err := r.get("kbk", key); err == nil {
				t.Errorf("kbk/%s reads without its batch", key)
			}
		}
		r.mustGet("kbk", "new", w.bodies["kbk/new"])
		r.mustGet("other", "plain", w.bodies["other/plain"])
		r.r.Close()
	})
}

// TestRecoverForgedRewrap: a rewrap record under a newer version (v3) that
// wraps another key than the object's does not take its place: recovery
// falls back to the v2 record, by the scan (which opens the object) and
// from the backup (which checks the commitment). Control: a genuine v3
// record does take its place.
func TestRecoverForgedRewrap(t *testing.T) {
	e := &mpEnv{env: newEnv(t), kind: "local"}
	w := buildRewrapped(t, e)
	for _, genuine := range []bool{true, false} {
		want := uint32(2)
		if genuine {
			want = 3
		}
		for _, withBackup := range []bool{true, false} {
			objs := w.all
			if !withBackup {
				objs = w.without(w.mid, w.last)
			}
			objs = maps.Clone(objs)
			objs[w.extraAt[genuine]] = w.extra[genuine]
			r, rep := w.mustRecover(objs, !withBackup)
			if len(rep.Unknown) != 0 || rep.Objects != len(w.bodies) {
				t.Fatalf("genuine %v, backup %v: %+v", genuine, withBackup, rep)
			}
			w.readsAll(r, 2, want)
			r.r.Close()
		}
	}
}
