package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
)

func cpLine(seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"time":"2026-11-27T12:00:00Z","kind":"checkpoint","op":"checkpoint","prev":"ab","mac":"cd"}`, seq)
}

// auditCheckpointNames lists the audit checkpoints the catalog records.
func (e *env) auditCheckpointNames() []string {
	e.t.Helper()
	sos, err := e.r.cat.SystemObjects(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, so := range sos {
		if so.Kind == catalog.KindCheckpoint {
			names = append(names, format.StoreName(so.ObjectID))
		}
	}
	return names
}

func (e *env) mustPutCheckpoint(line []byte) {
	e.t.Helper()
	if err := e.r.PutAuditCheckpoint(context.Background(), line); err != nil {
		e.t.Fatal(err)
	}
}

func TestAuditCheckpointsRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if cps, err := e.r.AuditCheckpoints(ctx); err != nil || len(cps) != 0 {
		t.Fatalf("a new repository: %d checkpoints, %v", len(cps), err)
	}
	e.mustPutCheckpoint(cpLine(0))
	e.mustPutCheckpoint(cpLine(5))
	cps, err := e.r.AuditCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || !bytes.Equal(cps[0].Line, cpLine(0)) || !bytes.Equal(cps[1].Line, cpLine(5)) || cps[0].Err != nil || cps[1].Err != nil {
		t.Fatalf("checkpoints %+v", cps)
	}
	// A system object: sealed, opaque, known to verify, not a stranger.
	raw, err := os.ReadFile(e.storePath(cps[1].Object))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(`"seq"`)) {
		t.Fatal("the checkpoint line is in the clear in the store")
	}
	e.mustVerifyClean()
	// Reading them is the audit's own business: not counted as key use.
	e.reopen()
	if _, err := e.r.AuditCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	if u := e.r.KeyUseCounts(); u.RootUnwraps != 0 {
		t.Fatalf("AuditCheckpoints counted %d root unwraps", u.RootUnwraps)
	}
	// A line the format refuses is not stored.
	if err := e.r.PutAuditCheckpoint(ctx, []byte("a\nb")); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("a line with a newline: %v", err)
	}
}

func TestAuditCheckpointsPruned(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for i := range AuditCheckpointsKept {
		e.mustPutCheckpoint(cpLine(i))
	}
	// Control: exactly the number kept, nothing pruned yet.
	names := e.auditCheckpointNames()
	if len(names) != AuditCheckpointsKept {
		t.Fatalf("%d checkpoints after %d puts", len(names), AuditCheckpointsKept)
	}
	first := names[0]
	for i := AuditCheckpointsKept; i < AuditCheckpointsKept+3; i++ {
		e.mustPutCheckpoint(cpLine(i))
	}
	cps, err := e.r.AuditCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != AuditCheckpointsKept {
		t.Fatalf("%d checkpoints kept, want %d", len(cps), AuditCheckpointsKept)
	}
	// The oldest went, from the catalog and the store; the newest stayed.
	if !bytes.Equal(cps[0].Line, cpLine(3)) || !bytes.Equal(cps[len(cps)-1].Line, cpLine(AuditCheckpointsKept+2)) {
		t.Fatalf("kept %s … %s", cps[0].Line, cps[len(cps)-1].Line)
	}
	if _, err := os.Stat(e.storePath(first)); !os.IsNotExist(err) {
		t.Fatalf("the oldest checkpoint is still stored: %v", err)
	}
	e.mustVerifyClean()
}

// The provider deletes or edits a checkpoint object: verify reports it
// (the control: untouched, clean), and AuditCheckpoints returns it with
// its error, not as a line.
func TestAuditCheckpointDamage(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		damage func(e *env, path string)
		status Status
	}{
		{"untouched", func(*env, string) {}, ""},
		{"deleted", func(e *env, p string) { os.Remove(p) }, StatusMissing},
		{"edited", func(e *env, p string) { flip(e.t.(*testing.T), p, format.HeaderLen+3) }, StatusAltered},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustPutCheckpoint(cpLine(0))
			e.mustPutCheckpoint(cpLine(9))
			name := e.auditCheckpointNames()[1]
			c.damage(e, e.storePath(name))
			_, fs := e.verify()
			cps, err := e.r.AuditCheckpoints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(cps) != 2 {
				t.Fatalf("%d checkpoints", len(cps))
			}
			if c.status == "" {
				if len(fs) != 0 || cps[1].Err != nil {
					t.Fatalf("control: findings %+v, checkpoint error %v", fs, cps[1].Err)
				}
				return
			}
			wantDamage(t, fs, map[Status]string{c.status: name})
			if fs[0].Kind != "audit checkpoint" {
				t.Errorf("finding kind %q", fs[0].Kind)
			}
			if cps[1].Err == nil || cps[1].Line != nil || cps[0].Err != nil {
				t.Fatalf("damaged checkpoint read back: %+v", cps)
			}
		})
	}
}

// A checkpoint object sealed under another repository's keys — whole and
// valid-looking — is refused: put beside ours it is unknown to verify and
// not read as a checkpoint; put in place of ours it does not open.
func TestAuditCheckpointForged(t *testing.T) {
	ctx := context.Background()
	other := newEnv(t)
	other.mustPutCheckpoint(cpLine(99))
	forged, err := os.ReadFile(other.storePath(other.auditCheckpointNames()[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		plant func(e *env, ours string) string // returns the name it wrote
		want  Status
	}{
		{"control: our own copied back", func(e *env, ours string) string {
			b, err := os.ReadFile(e.storePath(ours))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.storePath(ours), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return ours
		}, ""},
		{"injected beside ours", func(e *env, ours string) string {
			name := other.auditCheckpointNames()[0]
			os.MkdirAll(filepath.Dir(e.storePath(name)), 0o700)
			if err := os.WriteFile(e.storePath(name), forged, 0o600); err != nil {
				t.Fatal(err)
			}
			return name
		}, StatusUnknown},
		{"in place of ours", func(e *env, ours string) string {
			if err := os.WriteFile(e.storePath(ours), forged, 0o600); err != nil {
				t.Fatal(err)
			}
			return ours
		}, StatusAltered},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustPutCheckpoint(cpLine(1))
			ours := e.auditCheckpointNames()[0]
			planted := c.plant(e, ours)
			_, fs := e.verify()
			cps, err := e.r.AuditCheckpoints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if len(fs) != 0 || len(cps) != 1 || cps[0].Err != nil {
					t.Fatalf("control: findings %+v, checkpoints %+v", fs, cps)
				}
				return
			}
			if len(fs) != 1 || fs[0].Name != planted || fs[0].Status == StatusOK {
				t.Fatalf("findings %+v", fs)
			}
			if c.want == StatusUnknown && fs[0].Status != StatusUnknown {
				t.Fatalf("injected: %s", fs[0].Status)
			}
			for _, cp := range cps {
				if bytes.Equal(cp.Line, cpLine(99)) {
					t.Fatal("the forged checkpoint was read as ours")
				}
			}
			if c.want != StatusUnknown && (len(cps) != 1 || cps[0].Err == nil) {
				t.Fatalf("replaced checkpoint read back: %+v", cps)
			}
		})
	}
}

// Recovery rebuilds the catalog's records of the checkpoints from the
// store (backups do not list them), and keeps a forged one out.
func TestRecoverAuditCheckpoints(t *testing.T) {
	ctx := context.Background()
	other := newEnv(t)
	other.mustPutCheckpoint(cpLine(99))
	forgedName := other.auditCheckpointNames()[0]
	forged, err := os.ReadFile(other.storePath(forgedName))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.put("bkt", "k", []byte("data"))
	if _, err := e.r.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	e.mustPutCheckpoint(cpLine(0))
	e.mustPutCheckpoint(cpLine(4))
	os.MkdirAll(filepath.Dir(e.storePath(forgedName)), 0o700)
	if err := os.WriteFile(e.storePath(forgedName), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	e.r.Close()
	kr, err := os.ReadFile(filepath.Join(e.home, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(e.home)
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, KeyringFile), kr, 0o600)
	r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, StorePath: e.store, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if len(rep.Unknown) != 1 || rep.Unknown[0] != forgedName {
		t.Fatalf("unknown %v, want the forged checkpoint %s", rep.Unknown, forgedName)
	}
	cps, err := e.r.AuditCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || !bytes.Equal(cps[0].Line, cpLine(0)) || !bytes.Equal(cps[1].Line, cpLine(4)) {
		t.Fatalf("recovered checkpoints %+v", cps)
	}
	os.Remove(e.storePath(forgedName))
	e.mustVerifyClean()
}

// keys rewrap seals the checkpoints again under the primary root key
// version, so that retiring the old one leaves them readable.
func TestAuditCheckpointsRewrapped(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.mustPutCheckpoint(cpLine(2))
	if _, err := e.r.RotateRootKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.RewrapRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.r.RetireRootKey(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cps, err := e.r.AuditCheckpoints(ctx)
	if err != nil || len(cps) != 1 || !bytes.Equal(cps[0].Line, cpLine(2)) {
		t.Fatalf("after rewrap and retire: %+v %v", cps, err)
	}
	e.mustVerifyClean()
}
