package repo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSampleRepositories reads the sample repository of every released
// format version (testdata/sample/vN, made once by scripts/mksample.sh and
// never regenerated): recover its catalog from its store and keyring, then
// every object must read back exactly and verify must be clean. A change
// that breaks reading old repositories fails here.
func TestSampleRepositories(t *testing.T) {
	dirs, err := filepath.Glob("../../testdata/sample/v*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no sample repositories found (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ctx := context.Background()
			f, err := os.Open(filepath.Join(dir, "expected.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var pass string
			type want struct {
				obj, sum string
				size     int64
			}
			var wants []want
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if p, ok := strings.CutPrefix(line, "# passphrase: "); ok {
					pass = p
					continue
				}
				if strings.HasPrefix(line, "#") || line == "" {
					continue
				}
				fs := strings.Fields(line)
				n, _ := strconv.ParseInt(fs[2], 10, 64)
				wants = append(wants, want{fs[0], fs[1], n})
			}
			if pass == "" || len(wants) == 0 {
				t.Fatal("expected.txt names no passphrase or objects")
			}
			home := t.TempDir()
			kr, err := os.ReadFile(filepath.Join(dir, "keyring"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, KeyringFile), kr, 0o600); err != nil {
				t.Fatal(err)
			}
			st := filepath.Join(t.TempDir(), "store")
			if err := os.CopyFS(st, os.DirFS(filepath.Join(dir, "store"))); err != nil {
				t.Fatal(err)
			}
			// Samples predate catalog backups: their keyrings hold no
			// freshness record, so recovery needs the user's word, and
			// says so without it.
			if _, _, err := Recover(ctx, RecoverOptions{Home: home, StorePath: st, Passphrase: []byte(pass)}); !errors.Is(err, ErrUnverifiedFreshness) {
				t.Fatalf("recover without --accept-unverified-freshness: %v", err)
			}
			r, rep, err := Recover(ctx, RecoverOptions{Home: home, StorePath: st, Passphrase: []byte(pass), AcceptUnverifiedFreshness: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Freshness != FreshnessUnverified || rep.Backup != nil || rep.NewBackup == nil || rep.NewBackup.Sequence != 1 {
				t.Fatalf("recover report %+v", rep)
			}
			defer r.Close()
			if len(rep.Unknown) != 0 {
				t.Fatalf("unknown objects in the sample: %v", rep.Unknown)
			}
			for _, w := range wants {
				bucket, key, _ := strings.Cut(w.obj, "/")
				rd, err := r.OpenObject(ctx, bucket, key)
				if err != nil {
					t.Fatalf("%s: %v", w.obj, err)
				}
				h := sha256.New()
				n, err := rd.WriteTo(ctx, h)
				rd.Close()
				if err != nil || n != w.size || hex.EncodeToString(h.Sum(nil)) != w.sum {
					t.Fatalf("%s: read %d bytes (%v), want %d with sha256 %s", w.obj, n, err, w.size, w.sum)
				}
			}
			sum, err := r.Verify(ctx, VerifyOptions{}, func(f Finding) { t.Errorf("verify: %+v", f) })
			if err != nil || sum.Damaged() {
				t.Fatalf("verify: %+v %v", sum, err)
			}
		})
	}
}
