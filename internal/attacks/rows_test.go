package attacks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/testutil/faultproxy"
)

// journalOf is the store name of the key journal entry that holds the
// current key of bucket.
func journalOf(t *testing.T, w *world, bucket string) string {
	t.Helper()
	r := w.openRepo(t)
	defer r.Close()
	b, err := r.Bucket(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	bks, err := r.Catalog().BucketKeys(context.Background(), b.ID)
	if err != nil || len(bks) == 0 {
		t.Fatalf("bucket keys of %s: %v", bucket, err)
	}
	return format.StoreName(bks[len(bks)-1].JournalID)
}

// systemNames are the store names of the system objects of a kind (2
// journal entry, 3 catalog backup, 4 marker), newest first.
func systemNames(t *testing.T, w *world, kind int) []string {
	t.Helper()
	r := w.openRepo(t)
	defer r.Close()
	sys, err := r.Catalog().SystemObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(sys) - 1; i >= 0; i-- {
		if sys[i].Kind == kind {
			out = append(out, format.StoreName(sys[i].ObjectID))
		}
	}
	return out
}

// laterUnderTrueKey proves the data key of o's header is wrapped under
// the bucket key the catalog holds (unwrapped with the keyring), not
// under anything the provider served.
func laterUnderTrueKey(t *testing.T, w *world, o *obj) {
	t.Helper()
	r := w.openRepo(t)
	defer r.Close()
	bk := bucketKeyOf(t, r, o.bucket)
	name := w.storeName(t, o.bucket, o.key)
	h, err := format.ParseHeader(w.prov.read(t, name)[:hdr])
	if err != nil {
		t.Fatal(err)
	}
	id, _ := format.ParseStoreName(name)
	k, err := keys.UnwrapSoftware(bk.key, bk.dataAD(r, id), h.Wrapped)
	if err != nil {
		t.Fatalf("the later upload's data key is not wrapped under the true bucket key: %v", err)
	}
	k.Wipe()
}

// forgeMetadata is the provider rewriting what it stores about an object
// besides its bytes.
func forgeMetadata(t *testing.T, w *world, name string) {
	t.Helper()
	switch p := w.prov.(type) {
	case *localProvider:
		old := time.Date(1990, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := os.Chtimes(p.path(name), old, old); err != nil {
			t.Fatal(err)
		}
	case *s3Provider:
		key := s3Prefix + name
		_, err := p.c.CopyObject(context.Background(), &s3.CopyObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(key),
			CopySource: aws.String(p.bucket + "/" + key), MetadataDirective: types.MetadataDirectiveReplace,
			Metadata:    map[string]string{"origin": "forged", "holdfast": "size=1"},
			ContentType: aws.String("text/x-forged"), CacheControl: aws.String("forged"), ContentDisposition: aws.String("attachment; filename=forged")})
		if err != nil {
			t.Fatal(err)
		}
		h, err := p.c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(key)})
		if err != nil || h.Metadata["origin"] != "forged" || aws.ToString(h.ContentType) != "text/x-forged" {
			t.Fatalf("the provider's metadata edit did not take: %v %+v", err, h)
		}
	}
}

// A15 on the local store: the store answers a read with an error (the
// object's file replaced by a directory: verify reports the object
// unchecked and the directory as a stranger). On S3: resets, 500s, 503s,
// stalls and short or stalled bodies injected by the fault proxy in front
// of versitygw — transient ones are retried to a byte-exact read,
// persistent ones fail clearly, and no reader ever releases wrong bytes.
func a15(t *testing.T, w *world) {
	big := newObj("row-a15", "big", bigSize)
	n := setup(t, w, big)
	if w.kind == "local" {
		variant(t, w, "read error", func(t *testing.T, tp *tamper) {
			tp.remove(t, n["big"])
			p := w.prov.(*localProvider).path(n["big"])
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			w.expectRefused(t, allReaders, *big, exitCouldNotRead, 0)
			// The object cannot be checked; the directory in its place is
			// a stranger only the provider can have put there (unknown,
			// damage); and the run goes on past them.
			w.expectVerify(t, map[string]string{"row-a15/big": "unchecked", n["big"][:2] + "/" + n["big"] + "/": "unknown"})
		})
		done(t, w)
		return
	}
	fp := sharedS3(t).fault
	defer fp.Set(faultproxy.Schedule{})
	// Transient: the first few requests of each read fail, every kind of
	// fault in turn; the read must come out byte-exact.
	t.Run("transient", func(t *testing.T) {
		for i, kinds := range [][]faultproxy.Kind{
			{faultproxy.ResetBefore, faultproxy.InternalError},
			{faultproxy.ResetAfter, faultproxy.SlowDown},
			{faultproxy.ShortBody, faultproxy.StallBody},
			{faultproxy.Stall},
		} {
			for _, s := range []string{"cli", "gateway", "verify"} {
				before := fp.Faults().Total()
				fp.Set(faultproxy.Schedule{Seed: uint64(i + 1), Rate: 1, Mix: kinds, Limit: len(kinds)})
				switch s {
				case "cli":
					w.expectIntact(t, surfaces{cli: true}, *big)
				case "gateway":
					w.expectIntact(t, surfaces{gateway: true}, *big)
				case "verify":
					w.expectVerify(t, nil)
				}
				fp.Set(faultproxy.Schedule{})
				if got := fp.Faults().Total() - before; got == 0 {
					t.Fatalf("%v through %s: no fault was injected", kinds, s)
				}
			}
		}
	})
	// Persistent: every request fails; each reader fails clearly, exit 6
	// (could not check), and releases nothing it did not authenticate.
	for _, kinds := range [][]faultproxy.Kind{
		{faultproxy.InternalError, faultproxy.ResetBefore, faultproxy.SlowDown},
		{faultproxy.ShortBody},
	} {
		t.Run("persistent "+kinds[0].String(), func(t *testing.T) {
			fp.Set(faultproxy.Schedule{Seed: 7, Rate: 1, Mix: kinds})
			defer fp.Set(faultproxy.Schedule{})
			w.expectRefused(t, allReaders, *big, 6, 0)
			if code, _, _ := w.verify(t); code != 6 {
				t.Fatalf("verify while the store fails: exit %d, want 6 (could not check)", code)
			}
		})
	}
	done(t, w)
}

// a3Keyring lowers the keyring's Argon2id parameters below the floor (a
// downgrade to make the passphrase cheaper to guess) and keeps the file's
// checksum right: every command, and the gateway, refuses the keyring
// before deriving anything. It runs on a repository of its own so the
// shared gateway keeps its keyring.
func a3Keyring(t *testing.T, kind string) {
	w := newWorld(t, kind, "row-a3-kdf-"+kind)
	o := newObj("kdf", "o", 1000)
	w.put(t, o.bucket, o.key, o.truth)
	kr := filepath.Join(w.home, repo.KeyringFile)
	genuine, err := os.ReadFile(kr)
	if err != nil {
		t.Fatal(err)
	}
	w.expectIntact(t, allReaders, *o) // control: CLI and a gateway on this home
	w.gw.stop(t)
	w.gw = nil
	for _, c := range []struct {
		name  string
		edit  func(h []byte)
		words string
	}{
		{"memory 64 MiB to 8 MiB", func(h []byte) { binary.BigEndian.PutUint32(h[14:18], 8<<10) }, "memory"},
		{"time cost to 0", func(h []byte) { binary.BigEndian.PutUint32(h[10:14], 0) }, "time cost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(genuine)
			c.edit(b[:63])
			sum := sha256.Sum256(b[:len(b)-32])
			copy(b[len(b)-32:], sum[:])
			if err := os.WriteFile(kr, b, 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(kr, genuine, 0o600)
			out := filepath.Join(w.dir, "kdf.out")
			r := w.cli(t, "get", o.path(), out)
			if r.code != 5 || !strings.Contains(string(r.stderr), c.words) || !strings.Contains(string(r.stderr), "below") {
				t.Fatalf("get with a downgraded keyring: %v; want exit 5 naming the %s as below the minimum", r, c.words)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("get with a downgraded keyring wrote a file")
			}
			if r := w.cli(t, "verify", "--json"); r.code != 5 {
				t.Fatalf("verify with a downgraded keyring: %v", r)
			}
			if g, err := startServe(w, "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"); err == nil {
				g.kill()
				t.Fatal("holdfast serve started with a downgraded keyring")
			} else if !strings.Contains(err.Error(), c.words) {
				t.Fatalf("holdfast serve with a downgraded keyring: %v", err)
			}
		})
	}
	w.expectIntact(t, surfaces{cli: true}, *o) // the genuine keyring is back
}

// backupJSON is `holdfast backup --json`.
type backupJSON struct {
	Sequence uint64 `json:"sequence"`
	Object   string `json:"object"`
}

// recoverIn runs `holdfast recover --json` in a new home holding only the
// world's keyring and config: a catalog lost, rebuilt from the store.
func recoverIn(t *testing.T, w *world) (*world, cliResult) {
	t.Helper()
	dir, err := os.MkdirTemp(suiteDir, w.name+"-recover-")
	if err != nil {
		t.Fatal(err)
	}
	c := *w
	c.dir, c.home, c.gw = dir, filepath.Join(dir, "home"), nil
	if err := os.Mkdir(c.home, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{repo.KeyringFile, repo.ConfigFile} {
		b, err := os.ReadFile(filepath.Join(w.home, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.home, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &c, c.cli(t, "recover", "--json")
}

// a12Backup rolls the catalog backups back: the newest one deleted, or
// replaced by an older genuine one. Recovery refuses (exit 7) and names
// the sequences; verify names the backup; with the store intact the same
// recovery succeeds. On a repository of its own, since recovery writes.
func a12Backup(t *testing.T, kind string) {
	w := newWorld(t, kind, "row-a12-backup-"+kind)
	x, y := newObj("fresh", "x", 1000), newObj("fresh", "y", 2000)
	w.put(t, x.bucket, x.key, x.truth)
	var b2, b3 backupJSON
	json.Unmarshal(w.must(t, "backup", "--json").stdout, &b2)
	w.put(t, y.bucket, y.key, y.truth)
	json.Unmarshal(w.must(t, "backup", "--json").stdout, &b3)
	if b3.Sequence != b2.Sequence+1 || b2.Object == "" || b3.Object == "" {
		t.Fatalf("backups: %+v then %+v", b2, b3)
	}
	w.expectVerify(t, nil)
	refused := func(t *testing.T) {
		t.Helper()
		_, r := recoverIn(t, w)
		if r.code != 7 || !strings.Contains(string(r.stderr), "sequence") {
			t.Fatalf("recover from rolled-back backups: %v; want exit 7 naming the sequences", r)
		}
	}
	variant(t, w, "newest backup deleted", func(t *testing.T, tp *tamper) {
		tp.remove(t, b3.Object)
		refused(t)
		w.expectVerify(t, map[string]string{b3.Object: "missing"})
	})
	variant(t, w, "newest backup replaced by the older one", func(t *testing.T, tp *tamper) {
		tp.write(t, b3.Object, w.prov.read(t, b2.Object))
		refused(t)
		// The older backup is shorter: verify reports the length first.
		w.expectVerify(t, map[string]string{b3.Object: "truncated"})
	})
	// Control: the same recovery from the intact store succeeds and
	// brings back both objects.
	rw, r := recoverIn(t, w)
	if r.code != 0 {
		t.Fatalf("control: recover from the intact store: %v", r)
	}
	rw.expectIntact(t, surfaces{cli: true}, *x)
	rw.expectIntact(t, surfaces{cli: true}, *y)
}
