package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/store"
)

// Catalog backups: the tests play the provider (deleting, rolling back,
// altering stored backups) and the lost home (everything but the keyring
// file gone), and every refusal has a control in the same test that
// differs only in what is tested.

func (e *env) backup() *BackupResult {
	e.t.Helper()
	res, err := e.r.Backup(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// snapshot is a copy of a home's keyring file and of the whole store, as
// they are at one moment.
type snapshot struct {
	keyring []byte
	store   string
}

// snap copies the keyring file and the store aside.
func (e *env) snap() snapshot {
	e.t.Helper()
	kr, err := os.ReadFile(filepath.Join(e.home, KeyringFile))
	if err != nil {
		e.t.Fatal(err)
	}
	dir := filepath.Join(e.t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS(e.store)); err != nil {
		e.t.Fatal(err)
	}
	return snapshot{keyring: kr, store: dir}
}

// lostHome is a new home holding only keyring kr, recovering from a copy
// of the store dir (so that one state serves several recoveries).
func lostHome(t testing.TB, kr []byte, storeDir string) (home, st string) {
	t.Helper()
	home = filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, KeyringFile), kr, 0o600); err != nil {
		t.Fatal(err)
	}
	st = filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(st, os.DirFS(storeDir)); err != nil {
		t.Fatal(err)
	}
	return home, st
}

// recoverFrom recovers a lost home with keyring kr from (a copy of)
// storeDir; the returned env reads the result.
func recoverFrom(t *testing.T, kr []byte, storeDir string, accept bool) (*env, *RecoverReport, error) {
	t.Helper()
	home, st := lostHome(t, kr, storeDir)
	r, rep, err := Recover(context.Background(), RecoverOptions{Home: home, StorePath: st, Passphrase: pass, AcceptUnverifiedFreshness: accept})
	if err != nil {
		return nil, nil, err
	}
	e := &env{t: t, home: home, store: st, r: r}
	t.Cleanup(func() { e.r.Close() })
	return e, rep, nil
}

func storeFile(dir, name string) string { return filepath.Join(dir, name[:2], name) }

// TestRecoverFromBackupAndScan is the acceptance test: objects put,
// overwritten and deleted after the last backup, then the home is lost
// without another backup; recovery with the keyring lists and reads every
// object byte-exact, starting from the backup the keyring vouches for.
func TestRecoverFromBackupAndScan(t *testing.T) {
	e := newEnv(t)
	want := map[string][]byte{}
	put := func(bucket, key string, b []byte) {
		e.put(bucket, key, b)
		want[bucket+"/"+key] = b
	}
	put("alpha", "before/one", random(1000))
	put("alpha", "before/two", random(70000))
	put("beta", "before/gone", []byte("deleted after the backup"))
	put("beta", "before/replaced", []byte("first version"))
	b := e.backup()
	if b.Sequence != 2 || b.Objects != 4 || b.Buckets != 2 {
		t.Fatalf("backup %+v", b)
	}
	// After the backup: new objects, a new bucket, an overwrite, a delete.
	put("alpha", "after/three", random(5<<20))
	put("gamma", "after/four", nil)
	put("beta", "before/replaced", []byte("second version"))
	if _, err := e.r.Delete(context.Background(), "beta", "before/gone"); err != nil {
		t.Fatal(err)
	}
	delete(want, "beta/before/gone")
	e.r.Close()
	s := e.snap()

	r, rep, err := recoverFrom(t, s.keyring, s.store, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Freshness != FreshnessVerified || rep.Backup == nil || rep.Backup.Sequence != 2 || rep.Keyring.Sequence != 2 {
		t.Fatalf("recovery did not start from backup 2: %+v", rep)
	}
	if rep.Objects != len(want) || rep.Buckets != 3 || rep.AfterBackup != 3 || len(rep.Unknown) != 0 {
		t.Fatalf("recover report %+v", rep)
	}
	if len(rep.Missing) != 1 || rep.Missing[0] != "beta/before/gone" {
		t.Fatalf("missing %v, want the object deleted after the backup", rep.Missing)
	}
	if rep.NewBackup == nil || rep.NewBackup.Sequence != 3 || rep.NewBackupError != "" {
		t.Fatalf("new backup %+v %q", rep.NewBackup, rep.NewBackupError)
	}
	r.reopen()
	n := 0
	for _, bucket := range []string{"alpha", "beta", "gamma"} {
		if err := r.r.Catalog().List(context.Background(), bucket, "", "", func(ent catalog.Entry) error {
			n++
			data, ok := want[bucket+"/"+ent.Key]
			if !ok {
				t.Errorf("%s/%s listed", bucket, ent.Key)
				return nil
			}
			r.mustGet(bucket, ent.Key, data)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n != len(want) {
		t.Fatalf("%d objects listed, want %d", n, len(want))
	}
	r.mustVerifyClean()
	if f, _ := r.r.kr.Freshness(); f.Sequence != 3 {
		t.Fatalf("keyring records %d after recovery", f.Sequence)
	}
	// Writes go on with versions above the recovered ones.
	r.put("beta", "before/replaced", []byte("third"))
	if ent, _ := r.r.Stat(context.Background(), "beta", "before/replaced"); ent.Version != 3 {
		t.Fatalf("version after recovery %d", ent.Version)
	}
}

// rolledBack builds the state of the second acceptance test: backup N-1,
// more objects, backup N; the keyring records N. It returns the snapshot
// and the two backups.
func rolledBack(t *testing.T) (e *env, s snapshot, atNm1 snapshot, prev, last *BackupResult) {
	e = newEnv(t)
	e.put("docs", "a", []byte("a"))
	prev = e.backup()
	atNm1 = e.snap() // the provider keeps a copy of the store now
	e.put("docs", "b", []byte("b"))
	last = e.backup()
	e.r.Close()
	return e, e.snap(), atNm1, prev, last
}

// TestRecoverRefusesRollback: with the freshness record from after backup
// N, a store whose backups were rolled back to N-1 is refused, whether
// backup N was deleted, replaced by an older one's bytes, or the whole
// store was put back as it was after N-1. The controls recover.
func TestRecoverRefusesRollback(t *testing.T) {
	_, s, atNm1, prev, last := rolledBack(t)
	if f, _ := recoverableKeyringFreshness(t, s.keyring); f.Sequence != last.Sequence {
		t.Fatalf("keyring records %d, want %d", f.Sequence, last.Sequence)
	}

	// Control: the store as it is recovers from backup N.
	r, rep, err := recoverFrom(t, s.keyring, s.store, false)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	if rep.Backup.Sequence != last.Sequence || rep.Objects != 2 {
		t.Fatalf("control report %+v", rep)
	}
	r.mustGet("docs", "b", []byte("b"))

	refused := func(name, storeDir string) {
		t.Helper()
		_, _, err := recoverFrom(t, s.keyring, storeDir, false)
		var fe *FreshnessError
		if !errors.As(err, &fe) || !errors.Is(err, ErrUnverifiedFreshness) {
			t.Fatalf("%s: recover gave %v, want a freshness refusal", name, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("sequence %d", prev.Sequence)) || !strings.Contains(msg, fmt.Sprintf("sequence %d", last.Sequence)) {
			t.Fatalf("%s: refusal does not name both sequences: %s", name, msg)
		}
		if fe.Newest == nil || fe.Newest.Sequence != prev.Sequence || fe.Keyring == nil || fe.Keyring.Sequence != last.Sequence {
			t.Fatalf("%s: refusal %+v", name, fe)
		}
	}

	// Backup N deleted.
	deleted := filepath.Join(t.TempDir(), "deleted")
	os.CopyFS(deleted, os.DirFS(s.store))
	if err := os.Remove(storeFile(deleted, last.Object)); err != nil {
		t.Fatal(err)
	}
	refused("backup N deleted", deleted)

	// Backup N's name holding backup N-1's bytes (an old copy put back).
	swapped := filepath.Join(t.TempDir(), "swapped")
	os.CopyFS(swapped, os.DirFS(s.store))
	old, _ := os.ReadFile(storeFile(s.store, prev.Object))
	if err := os.WriteFile(storeFile(swapped, last.Object), old, 0o600); err != nil {
		t.Fatal(err)
	}
	refused("backup N replaced by N-1's bytes", swapped)

	// The whole store rolled back to a copy from after backup N-1.
	refused("store rolled back to N-1", atNm1.store)

	// The user may still accept what is there; the report says so.
	r, rep, err = recoverFrom(t, s.keyring, atNm1.store, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Freshness != FreshnessUnverified || rep.Backup.Sequence != prev.Sequence || rep.FreshnessProblem == "" {
		t.Fatalf("accepted rollback report %+v", rep)
	}
	// The next backup continues above the keyring's record, never below.
	if rep.NewBackup == nil || rep.NewBackup.Sequence != last.Sequence+1 {
		t.Fatalf("backup after an accepted rollback: %+v", rep.NewBackup)
	}
	r.mustGet("docs", "a", []byte("a"))
}

func recoverableKeyringFreshness(t *testing.T, kr []byte) (keyring.Freshness, bool) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyring")
	os.WriteFile(p, kr, 0o600)
	k, err := keyring.Open(p, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	return k.Freshness()
}

// TestRecoverWithoutFreshnessRecord: a keyring that records no backup (a
// copy taken before the first one) cannot vouch for the store: recover
// refuses, and with AcceptUnverifiedFreshness recovers and reports the
// newest backup found. Control: the keyring with its record recovers
// without the flag.
func TestRecoverWithoutFreshnessRecord(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	var early []byte
	hooks := &Hooks{At: func(p string) {
		if p == "backup:stored" && early == nil {
			early, _ = os.ReadFile(filepath.Join(d, "home", KeyringFile))
		}
	}}
	r, err := Init(ctx, InitOptions{Home: filepath.Join(d, "home"), StorePath: filepath.Join(d, "store"), Passphrase: pass, KDF: keyring.Calibrate(0), Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, home: filepath.Join(d, "home"), store: filepath.Join(d, "store"), r: r}
	e.put("docs", "x", []byte("x"))
	b := e.backup()
	e.r.Close()
	if _, ok := recoverableKeyringFreshness(t, early); ok {
		t.Fatal("the early keyring copy has a freshness record")
	}
	s := e.snap()

	_, _, err = recoverFrom(t, early, s.store, false)
	var fe *FreshnessError
	if !errors.As(err, &fe) || fe.Keyring != nil || fe.Newest == nil || fe.Newest.Sequence != b.Sequence {
		t.Fatalf("recover with a keyring without freshness: %v", err)
	}
	if !strings.Contains(err.Error(), "no freshness record") {
		t.Fatalf("refusal does not say why: %v", err)
	}
	rr, rep, err := recoverFrom(t, early, s.store, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Freshness != FreshnessUnverified || rep.Newest == nil || rep.Newest.Sequence != b.Sequence ||
		!rep.Newest.Created.Equal(b.Created.Truncate(0)) || rep.Backup.Sequence != b.Sequence {
		t.Fatalf("report %+v (backup %+v)", rep, b)
	}
	rr.mustGet("docs", "x", []byte("x"))
	// Control.
	if _, rep, err := recoverFrom(t, s.keyring, s.store, false); err != nil || rep.Freshness != FreshnessVerified {
		t.Fatalf("control: %v %+v", err, rep)
	}
}

// TestRecoverTamperedBackup: a backup whose stored bytes were altered is
// not trusted: the newest one altered leaves only older ones, which the
// keyring refuses; an older one altered is reported and ignored. Control:
// the untouched store recovers.
func TestRecoverTamperedBackup(t *testing.T) {
	_, s, _, prev, last := rolledBack(t)
	flip := func(name string, off int64) string {
		dir := filepath.Join(t.TempDir(), "store")
		os.CopyFS(dir, os.DirFS(s.store))
		p := storeFile(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[off] ^= 1
		os.WriteFile(p, b, 0o600)
		return dir
	}
	if _, _, err := recoverFrom(t, s.keyring, s.store, false); err != nil {
		t.Fatalf("control: %v", err)
	}
	// A bit of the body (the first chunk: the head) of backup N.
	_, _, err := recoverFrom(t, s.keyring, flip(last.Object, format.HeaderLen+3), false)
	if !errors.Is(err, ErrUnverifiedFreshness) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("backup N altered: %v", err)
	}
	// Its header: it no longer opens as ours at all.
	_, _, err = recoverFrom(t, s.keyring, flip(last.Object, 20), false)
	if !errors.Is(err, ErrUnverifiedFreshness) {
		t.Fatalf("backup N's header altered: %v", err)
	}
	// Backup N-1 altered: N is still trusted; N-1 is reported.
	_, rep, err := recoverFrom(t, s.keyring, flip(prev.Object, format.HeaderLen+3), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backup.Sequence != last.Sequence || len(rep.Unknown) != 1 || rep.Unknown[0] != prev.Object {
		t.Fatalf("report %+v", rep)
	}
}

// TestChooseBackup covers the rule's cases on made-up backups: the exact
// record, a chain above it (a crash before the keyring update), a line of
// backups that does not descend from the record (an abandoned one), a gap.
func TestChooseBackup(t *testing.T) {
	h := func(b byte) (x [32]byte) { x[0] = b; return }
	mk := func(seq uint64, hash, prev byte) *backupCand {
		return &backupCand{name: fmt.Sprintf("b%d-%d", seq, hash), head: &format.CatalogBackup{Sequence: seq, Previous: h(prev)}, hash: h(hash)}
	}
	hashOf := func(c *backupCand) (bool, error) { return !c.damaged, nil }
	f := keyring.Freshness{Sequence: 5, Hash: h(5)}
	for _, c := range []struct {
		name  string
		cands []*backupCand
		want  string
	}{
		{"exact", []*backupCand{mk(5, 5, 4), mk(4, 4, 3)}, "b5-5"},
		{"exact, other hash", []*backupCand{mk(5, 9, 4)}, ""},
		{"one above", []*backupCand{mk(6, 6, 5), mk(5, 5, 4)}, "b6-6"},
		{"one above, the recorded one gone", []*backupCand{mk(6, 6, 5)}, "b6-6"},
		{"two above", []*backupCand{mk(7, 7, 6), mk(6, 6, 5)}, "b7-7"},
		{"two above, middle gone", []*backupCand{mk(7, 7, 6), mk(5, 5, 4)}, "b5-5"},
		{"abandoned line above", []*backupCand{mk(9, 19, 18), mk(8, 18, 17), mk(6, 16, 15), mk(5, 5, 4)}, "b5-5"},
		{"older only", []*backupCand{mk(4, 4, 3)}, ""},
		{"none", nil, ""},
	} {
		got, err := chooseBackup(c.cands, f, hashOf)
		if err != nil {
			t.Fatal(err)
		}
		name := ""
		if got != nil {
			name = got.name
		}
		if name != c.want {
			t.Errorf("%s: chose %q, want %q", c.name, name, c.want)
		}
	}
	// A damaged link breaks the chain.
	mid := mk(6, 6, 5)
	mid.damaged = true
	if got, _ := chooseBackup([]*backupCand{mk(7, 7, 6), mid}, f, hashOf); got != nil {
		t.Errorf("chain through a damaged backup chose %s", got.name)
	}
}

// TestBackupRetention: only the newest Keep backups stay, in the store and
// the catalog; verify is clean, and a retired backup put back by the
// provider is reported.
func TestBackupRetention(t *testing.T) {
	e := newEnv(t)
	var all []*BackupResult
	for i := range 4 {
		e.put("b12", "k", []byte{byte(i)})
		all = append(all, e.backup())
	}
	// init wrote 1; these are 2-5; keep 3.
	for i, b := range all {
		_, err := os.Stat(e.storePath(b.Object))
		if gone := i == 0; gone != os.IsNotExist(err) {
			t.Fatalf("backup %d: stat %v", b.Sequence, err)
		}
	}
	for i, want := range []int{0, 0, 1, 1} {
		if all[i].Removed != want {
			t.Fatalf("backup %d removed %d older ones, want %d", all[i].Sequence, all[i].Removed, want)
		}
	}
	sys, _ := e.r.Catalog().SystemObjects(context.Background())
	n := 0
	for _, so := range sys {
		if so.Kind == catalog.KindBackup {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("catalog knows %d backups", n)
	}
	e.mustVerifyClean()
}

// TestBackupAfterAnotherProcess: a second handle on the same home whose
// keyring copy is stale still backs up: it follows the catalog's last
// backup and reloads the keyring it may not overwrite blindly.
func TestBackupAfterAnotherProcess(t *testing.T) {
	e := newEnv(t)
	other, err := Open(context.Background(), OpenOptions{Home: e.home, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a := e.backup()
	b, err := other.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Sequence != a.Sequence+1 {
		t.Fatalf("sequences %d then %d", a.Sequence, b.Sequence)
	}
	k, _ := recoverableKeyringFreshness(t, mustReadFile(t, filepath.Join(e.home, KeyringFile)))
	if k.Sequence != b.Sequence {
		t.Fatalf("keyring records %d, want %d", k.Sequence, b.Sequence)
	}
}

func mustReadFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMaybeBackup: the policy writes a backup after EveryChanges changes,
// or once EveryMinutes have passed and anything changed; not otherwise.
// Close writes it for a Repo with AutoBackup when the catalog changed.
func TestMaybeBackup(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	clock := time.Now()
	e.hooks = &Hooks{Now: func() time.Time { return clock }}
	e.reopen()
	e.r.cfg.Backup = &BackupConfig{EveryChanges: 3, EveryMinutes: 10, Keep: 3}
	seq := func() uint64 {
		t.Helper()
		b, err := e.r.Catalog().LastBackup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return b.Sequence
	}
	maybe := func(want bool) {
		t.Helper()
		before := seq()
		res, err := e.r.MaybeBackup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := res != nil; got != want || (want && seq() != before+1) {
			t.Fatalf("backup written: %v, want %v", got, want)
		}
	}
	maybe(false) // nothing changed since init's backup
	e.put("b12", "1", nil)
	e.put("b12", "2", nil) // 2 object changes (+ bucket and its key: 4 changes)
	maybe(true)
	e.put("b12", "3", nil)
	maybe(false) // one change, a minute has not passed
	clock = clock.Add(9 * time.Minute)
	maybe(false)
	clock = clock.Add(time.Minute)
	maybe(true) // ten minutes and a change
	clock = clock.Add(time.Hour)
	maybe(false) // an hour but no change

	// AutoBackup: Close backs up a catalog that changed, not one that did not.
	e.r.cfg.Backup = &BackupConfig{EveryChanges: 1}
	before := seq()
	var reported *BackupResult
	if err := e.r.AutoBackup(ctx, func(r *BackupResult, err error) { reported = r }); err != nil {
		t.Fatal(err)
	}
	e.r.Close()
	e.reopen()
	if seq() != before || reported != nil {
		t.Fatal("Close backed up an unchanged catalog")
	}
	e.r.cfg.Backup = &BackupConfig{EveryChanges: 1}
	if err := e.r.AutoBackup(ctx, func(r *BackupResult, err error) { reported = r }); err != nil {
		t.Fatal(err)
	}
	e.put("b12", "4", nil)
	e.r.Close()
	e.reopen()
	if seq() != before+1 || reported == nil || reported.Sequence != before+1 {
		t.Fatalf("Close after a change: sequence %d, reported %+v", seq(), reported)
	}
}

// TestBackupIsOpaque: a backup in the store is a padded system object
// that reveals no name it holds.
func TestBackupIsOpaque(t *testing.T) {
	e := newEnv(t)
	e.put("secret-bucket", "private/report.txt", []byte("x"))
	b := e.backup()
	raw := mustReadFile(t, e.storePath(b.Object))
	for _, n := range []string{"secret-bucket", "private", "report.txt"} {
		if bytes.Contains(raw, []byte(n)) {
			t.Fatalf("backup reveals %q", n)
		}
	}
	if int64(len(raw)) != b.Stored || len(raw) < format.MinStored || len(raw)%256 != 0 {
		t.Fatalf("backup stored as %d bytes (reported %d)", len(raw), b.Stored)
	}
	id, _ := format.ParseStoreName(b.Object)
	if k, _ := e.r.Catalog().Lookup(context.Background(), id); k != catalog.KnownSystem {
		t.Fatalf("backup known as %d", k)
	}
}

// TestBackupCrash: a backup killed at each point of its order of
// operations (store write, catalog commit, keyring update, retention)
// leaves a repository that (1) recovers from the store with the keyring as
// left, without the freshness flag, from a backup the keyring vouches
// for, and (2) carries on: cleanup, a clean verify, a new backup that the
// keyring records.
func TestBackupCrash(t *testing.T) {
	for _, c := range []struct {
		point string
		seq   uint64 // the backup recovery starts from
	}{
		{"store:put-mid", 3},
		{"store:rename", 3},
		{"backup:stored", 4},    // an orphan in the store, one above the keyring
		{"backup:committed", 4}, // in the catalog, not yet in the keyring
		{"backup:recorded", 4},
		{"store:delete-begin", 4}, // retention of backup 1
	} {
		t.Run(c.point, func(t *testing.T) {
			e := newEnv(t)
			e.put("crash", "obj", oldData)
			e.backup()
			e.put("crash", "more", newData)
			e.backup() // 3 backups: the fourth retires the first
			e.r.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+c.point, crashHomeEnv+"="+e.home, crashOpEnv+"=backup")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die at %s: %v\n%s", c.point, err, out)
			}

			// (1) The home is lost now.
			s := e.snap()
			r, rep, err := recoverFrom(t, s.keyring, s.store, false)
			if err != nil {
				t.Fatalf("recovery after a crash at %s: %v", c.point, err)
			}
			if rep.Freshness != FreshnessVerified || rep.Backup == nil || rep.Backup.Sequence != c.seq || len(rep.Unknown) != 0 {
				t.Fatalf("recovery report %+v", rep)
			}
			r.mustGet("crash", "obj", oldData)
			r.mustGet("crash", "more", newData)
			r.mustVerifyClean()

			// (2) The home survives and the next run carries on.
			e.reopen()
			if _, err := e.r.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.mustVerifyClean()
			b := e.backup()
			if b.Sequence <= 3 {
				t.Fatalf("backup after the crash has sequence %d", b.Sequence)
			}
			if f, _ := e.r.kr.Freshness(); f.Sequence != b.Sequence {
				t.Fatalf("keyring records %d, want %d", f.Sequence, b.Sequence)
			}
			e.mustVerifyClean()
		})
	}
}

// TestRecoverRefusesResurrection: the provider keeps the ciphertext of
// versions that were replaced or deleted before the last backup and puts
// it back. A verified recovery must not make them current again (the
// backup's reservations rule them out), while an object written after the
// backup — equally unlisted — is recovered; and versions never repeat, so
// a put-back older version cannot beat a newer genuine one later.
func TestRecoverRefusesResurrection(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("beta", "k", []byte("version one"))
	e.put("beta", "k", []byte("version two"))
	ent, err := e.r.Stat(ctx, "beta", "k")
	if err != nil || ent.Version != 2 {
		t.Fatalf("stat: %+v %v", ent, err)
	}
	v2 := mustReadFile(t, storeFile(e.store, format.StoreName(ent.ObjectID)))
	if _, err := e.r.Delete(ctx, "beta", "k"); err != nil {
		t.Fatal(err)
	}
	e.put("beta", "replaced", []byte("old"))
	old, _ := e.r.Stat(ctx, "beta", "replaced")
	oldBytes := mustReadFile(t, storeFile(e.store, format.StoreName(old.ObjectID)))
	e.put("beta", "replaced", []byte("new"))
	e.backup()
	e.put("beta", "after", []byte("written after the backup")) // the control
	e.r.Close()
	s := e.snap()
	// The provider puts back both superseded versions.
	for id, b := range map[keys.ID][]byte{ent.ObjectID: v2, old.ObjectID: oldBytes} {
		p := storeFile(s.store, format.StoreName(id))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	r, rep, err := recoverFrom(t, s.keyring, s.store, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Freshness != FreshnessVerified || rep.Stale != 2 || rep.AfterBackup != 1 {
		t.Fatalf("report: freshness %s, stale %d (want 2), after backup %d (want 1)", rep.Freshness, rep.Stale, rep.AfterBackup)
	}
	r.reopen()
	if _, err := r.r.Stat(ctx, "beta", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted beta/k came back: %v", err)
	}
	r.mustGet("beta", "replaced", []byte("new"))
	r.mustGet("beta", "after", []byte("written after the backup"))
	r.mustVerifyClean()

	// A second loss and recovery, from the backup the first recovery
	// wrote (its catalog has no history, only restored reservations): the
	// provider puts v2 back once more, and it stays out.
	r.r.Close()
	s2 := r.snap()
	p := storeFile(s2.store, format.StoreName(ent.ObjectID))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, v2, 0o600); err != nil {
		t.Fatal(err)
	}
	r2, rep2, err := recoverFrom(t, s2.keyring, s2.store, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Freshness != FreshnessVerified || rep2.Stale != 1 || rep2.Backup == nil || rep2.Backup.Encoding != 2 {
		t.Fatalf("second recovery: freshness %s, stale %d (want 1), backup %+v", rep2.Freshness, rep2.Stale, rep2.Backup)
	}
	r2.reopen()
	if _, err := r2.r.Stat(ctx, "beta", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second recovery: deleted beta/k came back: %v", err)
	}
	r2.mustGet("beta", "after", []byte("written after the backup"))
	// Versions continue above every version the backups reserved.
	r2.put("beta", "k", []byte("version three"))
	if got, _ := r2.r.Stat(ctx, "beta", "k"); got.Version != 3 {
		t.Fatalf("beta/k after recovery got version %d, want 3", got.Version)
	}
}

// shortList is a store whose listing leaves out one name, as a provider
// hiding an object or a glitching listing would.
type shortList struct {
	store.Store
	hide string
}

func (s shortList) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(o store.ObjectInfo) error {
		if o.Name == s.hide {
			return nil
		}
		return fn(o)
	})
}

// TestRecoverShortListing: an object the backup lists but the listing
// omits is kept when the store still has it, and dropped (reported
// missing) only when the store says it is gone.
func TestRecoverShortListing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("alpha", "hidden", []byte("still stored"))
	ent, _ := e.r.Stat(ctx, "alpha", "hidden")
	e.put("alpha", "other", []byte("x"))
	e.backup()
	e.r.Close()
	s := e.snap()
	name := format.StoreName(ent.ObjectID)
	for _, gone := range []bool{false, true} {
		home, st := lostHome(t, s.keyring, s.store)
		if gone {
			if err := os.Remove(storeFile(st, name)); err != nil {
				t.Fatal(err)
			}
		}
		r, rep, err := Recover(ctx, RecoverOptions{Home: home, StorePath: st, Passphrase: pass,
			Hooks: &Hooks{WrapStore: func(s store.Store) store.Store { return shortList{s, name} }}})
		if err != nil {
			t.Fatalf("gone=%v: %v", gone, err)
		}
		_, statErr := r.Stat(ctx, "alpha", "hidden")
		r.Close()
		switch {
		case !gone && (statErr != nil || len(rep.Missing) != 0):
			t.Fatalf("hidden but stored: stat %v, missing %v", statErr, rep.Missing)
		case gone && (!errors.Is(statErr, ErrNotFound) || len(rep.Missing) != 1 || rep.Missing[0] != "alpha/hidden"):
			t.Fatalf("gone: stat %v, missing %v", statErr, rep.Missing)
		}
	}
}

// TestBackupDuringPendingPut: a backup taken while an overwrite is stored
// but not yet committed must not reserve the pending version, so that the
// overwrite, committed after the backup, is recovered as current rather
// than ruled out as stale.
func TestBackupDuringPendingPut(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("alpha", "doc", []byte("v1"))
	e.r.Close()
	backedUp := false
	e.hooks = &Hooks{At: func(p string) {
		if p == "put:stored" && !backedUp {
			backedUp = true
			if _, err := e.r.Backup(ctx); err != nil {
				t.Errorf("backup during the put: %v", err)
			}
		}
	}}
	e.reopen()
	e.put("alpha", "doc", []byte("v2, committed after the backup"))
	if !backedUp {
		t.Fatal("the hook never ran")
	}
	e.r.Close()
	s := e.snap()
	r, rep, err := recoverFrom(t, s.keyring, s.store, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stale != 0 || rep.AfterBackup != 1 {
		t.Fatalf("report: stale %d (want 0), after backup %d (want 1)", rep.Stale, rep.AfterBackup)
	}
	r.reopen()
	r.mustGet("alpha", "doc", []byte("v2, committed after the backup"))
}
