package repo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestNotAnObject: on a local store, something other than a file where an
// object should be — a directory, a FIFO, a symbolic link (looping, or to
// a file) — is an object that cannot be read, found in bounded time: get
// fails naming it (a FIFO once blocked the open for good, beyond any
// deadline), verify reports it unchecked — and what stands in its place
// as a stranger (unknown) — and goes on to check the objects after it (it
// used to stop there, every time), and recover keeps the backup's entry
// and reports it unreadable (it used to fail). Control:
// the same repository verifies clean before, and with the file put back
// the object reads again, through the recovered catalog.
func TestNotAnObject(t *testing.T) {
	for _, kind := range []string{"dir", "fifo", "symlink-loop", "symlink-to-file"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			data := map[string][]byte{}
			for _, k := range []string{"a", "b", "c", "d"} {
				data[k] = random(70000)
				e.put("bkt", k, data[k])
			}
			if _, err := e.r.Backup(ctx); err != nil {
				t.Fatal(err)
			}
			verify := func() (VerifySummary, map[string]Status) {
				t.Helper()
				vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				got := map[string]Status{}
				sum, err := e.r.Verify(vctx, VerifyOptions{}, func(f Finding) {
					if f.Key != "" {
						got[f.Key] = f.Status
					} else {
						got[f.Name] = f.Status // a stranger: by its store name
					}
				})
				if err != nil {
					t.Fatalf("verify: %v (findings %v)", err, got)
				}
				return sum, got
			}
			before, got := verify()
			if before.Verdict() != "clean" || len(got) != 0 || before.Counts[StatusOK] < 4 {
				t.Fatalf("control: verify before: %s %v %v", before.Verdict(), before.Counts, got)
			}

			p := e.storePath(e.nameOf("bkt", "b"))
			saved, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			switch kind {
			case "dir":
				err = os.Mkdir(p, 0o700)
			case "fifo":
				err = syscall.Mkfifo(p, 0o600)
			case "symlink-loop":
				err = os.Symlink(p, p)
			case "symlink-to-file":
				other := filepath.Join(t.TempDir(), "copy")
				if err = os.WriteFile(other, saved, 0o600); err == nil {
					err = os.Symlink(other, p)
				}
			}
			if err != nil {
				t.Fatal(err)
			}

			type result struct {
				b   []byte
				err error
			}
			done := make(chan result, 1)
			go func() { b, err := e.get("bkt", "b"); done <- result{b, err} }()
			select {
			case r := <-done:
				if r.err == nil || len(r.b) > 0 || !bytes.Contains([]byte(r.err.Error()), []byte("bkt/b")) {
					t.Fatalf("get: %d bytes, %v; want an error naming bkt/b and no bytes", len(r.b), r.err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("get still blocked after 20 s")
			}
			e.mustGet("bkt", "c", data["c"]) // the others still read

			// b cannot be checked; what stands in its place is a stranger
			// (only the provider can have put it there): unknown, damage.
			sum, got := verify()
			rel := filepath.Base(filepath.Dir(p)) + "/" + filepath.Base(p)
			if kind == "dir" {
				rel += "/"
			}
			if len(got) != 2 || got["b"] != StatusUnchecked || got[rel] != StatusUnknown || sum.Verdict() != VerdictDamaged {
				t.Errorf("verify: %s %v %v; want b unchecked and %s unknown, nothing else", sum.Verdict(), sum.Counts, got, rel)
			}
			if sum.Counts[StatusOK] != before.Counts[StatusOK]-1 {
				t.Errorf("verify: counts %v, before %v; want every other object checked ok", sum.Counts, before.Counts)
			}

			// Recover from the backup: b is kept and reported.
			e.r.Close()
			for _, s := range []string{"", "-wal", "-shm"} {
				os.Remove(filepath.Join(e.home, CatalogFile+s))
			}
			r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, Passphrase: pass})
			if err != nil {
				t.Fatalf("recover: %v", err)
			}
			e.r = r
			if len(rep.Unreadable) != 1 || rep.Unreadable[0] != "bkt/b" || len(rep.Missing) != 0 {
				t.Errorf("recover: unreadable %v, missing %v; want bkt/b unreadable, nothing missing", rep.Unreadable, rep.Missing)
			}
			os.Remove(p)
			if err := os.WriteFile(p, saved, 0o600); err != nil {
				t.Fatal(err)
			}
			for k, want := range data {
				e.mustGet("bkt", k, want)
			}
		})
	}
}
