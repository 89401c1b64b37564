package repo

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
)

// TestRestoreDrillSiblings: a second home recovered from the same store
// (a restore drill) leaves the first home's catalog backups alone, and
// each home's verify reports the other's backups as sibling — authentic,
// named, not damage — until it adopts them, after which its backup
// retention deletes them in turn. What else the drill home writes under
// the same keys (a key journal entry) stays unknown to the first home,
// named from its authenticated contents.
func TestRestoreDrillSiblings(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("photos", "a", random(100))
	if _, err := e.r.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	e.put("photos", "b", random(100))
	if _, err := e.r.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	e.mustVerifyClean() // the control: before the drill

	// The drill: the keyring copied into a new home, recovered from the
	// first home's store itself.
	kr, err := os.ReadFile(filepath.Join(e.home, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "drill")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, KeyringFile), kr, 0o600); err != nil {
		t.Fatal(err)
	}
	r, rep, err := Recover(ctx, RecoverOptions{Home: home, StorePath: e.store, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	d := &env{t: t, home: home, store: e.store, r: r}
	t.Cleanup(func() { d.r.Close() })
	if rep.NewBackup == nil || rep.LeftBackups != 3 {
		t.Fatalf("recover report: %+v", rep)
	}

	// The first home: the drill's backup is a sibling, named; nothing of
	// its own is missing.
	sum, fs := e.verify()
	if sum.Damaged() || sum.Siblings() != 1 || len(fs) != 1 || fs[0].Status != StatusSibling ||
		fs[0].Name != rep.NewBackup.Object || fs[0].What == "" || fs[0].Kind != format.KindBackup.String() {
		t.Fatalf("first home after the drill: %+v %+v", sum, fs)
	}
	if !regexp.MustCompile(`^catalog backup 4 of \S+Z$`).MatchString(fs[0].What) {
		t.Fatalf("what: %q", fs[0].What)
	}
	// The drill home: the three it found are siblings to it.
	dsum, dfs := d.verify()
	if dsum.Damaged() || dsum.Siblings() != 3 || len(dfs) != 3 {
		t.Fatalf("drill home: %+v %+v", dsum, dfs)
	}

	// The drill home writes a key journal entry (a new bucket): the first
	// home does not list it, so it is damage there, but named.
	d.put("drill", "x", random(10))
	_, fs = e.verify()
	var journal *Finding
	for i := range fs {
		if fs[i].Status == StatusUnknown && fs[i].Kind == format.KindJournal.String() {
			journal = &fs[i]
		}
	}
	if journal == nil || !regexp.MustCompile(`^key journal entry of \S+Z: bucket drill key v1$`).MatchString(journal.What) {
		t.Fatalf("the drill's journal entry in the first home: %+v", fs)
	}
	if err := os.Remove(e.storePath(journal.Name)); err != nil { // the drill is over
		t.Fatal(err)
	}
	if err := os.Remove(e.storePath(d.nameOf("drill", "x"))); err != nil {
		t.Fatal(err)
	}

	// Adopted, the sibling is the first home's: clean, and deleted by
	// retention once three newer backups exist.
	if _, err := e.r.Verify(ctx, VerifyOptions{AdoptSiblings: true}, func(Finding) {}); err != nil {
		t.Fatal(err)
	}
	e.mustVerifyClean()
	for range 3 {
		if _, err := e.r.Backup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(e.storePath(rep.NewBackup.Object)); !os.IsNotExist(err) {
		t.Fatalf("the adopted backup is still stored after three newer ones: %v", err)
	}
	e.mustVerifyClean()
}
