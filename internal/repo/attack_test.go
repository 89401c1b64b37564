package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
)

// The provider's attacks on stored objects (ATTACKS.md A5-A7, A9-A12): the
// test edits the local store directly, then reads through the repository
// and verify. Each case first proves the same read succeeds untouched.

const segSize = 2 * format.ChunkSize

type attackEnv struct {
	*env
	a, b       []byte
	nameA      string
	nameB      string
	oldA       []byte // stored bytes of a's previous version
	segLenA    []int  // ciphertext length of each of a's segments
	storedLenA int64
}

func newAttackEnv(t *testing.T) *attackEnv {
	e := &attackEnv{env: newEnv(t)}
	ctx := context.Background()
	put := func(key string, data []byte) {
		if _, err := e.r.Put(ctx, "victims", key, bytes.NewReader(data), PutOptions{Seal: object.SealOptions{SegmentSize: segSize}}); err != nil {
			t.Fatal(err)
		}
	}
	old := random(3 * segSize)
	put("a", old)
	e.oldA, _ = os.ReadFile(e.storePath(e.nameOf("victims", "a")))
	e.a = random(3 * segSize) // three equal segments
	put("a", e.a)
	e.b = random(3 * segSize)
	put("b", e.b)
	e.nameA, e.nameB = e.nameOf("victims", "a"), e.nameOf("victims", "b")
	for i := 0; i < 3; i++ {
		e.segLenA = append(e.segLenA, int(format.SegmentCTLen(segSize)))
	}
	ent, _ := e.r.Stat(ctx, "victims", "a")
	e.storedLenA = ent.StoredLen
	// Positive control for every case: both read, verify is clean.
	e.mustGet("victims", "a", e.a)
	e.mustGet("victims", "b", e.b)
	e.mustVerifyClean()
	return e
}

func (e *attackEnv) edit(name string, fn func([]byte) []byte) {
	e.t.Helper()
	p := e.storePath(name)
	b, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, fn(b), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func flipAt(off int) func([]byte) []byte {
	return func(b []byte) []byte {
		if off < 0 {
			off += len(b)
		}
		b[off] ^= 0x40
		return b
	}
}

func TestAttacks(t *testing.T) {
	seg := int(format.SegmentCTLen(segSize))
	H := format.HeaderLen
	cases := []struct {
		name   string
		attack func(e *attackEnv)
		want   map[string]Status // key -> status verify must report
	}{
		{"flip-header-magic", func(e *attackEnv) { e.edit(e.nameA, flipAt(0)) }, map[string]Status{"a": StatusAltered}},
		{"flip-wrapped-key", func(e *attackEnv) { e.edit(e.nameA, flipAt(60)) }, map[string]Status{"a": StatusAltered}},
		{"flip-commitment", func(e *attackEnv) { e.edit(e.nameA, flipAt(140)) }, map[string]Status{"a": StatusAltered}},
		{"flip-first-chunk", func(e *attackEnv) { e.edit(e.nameA, flipAt(H+10)) }, map[string]Status{"a": StatusAltered}},
		{"flip-last-chunk", func(e *attackEnv) { e.edit(e.nameA, flipAt(H+3*seg-3)) }, map[string]Status{"a": StatusAltered}},
		{"flip-padding", func(e *attackEnv) { e.edit(e.nameA, flipAt(H+3*seg+1)) }, map[string]Status{"a": StatusAltered}},
		{"flip-manifest", func(e *attackEnv) { e.edit(e.nameA, flipAt(-100)) }, map[string]Status{"a": StatusAltered}},
		{"flip-footer", func(e *attackEnv) { e.edit(e.nameA, flipAt(-1)) }, map[string]Status{"a": StatusAltered}},
		{"cut-at-chunk-boundary", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte { return b[:H+format.ChunkCTSize] })
		}, map[string]Status{"a": StatusTruncated}},
		{"cut-last-byte", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte { return b[:len(b)-1] })
		}, map[string]Status{"a": StatusTruncated}},
		{"byte-appended", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte { return append(b, 0) })
		}, map[string]Status{"a": StatusAltered}},
		{"segment-dropped", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte { return append(b[:H+seg:H+seg], b[H+2*seg:]...) })
		}, map[string]Status{"a": StatusTruncated}},
		{"segments-reordered", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte {
				s0 := bytes.Clone(b[H : H+seg])
				copy(b[H:H+seg], b[H+seg:H+2*seg])
				copy(b[H+seg:H+2*seg], s0)
				return b
			})
		}, map[string]Status{"a": StatusAltered}},
		{"chunks-reordered", func(e *attackEnv) {
			e.edit(e.nameA, func(b []byte) []byte {
				c0 := bytes.Clone(b[H : H+format.ChunkCTSize])
				copy(b[H:H+format.ChunkCTSize], b[H+format.ChunkCTSize:H+2*format.ChunkCTSize])
				copy(b[H+format.ChunkCTSize:H+2*format.ChunkCTSize], c0)
				return b
			})
		}, map[string]Status{"a": StatusAltered}},
		{"objects-swapped", func(e *attackEnv) {
			pa, pb := e.storePath(e.nameA), e.storePath(e.nameB)
			da, _ := os.ReadFile(pa)
			db, _ := os.ReadFile(pb)
			os.WriteFile(pa, db, 0o600)
			os.WriteFile(pb, da, 0o600)
		}, map[string]Status{"a": StatusSwapped, "b": StatusSwapped}},
		{"object-moved-over-another", func(e *attackEnv) {
			da, _ := os.ReadFile(e.storePath(e.nameA))
			os.WriteFile(e.storePath(e.nameB), da, 0o600)
		}, map[string]Status{"b": StatusSwapped}},
		{"rolled-back", func(e *attackEnv) {
			os.WriteFile(e.storePath(e.nameA), e.oldA, 0o600)
		}, map[string]Status{"a": StatusRolledBack}},
		{"deleted", func(e *attackEnv) { os.Remove(e.storePath(e.nameA)) }, map[string]Status{"a": StatusMissing}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newAttackEnv(t)
			c.attack(e)
			e.reopen()
			for key, want := range c.want {
				got, err := e.get("victims", key)
				var de *DamageError
				if !errors.As(err, &de) {
					t.Fatalf("get %s after the attack: %v (want a damage error)", key, err)
				}
				if de.Status != want || de.Key != key || de.Bucket != "victims" {
					t.Fatalf("get %s: %v (status %s), want %s", key, de, de.Status, want)
				}
				// Only authenticated chunks may have been delivered: a
				// prefix of the true plaintext at most.
				truth := map[string][]byte{"a": e.a, "b": e.b}[key]
				if !bytes.HasPrefix(truth, got) {
					t.Fatalf("get %s delivered bytes that are not the plaintext", key)
				}
			}
			// The other object is untouched and still reads.
			for _, key := range []string{"a", "b"} {
				if _, hit := c.want[key]; !hit {
					e.mustGet("victims", key, map[string][]byte{"a": e.a, "b": e.b}[key])
				}
			}
			sum, fs := e.verify()
			if !sum.Damaged() {
				t.Fatal("verify did not report damage")
			}
			got := map[string]Status{}
			for _, f := range fs {
				got[f.Key] = f.Status
			}
			if len(got) != len(c.want) {
				t.Fatalf("verify reported %+v, want %v", fs, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Fatalf("verify: %s is %s, want %s (%+v)", k, got[k], v, fs)
				}
			}
		})
	}
}

// TestRangeReadOfRolledBackObjectFails: range reads check the pin too.
func TestRangeReadOfRolledBackObjectFails(t *testing.T) {
	ctx := context.Background()
	e := newAttackEnv(t)
	read := func() error {
		rd, err := e.r.OpenObject(ctx, "victims", "a")
		if err != nil {
			return err
		}
		defer rd.Close()
		rc, err := rd.Range(ctx, 100, 10)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		return err
	}
	if err := read(); err != nil { // control
		t.Fatal(err)
	}
	os.WriteFile(e.storePath(e.nameA), e.oldA, 0o600)
	var de *DamageError
	if err := read(); !errors.As(err, &de) || de.Status != StatusRolledBack {
		t.Fatalf("range read of a rolled-back object: %v", err)
	}
}

// TestInjectedObjects: objects the repository never wrote are reported as
// unknown, never served, and never resurrected by recovery.
func TestInjectedObjects(t *testing.T) {
	ctx := context.Background()
	e := newAttackEnv(t)
	da, _ := os.ReadFile(e.storePath(e.nameA))
	copyName := "0123456789abcdef0123456789abcdef"
	os.MkdirAll(filepath.Dir(e.storePath(copyName)), 0o700)
	os.WriteFile(e.storePath(copyName), da, 0o600) // a valid ciphertext under a new name (A10)
	junk := "fedcba9876543210fedcba9876543210"
	os.MkdirAll(filepath.Dir(e.storePath(junk)), 0o700)
	os.WriteFile(e.storePath(junk), random(8192), 0o600) // bytes from nowhere (A9)
	e.reopen()
	e.mustGet("victims", "a", e.a)
	if _, err := e.get("victims", "injected"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a never-written key: %v", err)
	}
	sum, fs := e.verify()
	if !sum.Damaged() || sum.Counts[StatusUnknown] != 2 {
		t.Fatalf("verify: %+v %+v", sum, fs)
	}
	for _, f := range fs {
		if f.Status != StatusUnknown || (f.Name != copyName && f.Name != junk) {
			t.Fatalf("unexpected finding %+v", f)
		}
	}
	// Recovery does not adopt them.
	e.r.Close()
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(e.home, CatalogFile+s))
	}
	r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if len(rep.Unknown) != 2 || rep.Objects != 2 {
		t.Fatalf("recover adopted injected objects: %+v", rep)
	}
	e.mustGet("victims", "a", e.a)
}

// TestReadRacesOverwrite: a reader that took an entry before the object
// was replaced (its old version removed) or deleted gets ErrReplaced or
// ErrNotFound, not a damage report, and opening by name reads the new
// version. The control removes the stored object of the current version,
// as a provider would: that is damage (missing).
func TestReadRacesOverwrite(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := e.r.Put(ctx, "racing", key, bytes.NewReader(data), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v1, v2 := random(5000), random(7000)
	put("k", v1)
	old, err := e.r.Stat(ctx, "racing", "k")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := e.r.OpenEntry(ctx, old) // positive control: the entry opens
	if err != nil {
		t.Fatal(err)
	}
	rd.Close()
	put("k", v2)
	if _, err := os.Stat(e.storePath(format.StoreName(old.ObjectID))); !os.IsNotExist(err) {
		t.Fatalf("old version's object still stored (%v): the test would not race", err)
	}
	_, err = e.r.OpenEntry(ctx, old)
	var de *DamageError
	if !errors.Is(err, ErrReplaced) || errors.As(err, &de) {
		t.Fatalf("open of a replaced version: %v, want ErrReplaced and no damage", err)
	}
	e.mustGet("racing", "k", v2)

	cur, _ := e.r.Stat(ctx, "racing", "k")
	if _, err := e.r.Delete(ctx, "racing", "k"); err != nil {
		t.Fatal(err)
	}
	_, err = e.r.OpenEntry(ctx, cur)
	if !errors.Is(err, ErrNotFound) || errors.As(err, &de) {
		t.Fatalf("open of a deleted version: %v, want ErrNotFound and no damage", err)
	}

	// Control: the provider removes the current version's object.
	put("k", v1)
	cur, _ = e.r.Stat(ctx, "racing", "k")
	os.Remove(e.storePath(format.StoreName(cur.ObjectID)))
	_, err = e.r.OpenEntry(ctx, cur)
	if !errors.As(err, &de) || de.Status != StatusMissing || errors.Is(err, ErrReplaced) {
		t.Fatalf("open with the current version's object removed: %v, want damage (missing)", err)
	}
	_, err = e.r.OpenObject(ctx, "racing", "k")
	if !errors.As(err, &de) || de.Status != StatusMissing {
		t.Fatalf("OpenObject with the current version's object removed: %v, want damage (missing)", err)
	}
}
