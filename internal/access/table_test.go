package access

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/versity/versitygw/auth"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
)

// env is a home with a keyring and a catalog, as a repository has.
type env struct {
	home string
	repo keys.ID
	kr   *keyring.Keyring
	cat  catalog.Catalog
}

var testPass = []byte("access test passphrase")

func newEnv(t testing.TB) *env {
	t.Helper()
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	e := &env{home: t.TempDir()}
	if _, err := rand.Read(e.repo[:]); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Create(filepath.Join(e.home, "keyring"), testPass, e.repo, keyring.Calibrate(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e.kr = kr
	t.Cleanup(func() { kr.Close() })
	e.cat = e.openCatalog(t)
	return e
}

// openCatalog opens another handle on the env's catalog file, as another
// process would.
func (e *env) openCatalog(t testing.TB) catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(context.Background(), filepath.Join(e.home, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) open(t testing.TB, cat catalog.Catalog, o Options) *Table {
	t.Helper()
	if o.Log == nil {
		o.Log = quietLog()
	}
	tb, err := Open(context.Background(), cat, e.repo, e.kr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	return tb
}

// unknownID is shaped like an access key id and names none.
const unknownID = "HFUNKNOWN00000000000"

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustAdd(t testing.TB, tb *Table, s Spec) (*Credentials, Key) {
	t.Helper()
	c, k, err := tb.Add(context.Background(), s)
	if err != nil {
		t.Fatalf("add %+v: %v", s, err)
	}
	return c, k
}

// resolves reports whether id authenticates: the IAM adapter derives its
// signing key.
func resolves(tb *Table, id string) bool {
	k, acc, err := tb.IAM().DeriveSigningKey(id, "", "20260101", "us-east-1", "s3")
	return err == nil && len(k) == 32 && acc.Access == id && acc.Secret == ""
}

func TestAddListRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tb := e.open(t, e.cat, Options{})
	if ks, err := tb.List(ctx); err != nil || len(ks) != 0 {
		t.Fatalf("new table lists %v, %v", ks, err)
	}
	c1, k1 := mustAdd(t, tb, Spec{Name: "backup server", Grants: []Grant{{"photos", Read | List}, {"photos", Write}, {"*", Read}}})
	c2, _ := mustAdd(t, tb, Spec{Name: "supplier", Grants: []Grant{{"inbox", Inbox}}})
	c3, _ := mustAdd(t, tb, Spec{Name: "ops", Admin: true})
	for _, c := range []*Credentials{c1, c2, c3} {
		if !ValidID(c.ID) || !strings.HasPrefix(c.ID, IDPrefix) || len(c.Secret()) != SecretLen {
			t.Fatalf("credentials %q / %d-char secret", c.ID, len(c.Secret()))
		}
		if strings.Contains(strings.ToLower(c.ID), "asia") {
			t.Fatalf("id %q could pass for a temporary AWS key", c.ID)
		}
	}
	if c1.Secret() == c2.Secret() || c1.ID == c2.ID {
		t.Fatal("two keys share an id or a secret")
	}
	// Grants are merged per bucket and sorted ("*" first).
	want := []Grant{{"*", Read}, {"photos", Read | Write | List}}
	if !equalGrants(k1.Grants, want) {
		t.Fatalf("grants %v, want %v", k1.Grants, want)
	}

	ks, err := tb.List(ctx)
	if err != nil || len(ks) != 3 {
		t.Fatalf("list: %v, %v", ks, err)
	}
	if ks[0].ID != c1.ID || ks[1].ID != c2.ID || ks[2].ID != c3.ID || !ks[2].Admin || ks[0].Name != "backup server" {
		t.Fatalf("list order or content: %+v", ks)
	}
	// What List returns, marshalled as the CLI does, holds no secret.
	j, _ := json.Marshal(ks)
	for _, c := range []*Credentials{c1, c2, c3} {
		if bytes.Contains(j, []byte(c.Secret())) {
			t.Fatal("the listing holds a secret")
		}
		if !bytes.Contains(j, []byte(c.ID)) { // control: the listing names the keys
			t.Fatal("the listing lacks an id")
		}
	}
	if !bytes.Contains(j, []byte(`"perms":"rwl"`)) || !bytes.Contains(j, []byte(`"perms":"inbox"`)) {
		t.Fatalf("permissions are not written as letters: %s", j)
	}

	for _, c := range []*Credentials{c1, c2, c3} {
		if !resolves(tb, c.ID) {
			t.Fatalf("%s does not resolve", c.ID)
		}
	}
	if err := tb.Revoke(ctx, c2.ID); err != nil {
		t.Fatal(err)
	}
	if resolves(tb, c2.ID) {
		t.Fatal("a revoked key still resolves")
	}
	if !resolves(tb, c1.ID) { // control
		t.Fatal("revoking one key broke another")
	}
	if _, ok := tb.Get(c2.ID); ok {
		t.Fatal("Get finds a revoked key")
	}
	if err := tb.Revoke(ctx, c2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if err := tb.Revoke(ctx, "HF0000000000000000000"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoke of a malformed id: %v", err)
	}
	if ks, _ := tb.List(ctx); len(ks) != 2 {
		t.Fatalf("after revoke: %v", ks)
	}
	tb.Close()
	if resolves(tb, c1.ID) || tb.Allowed(c1.ID, "photos", Read) {
		t.Fatal("a closed table still answers")
	}
	if _, _, err := tb.Add(ctx, Spec{Name: "late", Admin: true}); err == nil {
		t.Fatal("a closed table made a key")
	}
}

func equalGrants(a, b []Grant) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSpecErrors(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	for _, s := range []Spec{
		{Name: "", Grants: []Grant{{"b1b", Read}}},
		{Name: "bell\a", Grants: []Grant{{"b1b", Read}}},
		{Name: strings.Repeat("x", 65), Grants: []Grant{{"b1b", Read}}},
		{Name: "none"},
		{Name: "bad bucket", Grants: []Grant{{"Bad_Bucket", Read}}},
		{Name: "no perms", Grants: []Grant{{"b1b", 0}}},
		{Name: "inbox and more", Grants: []Grant{{"b1b", Inbox}, {"b1b", Read}}},
		{Name: "unknown bit", Grants: []Grant{{"b1b", 1 << 6}}},
	} {
		if _, _, err := tb.Add(context.Background(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", s, err)
		}
	}
	// Control: a good spec passes, with a name at the length limit.
	mustAdd(t, tb, Spec{Name: strings.Repeat("é", 64), Grants: []Grant{{"b1b", Read}}})
	if ks, _ := tb.List(context.Background()); len(ks) != 1 {
		t.Fatalf("refused specs left records: %v", ks)
	}
}

func TestParseGrant(t *testing.T) {
	good := map[string]Grant{
		"photos:r":       {"photos", Read},
		"photos:rwld":    {"photos", Read | Write | List | Delete},
		"photos:dlwr":    {"photos", Read | Write | List | Delete},
		"a.b-c:l":        {"a.b-c", List},
		"*:rl":           {"*", Read | List},
		"drop-box:inbox": {"drop-box", Inbox},
	}
	for s, want := range good {
		g, err := ParseGrant(s)
		if err != nil || g != want {
			t.Errorf("%q: %v, %v; want %v", s, g, err, want)
		}
		if g.String() != want.Bucket+":"+want.Perms.String() {
			t.Errorf("%q prints as %q", s, g.String())
		}
	}
	for _, s := range []string{"photos", "photos:", "photos:x", "photos:rx", "Photos:r", "ph:r", "photos:R", ":r", "photos:inboxr", "a/b:r", "photos:r:w"} {
		if _, err := ParseGrant(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted (%v)", s, err)
		}
	}
}

// TestSecretNotOnDisk: the secret appears nowhere under the home (keyring,
// catalog, its WAL) while the API hands it out once and authenticates with
// it; the key's id, which is stored in the clear, is found by the same
// search.
func TestSecretNotOnDisk(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	c, _ := mustAdd(t, tb, Spec{Name: "on disk?", Grants: []Grant{{"photos", Read}}})
	sec := []byte(c.Secret())
	if len(sec) != SecretLen || !resolves(tb, c.ID) {
		t.Fatal("control: the API does not return a working secret")
	}
	foundID := false
	err := filepath.WalkDir(e.home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, sec) {
			t.Errorf("%s holds the secret", p)
		}
		if bytes.Contains(b, []byte(c.ID)) {
			foundID = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !foundID {
		t.Fatal("control: the search did not find the key id either; it searched the wrong place")
	}
	c.Wipe()
	if c.Secret() == string(sec) {
		t.Fatal("Wipe left the secret")
	}
}

// setRecord rewrites access key id's stored record with edit.
func setRecord(t *testing.T, cat catalog.Catalog, id string, edit func(*record)) {
	t.Helper()
	ctx := context.Background()
	b, err := cat.GetMeta(ctx, "access-key/"+id)
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	if b, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	// SetMeta does not raise the table version, as a hand edit would not:
	// the readers below reload.
	if err := cat.SetMeta(ctx, "access-key/"+id, b); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*record)
	}{
		{"secret bit flipped", func(r *record) { r.Sealed[20] ^= 1 }},
		{"permission widened", func(r *record) { r.Grants[0].Perms |= uint8(Write | Delete) }},
		{"bucket changed", func(r *record) { r.Grants[0].Bucket = "other" }},
		{"made admin", func(r *record) { r.Admin = true }},
		{"renamed", func(r *record) { r.Name = "someone else" }},
		{"created moved", func(r *record) { r.Created++ }},
		{"secret truncated", func(r *record) { r.Sealed = r.Sealed[:40] }},
		{"future format", func(r *record) { r.Format = 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			tb := e.open(t, e.cat, Options{})
			victim, _ := mustAdd(t, tb, Spec{Name: "victim", Grants: []Grant{{"photos", Read}}})
			control, _ := mustAdd(t, tb, Spec{Name: "control", Grants: []Grant{{"photos", Read}}})
			setRecord(t, e.cat, victim.ID, tc.edit)
			if err := tb.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if resolves(tb, victim.ID) {
				t.Fatal("a tampered record authenticates")
			}
			if tb.Allowed(victim.ID, "photos", Read) || tb.Allowed(victim.ID, "photos", Write) {
				t.Fatal("a tampered record grants something")
			}
			if pol, _ := tb.BucketPolicy("photos"); bytes.Contains(pol, []byte(victim.ID)) {
				t.Fatal("a tampered record is in the bucket policy")
			}
			if pol, _ := tb.BucketPolicyFor("photos", victim.ID); bytes.Contains(pol, []byte(victim.ID)) {
				t.Fatal("a tampered record has a statement in its own policy")
			}
			if !resolves(tb, control.ID) || !tb.Allowed(control.ID, "photos", Read) {
				t.Fatal("control: the untouched key does not work")
			}
			if pol, _ := tb.BucketPolicyFor("photos", control.ID); !bytes.Contains(pol, []byte(control.ID)) {
				t.Fatal("control: the untouched key has no statement in its own policy")
			}
			ks, err := tb.List(ctx)
			if err != nil || len(ks) != 2 {
				t.Fatal(ks, err)
			}
			for _, k := range ks {
				if k.Damaged != (k.ID == victim.ID) {
					t.Fatalf("listing: %+v", k)
				}
			}
		})
	}
	t.Run("record moved to another id", func(t *testing.T) {
		e := newEnv(t)
		ctx := context.Background()
		tb := e.open(t, e.cat, Options{})
		a, _ := mustAdd(t, tb, Spec{Name: "a", Grants: []Grant{{"photos", Read}}})
		b, _ := mustAdd(t, tb, Spec{Name: "b", Admin: true})
		rb, _ := e.cat.GetMeta(ctx, "access-key/"+b.ID)
		if err := e.cat.SetMeta(ctx, "access-key/"+a.ID, rb); err != nil {
			t.Fatal(err)
		}
		tb.Reload(ctx)
		if resolves(tb, a.ID) || tb.IsAdmin(a.ID) {
			t.Fatal("a record moved to another id authenticates")
		}
		if !resolves(tb, b.ID) || !tb.IsAdmin(b.ID) {
			t.Fatal("control: the original does not")
		}
	})
}

// tableKeyRow is the stored table key record.
func tableKeyRow(t *testing.T, cat catalog.Catalog) []byte {
	t.Helper()
	b, err := cat.GetMeta(context.Background(), "access-table-key")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWrongTableKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tb := e.open(t, e.cat, Options{})
	c, _ := mustAdd(t, tb, Spec{Name: "k", Grants: []Grant{{"photos", Read}}})
	if !resolves(tb, c.ID) {
		t.Fatal("control: the key does not resolve")
	}
	own := tableKeyRow(t, e.cat)

	// Another table key, properly wrapped for this repository (a second
	// catalog's), put in place of this one: the key unwraps, the records
	// sealed under the real one do not open.
	otherCat := e.openCatalogAt(t, "other.db")
	mustAdd(t, e.open(t, otherCat, Options{}), Spec{Name: "x", Admin: true})
	if err := e.cat.SetMeta(ctx, "access-table-key", tableKeyRow(t, otherCat)); err != nil {
		t.Fatal(err)
	}
	swapped := e.open(t, e.openCatalog(t), Options{})
	if resolves(swapped, c.ID) {
		t.Fatal("a record opened under another table key")
	}
	if ks, _ := swapped.List(ctx); len(ks) != 1 || !ks[0].Damaged {
		t.Fatalf("listing under the wrong key: %+v", ks)
	}

	// A tampered table key record does not unwrap at all.
	var rec tableKeyRecord
	json.Unmarshal(own, &rec)
	rec.Wrapped[40] ^= 1
	bad, _ := json.Marshal(rec)
	e.cat.SetMeta(ctx, "access-table-key", bad)
	if _, err := Open(ctx, e.openCatalog(t), e.repo, e.kr, Options{Log: quietLog()}); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("tampered table key: %v", err)
	}
	// A key check that does not match the key.
	json.Unmarshal(own, &rec)
	rec.KeyCheck[0] ^= 1
	bad, _ = json.Marshal(rec)
	e.cat.SetMeta(ctx, "access-table-key", bad)
	if _, err := Open(ctx, e.openCatalog(t), e.repo, e.kr, Options{Log: quietLog()}); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("wrong key check: %v", err)
	}

	// Control: the real record back, and a fresh table works again.
	e.cat.SetMeta(ctx, "access-table-key", own)
	if !resolves(e.open(t, e.openCatalog(t), Options{}), c.ID) {
		t.Fatal("control: the restored table key does not open the record")
	}

	// Another repository's keyring cannot open this table.
	e2 := newEnv(t)
	if _, err := Open(ctx, e.openCatalog(t), e.repo, e2.kr, Options{Log: quietLog()}); err == nil {
		t.Fatal("another repository's keyring opened the table key")
	}
	if _, err := Open(ctx, e.openCatalog(t), e2.repo, e2.kr, Options{Log: quietLog()}); err == nil {
		t.Fatal("the table key opened under another repository id")
	}
}

func (e *env) openCatalogAt(t *testing.T, name string) catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(context.Background(), filepath.Join(e.home, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestChangesSeenWithinMaxStale: a gateway's table sees another
// process's add and revoke once MaxStale has passed.
func TestChangesSeenWithinMaxStale(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const stale = 150 * time.Millisecond
	clk := useManualClock(t)
	gw := e.open(t, e.openCatalog(t), Options{MaxStale: stale})
	cli := e.open(t, e.openCatalog(t), Options{})
	if resolves(gw, unknownID) {
		t.Fatal("an unknown id resolves")
	}
	v0 := gw.Version()
	c, _ := mustAdd(t, cli, Spec{Name: "k", Grants: []Grant{{"photos", Read}}})
	clk.advance(stale)
	if !resolves(gw, c.ID) || !gw.Allowed(c.ID, "photos", Read) {
		t.Fatal("the gateway does not see a key added MaxStale ago")
	}
	if pol, _ := gw.BucketPolicyFor("photos", c.ID); !bytes.Contains(pol, []byte(c.ID)) {
		t.Fatal("the gateway's policy for a key added MaxStale ago has no statement for it")
	}
	if gw.Version() <= v0 {
		t.Fatalf("version %d did not grow from %d", gw.Version(), v0)
	}
	if err := cli.Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	clk.advance(stale)
	if resolves(gw, c.ID) || gw.Allowed(c.ID, "photos", Read) {
		t.Fatal("the gateway still accepts a key revoked MaxStale ago")
	}
	if pol, _ := gw.BucketPolicy("photos"); bytes.Contains(pol, []byte(c.ID)) {
		t.Fatal("the revoked key is still in the bucket policy")
	}
	if pol, _ := gw.BucketPolicyFor("photos", c.ID); bytes.Contains(pol, []byte(c.ID)) {
		t.Fatal("the revoked key still has a statement in its own policy")
	}
}

// TestConcurrentUse: several handles (as several processes) add keys to a
// fresh table at once — racing to make its key — and revoke some, while a
// gateway handle resolves keys. Every key ends up sealed under the one
// table key.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const stale = 10 * time.Millisecond
	gw := e.open(t, e.openCatalog(t), Options{MaxStale: stale})
	const writers, each = 4, 5
	tables := make([]*Table, writers)
	for i := range tables {
		tables[i] = e.open(t, e.openCatalog(t), Options{})
	}
	type added struct {
		id string
		at time.Time // after the add returned
	}
	var mu sync.Mutex
	var kept []added
	var revoked []string
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	checked := 0
	passes := make(chan time.Time, 1) // the start of each finished pass, latest only
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			mu.Lock()
			ks := append([]added(nil), kept...)
			mu.Unlock()
			for _, k := range ks {
				// A check begun MaxStale after the add sees the key.
				if start.Sub(k.at) >= stale {
					checked++
					if !resolves(gw, k.id) {
						t.Errorf("key %s added %v before the check did not resolve", k.id, start.Sub(k.at))
					}
				}
			}
			gw.BucketPolicy("photos")
			for _, k := range ks {
				gw.BucketPolicyFor("photos", k.id)
			}
			select {
			case <-passes:
			default:
			}
			passes <- start
		}
	}()
	var wg sync.WaitGroup
	for i, tb := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				c, _, err := tb.Add(ctx, Spec{Name: "w", Grants: []Grant{{"photos", Read}}})
				if err != nil {
					t.Error(err)
					return
				}
				if (i+j)%3 == 0 {
					if err := tb.Revoke(ctx, c.ID); err != nil {
						t.Error(err)
					}
					mu.Lock()
					revoked = append(revoked, c.ID)
					mu.Unlock()
					continue
				}
				mu.Lock()
				kept = append(kept, added{c.ID, time.Now()})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Let the reader finish a pass begun MaxStale after the last add, so
	// that it checks the last keys too.
	end := time.Now()
	for done := false; !done; {
		select {
		case start := <-passes:
			done = start.Sub(end) >= stale
		case <-time.After(10 * time.Second):
			t.Fatal("the reader stopped making passes")
		}
	}
	close(stop)
	readers.Wait()
	if checked == 0 {
		t.Fatal("the reader checked no key while the writers ran")
	}
	fresh := e.open(t, e.openCatalog(t), Options{})
	ks, err := fresh.List(ctx)
	if err != nil || len(ks) != len(kept) || len(kept)+len(revoked) != writers*each {
		t.Fatalf("listed %d keys (%v), kept %d, revoked %d", len(ks), err, len(kept), len(revoked))
	}
	for _, k := range ks {
		if k.Damaged {
			t.Fatalf("%s is damaged: sealed under a table key that lost the race", k.ID)
		}
	}
	for _, k := range kept {
		if !resolves(fresh, k.id) {
			t.Fatalf("%s does not resolve", k.id)
		}
	}
	for _, id := range revoked {
		if resolves(fresh, id) {
			t.Fatalf("revoked %s resolves", id)
		}
	}
}

// TestRewrap: after a root key rotation, Rewrap moves the table key to the
// new root key version, so destroying the old one keeps every access key;
// a table not rewrapped (the control) is lost with it.
func TestRewrap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tb := e.open(t, e.cat, Options{})
	c, _ := mustAdd(t, tb, Spec{Name: "k", Grants: []Grant{{"photos", Read}}})
	staleCat := e.openCatalogAt(t, "stale.db")
	sc, _ := mustAdd(t, e.open(t, staleCat, Options{}), Spec{Name: "s", Grants: []Grant{{"photos", Read}}})

	if _, err := e.kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Rewrap(ctx); err != nil {
		t.Fatal(err)
	}
	var rec tableKeyRecord
	json.Unmarshal(tableKeyRow(t, e.cat), &rec)
	if rec.KEKVersion != e.kr.Primary() || rec.KEKVersion == 1 {
		t.Fatalf("table key wrapped under root version %d after rewrap to %d", rec.KEKVersion, e.kr.Primary())
	}
	if err := tb.Rewrap(ctx); err != nil { // nothing to do
		t.Fatal(err)
	}
	if err := e.kr.Destroy(1); err != nil {
		t.Fatal(err)
	}
	if !resolves(e.open(t, e.openCatalog(t), Options{}), c.ID) {
		t.Fatal("the rewrapped table does not open after the old root key is destroyed")
	}
	if _, err := Open(ctx, staleCat, e.repo, e.kr, Options{Log: quietLog()}); err == nil {
		t.Fatalf("control: a table wrapped under the destroyed root key still opens (%s)", sc.ID)
	}
}

func TestIAMReadOnly(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	c, _ := mustAdd(t, tb, Spec{Name: "k", Grants: []Grant{{"photos", Read}}})
	a, _ := mustAdd(t, tb, Spec{Name: "a", Admin: true})
	iam := tb.IAM()
	if err := iam.CreateAccount(auth.Account{Access: unknownID, Secret: "x", Role: auth.RoleAdmin}); err == nil {
		t.Fatal("CreateAccount succeeded")
	}
	if err := iam.DeleteUserAccount(c.ID); err == nil {
		t.Fatal("DeleteUserAccount succeeded")
	}
	s := "new secret"
	if err := iam.UpdateUserAccount(c.ID, auth.MutableProps{Secret: &s}); err == nil {
		t.Fatal("UpdateUserAccount succeeded")
	}
	if !resolves(tb, c.ID) {
		t.Fatal("control: the key stopped working")
	}
	acc, err := iam.GetUserAccount(c.ID)
	if err != nil || acc.Access != c.ID || acc.Secret != "" || acc.Role != auth.RoleUser {
		t.Fatalf("GetUserAccount: %+v, %v", acc, err)
	}
	if acc, err := iam.GetUserAccount(a.ID); err != nil || acc.Role != auth.RoleUserPlus {
		t.Fatalf("admin account: %+v, %v", acc, err)
	}
	if _, err := iam.GetUserAccount(unknownID); err != auth.ErrNoSuchUser {
		t.Fatalf("unknown GetUserAccount: %v", err)
	}
	accs, err := iam.ListUserAccounts()
	if err != nil || len(accs) != 2 {
		t.Fatal(accs, err)
	}
	for _, acc := range accs {
		if acc.Secret != "" || acc.Role == auth.RoleAdmin {
			t.Fatalf("listed account %v", acc)
		}
	}
	missing, err := iam.ResolveAccounts([]string{c.ID, unknownID, a.ID})
	if err != nil || len(missing) != 1 || missing[0] != unknownID {
		t.Fatalf("ResolveAccounts: %v, %v", missing, err)
	}
	if err := iam.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// manualClock is a clock for SetClockForTesting that moves only when told.
type manualClock struct{ now atomic.Int64 }

func (c *manualClock) read() time.Duration     { return time.Duration(c.now.Load()) }
func (c *manualClock) advance(d time.Duration) { c.now.Add(int64(d)) }

// useManualClock puts the tables on a manual clock for the rest of t.
func useManualClock(t *testing.T) *manualClock {
	c := &manualClock{}
	c.now.Store(int64(time.Hour)) // not zero: a zero check time means never checked
	t.Cleanup(SetClockForTesting(c.read))
	return c
}
