package repo

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestStoreFreshnessRecordLayout recomputes the sealed record from
// docs/format.md ("Store freshness record") and the standard library
// alone, pins it with a golden digest, and checks that opening refuses
// an edited record, another repository's and another key's — each beside
// the record as written, which opens.
func TestStoreFreshnessRecordLayout(t *testing.T) {
	root := bytes.Repeat([]byte{9}, 32)
	var id keys.ID
	for i := range id {
		id[i] = byte(i + 1)
	}
	okm, err := hkdf.Key(sha256.New, root, id[:], "holdfast/v1/derived/store-freshness", 32)
	if err != nil {
		t.Fatal(err)
	}
	key, err := secret.FromBytes(bytes.Clone(okm)) // FromBytes clears what it is given
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	f := keyring.Freshness{Sequence: 42, Time: time.Unix(0, 1_700_000_000_123_456_789)}
	for i := range f.Hash {
		f.Hash[i] = byte(0xa0 + i)
	}
	got, err := sealStoreFreshness(key, id, 3, f)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{1}
	body = append(body, id[:]...)
	body = binary.BigEndian.AppendUint32(body, 3)
	body = binary.BigEndian.AppendUint64(body, 42)
	body = append(body, f.Hash[:]...)
	body = binary.BigEndian.AppendUint64(body, 1_700_000_000_123_456_789)
	m := hmac.New(sha256.New, okm)
	m.Write([]byte("holdfast/v1/store-freshness"))
	m.Write(body)
	want := m.Sum(body)
	if !bytes.Equal(got, want) || len(got) != 101 {
		t.Fatalf("sealed record\n%x\nwant (format.md)\n%x", got, want)
	}
	sum := sha256.Sum256(got)
	if g := hex.EncodeToString(sum[:8]); g != "2933602d6bf60474" {
		t.Errorf("golden digest %s changed", g)
	}
	keyFor := func(ver uint32) (secret.Key, error) {
		if ver != 3 {
			return secret.Key{}, errors.New("no such version")
		}
		return secret.FromBytes(bytes.Clone(okm))
	}
	back, err := openStoreFreshness(got, id, keyFor)
	if err != nil || back.Sequence != 42 || back.Hash != f.Hash || !back.Time.Equal(f.Time) {
		t.Fatalf("control: opened %+v, %v", back, err)
	}
	edited := bytes.Clone(got)
	edited[24] ^= 1 // the sequence
	other := id
	other[0] ^= 1
	otherKey := func(uint32) (secret.Key, error) { return secret.FromBytes(bytes.Repeat([]byte{1}, 32)) }
	for name, try := range map[string]func() error{
		"edited":          func() error { _, err := openStoreFreshness(edited, id, keyFor); return err },
		"other repo":      func() error { _, err := openStoreFreshness(got, other, keyFor); return err },
		"other key":       func() error { _, err := openStoreFreshness(got, id, otherKey); return err },
		"cut short":       func() error { _, err := openStoreFreshness(got[:100], id, keyFor); return err },
		"unknown version": func() error { b := bytes.Clone(got); b[0] = 2; _, err := openStoreFreshness(b, id, keyFor); return err },
	} {
		if err := try(); !errors.Is(err, errStoreFreshnessInvalid) {
			t.Errorf("%s: %v; want errStoreFreshnessInvalid", name, err)
		}
	}
}

// oldKeyringCase is a repository whose keyring is put back to an older
// copy after its catalog is lost: the copy records backup 2, while the
// store holds only backup 4 (keep = 1), whose chain does not reach 2.
type oldKeyringCase struct {
	dir, home string
	newest    *BackupResult
	// shards3 and shards4: per member directory name, the shard files
	// backups 3 and 4 added, with their contents (what a provider keeps).
	shards3, shards4 map[string][]fileCopy
}

type fileCopy struct {
	path string
	data []byte
}

// addedShards returns the files under dir that are not in before, but
// for the members' freshness record (named …-u).
func addedShards(t *testing.T, dir string, before map[string]bool) map[string][]fileCopy {
	t.Helper()
	out := map[string][]fileCopy{}
	for p := range memberFiles(t, dir) {
		if before[p] || strings.HasSuffix(p, "-u") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		m, _, _ := strings.Cut(rel, string(filepath.Separator))
		out[m] = append(out[m], fileCopy{p, b})
	}
	return out
}

func makeOldKeyringCase(t *testing.T, spreadStore bool) *oldKeyringCase {
	t.Helper()
	ctx := context.Background()
	c := &oldKeyringCase{dir: t.TempDir()}
	c.home = filepath.Join(c.dir, "home")
	o := InitOptions{Home: c.home, StorePath: filepath.Join(c.dir, "store"), Passphrase: pass, KDF: keyring.Calibrate(0)}
	if spreadStore {
		o.StorePath, o.Spread = "", spreadLayout(c.dir, "EU", "EU", "CH", "US", "JP")
	}
	r, err := Init(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cfg, err := loadConfig(c.home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backup = &BackupConfig{Keep: 1}
	if err := saveConfig(c.home, cfg); err != nil {
		t.Fatal(err)
	}
	r, err = Open(ctx, OpenOptions{Home: c.home, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, home: c.home, r: r}
	e.put("bkt", "one", random(5000))
	if res := e.backup(); res.Sequence != 2 || res.StoreRecorded != spreadStore {
		t.Fatalf("backup 2: %+v", res)
	}
	oldKR, err := os.ReadFile(filepath.Join(c.home, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	e.put("bkt", "two", random(6000))
	before := memberFiles(t, c.dir)
	e.backup()
	c.shards3 = addedShards(t, c.dir, before)
	e.put("bkt", "three", random(7000))
	before = memberFiles(t, c.dir)
	c.newest = e.backup()
	if c.newest.Sequence != 4 || c.newest.Removed != 1 {
		t.Fatalf("backup 4: %+v", c.newest)
	}
	c.shards4 = addedShards(t, c.dir, before)
	e.r.Close()
	// The home loses its catalog, and the keyring is put back from the
	// older copy.
	for _, f := range []string{CatalogFile, CatalogFile + "-wal", CatalogFile + "-shm"} {
		os.Remove(filepath.Join(c.home, f))
	}
	if err := os.WriteFile(filepath.Join(c.home, KeyringFile), oldKR, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// memberFiles lists every file under the member (or store) directories.
func memberFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "home" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out[p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *oldKeyringCase) recover(t *testing.T, accept bool) (*Repo, *RecoverReport, error) {
	t.Helper()
	r, rep, err := Recover(context.Background(), RecoverOptions{Home: c.home, Passphrase: pass, AcceptUnverifiedFreshness: accept})
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, rep, err
}

// TestRecoverVerifiedByStoreMembers: with a keyring copy too old to vouch
// for the store's backups, recovery from a spread store is verified
// against the record its members keep, and starts from the newest backup;
// the same on a single store refuses, as it always has (the control).
func TestRecoverVerifiedByStoreMembers(t *testing.T) {
	c := makeOldKeyringCase(t, true)
	r, rep, err := c.recover(t, false)
	if err != nil {
		t.Fatalf("recover from the spread store: %v", err)
	}
	if rep.Freshness != FreshnessVerifiedByStore || rep.Backup == nil || rep.Backup.Sequence != 4 ||
		rep.Keyring == nil || rep.Keyring.Sequence != 2 || rep.StoreRecord == nil || rep.StoreRecord.Sequence != 4 ||
		rep.StoreRecord.Agreed != 5 || rep.StoreRecord.Members != 5 || rep.StoreRecord.Hash != c.newest.Hash || rep.Objects != 3 {
		t.Fatalf("report: %+v (store record %+v)", rep, rep.StoreRecord)
	}
	e := &env{t: t, r: r}
	if got, err := e.get("bkt", "three"); err != nil || len(got) != 7000 {
		t.Fatalf("get three: %d bytes, %v", len(got), err)
	}
	// The new backup recovery ends with is recorded on the members too.
	if rep.NewBackup == nil || rep.NewBackup.Sequence != 5 || !rep.NewBackup.StoreRecorded {
		t.Fatalf("new backup: %+v %q", rep.NewBackup, rep.NewBackupError)
	}

	single := makeOldKeyringCase(t, false)
	_, _, err = single.recover(t, false)
	var fe *FreshnessError
	if !errors.As(err, &fe) || fe.Keyring == nil || fe.Keyring.Sequence != 2 || fe.Store != nil {
		t.Fatalf("recover from a single store with the old keyring: %v; want the refusal as before", err)
	}
}

// TestRecoverStoreRecordCatchesRollback plays N-K+1 = 3 colluding
// providers: they delete their shards of the newest backup (4) and put
// back those of backup 3, which they kept after it was retired. The store
// then offers backup 3, authentic, whose chain reaches the old keyring's
// record (2): the keyring alone would take it. The members' record still
// names backup 4, and recovery refuses, saying so. The control is the
// same case untouched, which recovers from backup 4.
func TestRecoverStoreRecordCatchesRollback(t *testing.T) {
	control := makeOldKeyringCase(t, true)
	if _, rep, err := control.recover(t, false); err != nil || rep.Backup == nil || rep.Backup.Sequence != 4 {
		t.Fatalf("control: %+v, %v", rep, err)
	}

	c := makeOldKeyringCase(t, true)
	for _, m := range []string{"member2", "member3", "member4"} {
		if len(c.shards4[m]) != 1 || len(c.shards3[m]) != 1 {
			t.Fatalf("%s: %d shard files of backup 4 and %d of backup 3, want 1 each", m, len(c.shards4[m]), len(c.shards3[m]))
		}
		if err := os.Remove(c.shards4[m][0].path); err != nil {
			t.Fatal(err)
		}
		f := c.shards3[m][0]
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := c.recover(t, false)
	var fe *FreshnessError
	if !errors.As(err, &fe) || fe.Store == nil || fe.Store.Sequence != 4 || fe.Store.Agreed != 5 || fe.Newest == nil || fe.Newest.Sequence != 3 ||
		!strings.Contains(fe.Problem, "5 of the store's 5 members") || !strings.Contains(fe.Problem, "holds the older sequence 2") ||
		!strings.Contains(fe.Problem, "rolled back") {
		t.Fatalf("recover after a rollback to backup 3: %v; want a refusal naming the members' record", err)
	}
	_, rep, err := c.recover(t, true)
	if err != nil || rep.Freshness != FreshnessUnverified || rep.Backup == nil || rep.Backup.Sequence != 3 ||
		rep.StoreRecord == nil || rep.StoreRecord.Sequence != 4 {
		t.Fatalf("recover with --accept-unverified-freshness: %+v, %v", rep, err)
	}
}

// TestBackupReportsStoreRecordFailure: when the members cannot take the
// freshness record (two of five gone between the backup and the record),
// the backup stands, the keyring records it, the command is told, and no
// older backup is deleted; the control — the same backup with every
// member there — records it on the members and retires the older one.
func TestBackupReportsStoreRecordFailure(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	home := filepath.Join(d, "home")
	r, err := Init(ctx, InitOptions{Home: home, Spread: spreadLayout(d, "EU", "EU", "CH", "US", "JP"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cfg, err := loadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backup = &BackupConfig{Keep: 1}
	if err := saveConfig(home, cfg); err != nil {
		t.Fatal(err)
	}
	armed := false
	gone := []string{"member3", "member4"}
	hooks := &Hooks{At: func(p string) {
		if p == "backup:committed" && armed {
			for _, m := range gone {
				if err := os.Rename(filepath.Join(d, m), filepath.Join(d, m+"-away")); err != nil {
					t.Error(err)
				}
			}
		}
	}}
	r, err = Open(ctx, OpenOptions{Home: home, Passphrase: pass, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close() }()
	res, err := r.Backup(ctx)
	if err != nil || !res.StoreRecorded || res.Removed != 1 {
		t.Fatalf("control: %+v, %v", res, err)
	}
	armed = true
	res, err = r.Backup(ctx)
	if !errors.Is(err, ErrStoreFreshnessNotRecorded) || errors.Is(err, ErrFreshnessNotRecorded) || res == nil ||
		res.StoreRecorded || res.Removed != 0 || !strings.Contains(err.Error(), "the store's members could not record the catalog backup") {
		t.Fatalf("backup with the members' record refused: %+v, %v", res, err)
	}
	if f, ok := r.kr.Freshness(); !ok || f.Sequence != res.Sequence {
		t.Fatalf("the keyring does not record backup %d: %+v", res.Sequence, f)
	}
	sr, err := r.readStoreFreshness(ctx)
	if err != nil || sr.f.Sequence != res.Sequence-1 {
		t.Fatalf("the members' record: %+v, %v; want the previous backup's", sr, err)
	}
	armed = false
	for _, m := range gone {
		if err := os.Rename(filepath.Join(d, m+"-away"), filepath.Join(d, m)); err != nil {
			t.Fatal(err)
		}
	}
	next, err := r.Backup(ctx)
	if err != nil || !next.StoreRecorded || next.Removed != 2 {
		t.Fatalf("next backup: %+v, %v", next, err)
	}
	if sr, err := r.readStoreFreshness(ctx); err != nil || sr.f.Sequence != next.Sequence || sr.agreed != 5 {
		t.Fatalf("the members' record after the next backup: %+v, %v", sr, err)
	}
}
