package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// Crash tests: a child process (this test binary, re-executed) runs one
// operation and kills itself with SIGKILL at a named point. The parent
// then checks the repository as the next run finds it.

const (
	crashEnv     = "HOLDFAST_TEST_CRASH_AT"
	crashHomeEnv = "HOLDFAST_TEST_CRASH_HOME"
	crashOpEnv   = "HOLDFAST_TEST_CRASH_OP"
)

var (
	oldData = bytes.Repeat([]byte("old version "), 50000)
	newData = bytes.Repeat([]byte("NEW VERSION "), 60000)
)

func crashChild() int {
	defer keyring.SetInsecureTestParamsForTesting()()
	point := os.Getenv(crashEnv)
	die := crashSelf
	hooks := &Hooks{
		At: func(p string) {
			if p == point {
				die()
			}
		},
		BeforeRename: func(string) {
			if point == "store:rename" {
				die()
			}
		},
		WrapStore: func(s store.Store) store.Store {
			return storetest.NewFaulty(s, func(p storetest.Point) error {
				if "store:"+string(p.Phase) == point {
					die()
				}
				return nil
			})
		},
	}
	ctx := context.Background()
	r, err := Open(ctx, OpenOptions{Home: os.Getenv(crashHomeEnv), Passphrase: pass, Hooks: hooks})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer r.Close()
	switch os.Getenv(crashOpEnv) {
	case "overwrite":
		_, err = r.Put(ctx, "crash", "obj", bytes.NewReader(newData), PutOptions{})
	case "rm":
		_, err = r.Delete(ctx, "crash", "obj")
	case "new-bucket":
		_, err = r.Put(ctx, "fresh", "obj", bytes.NewReader(newData), PutOptions{})
	case "put-many":
		var items []PutItem
		for _, k := range []string{"obj", "many-1", "many-2"} {
			items = append(items, PutItem{Key: k, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(newData)), nil }})
		}
		err = r.PutMany(ctx, "crash", items, nil)
	case "backup":
		_, err = r.Backup(ctx)
	case "mp-part", "mp-complete":
		err = crashMultipart(ctx, os.Getenv(crashOpEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0 // the crash point was never reached
}

// crashSelf kills this process at once.
func crashSelf() { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }

func TestCrashSafety(t *testing.T) {
	cases := []struct {
		op, point string
		committed bool // the crash comes after the catalog commit
	}{
		{"overwrite", "put:pending", false},
		{"overwrite", "store:put-begin", false},
		{"overwrite", "store:put-mid", false},
		{"overwrite", "store:rename", false},
		{"overwrite", "store:put-end", false},
		{"overwrite", "put:stored", false},
		{"overwrite", "put:committed", true},
		{"overwrite", "store:delete-begin", true},
		{"overwrite", "store:delete-end", true},
		{"rm", "rm:committed", true},
		{"rm", "store:delete-begin", true},
		{"new-bucket", "store:put-mid", false},
		{"new-bucket", "store:put-end", false},
		{"new-bucket", "store:rename", false},
		{"new-bucket", "system:stored", false},
		{"put-many", "store:put-mid", false},
		{"put-many", "putmany:stored", false},
		{"put-many", "putmany:synced", false},
		{"put-many", "putmany:committed", true},
	}
	for _, c := range cases {
		t.Run(c.op+"/"+c.point, func(t *testing.T) {
			e := newEnv(t)
			e.put("crash", "obj", oldData)
			e.r.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+c.point, crashHomeEnv+"="+e.home, crashOpEnv+"="+c.op)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die at %s: %v\n%s", c.point, err, out)
			}

			e.reopen()
			ctx := context.Background()
			// The state is consistent before any cleanup: the catalog's
			// current version reads.
			switch {
			case c.op == "rm" && c.committed:
				if _, err := e.get("crash", "obj"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("after a committed rm: %v", err)
				}
			case (c.op == "overwrite" || c.op == "put-many") && c.committed:
				e.mustGet("crash", "obj", newData)
			default:
				e.mustGet("crash", "obj", oldData)
			}
			if c.op == "new-bucket" {
				if _, err := e.get("fresh", "obj"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("uncommitted object visible: %v", err)
				}
			}
			if c.op == "put-many" && !c.committed {
				if _, err := e.get("crash", "many-1"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("uncommitted object visible: %v", err)
				}
			}
			// The next run's cleanup removes leftovers; verify is clean.
			if _, err := e.r.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			e.mustVerifyClean()
			// A rerun succeeds.
			switch c.op {
			case "overwrite":
				e.put("crash", "obj", newData)
				e.mustGet("crash", "obj", newData)
			case "rm":
				if _, err := e.r.Delete(ctx, "crash", "obj"); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			case "new-bucket":
				e.put("fresh", "obj", newData)
				e.mustGet("fresh", "obj", newData)
			case "put-many":
				e.put("crash", "many-1", newData)
				e.mustGet("crash", "many-1", newData)
			}
			e.mustVerifyClean()
			// Nothing but live objects and their system objects remain.
			n := 0
			e.r.Store().List(ctx, "", func(store.ObjectInfo) error { n++; return nil })
			cnt, _ := e.r.Catalog().Count(ctx)
			sys, _ := e.r.Catalog().SystemObjects(ctx)
			if int64(n) != cnt+int64(len(sys)) {
				t.Fatalf("store holds %d objects, catalog knows %d + %d system", n, cnt, len(sys))
			}
		})
	}
}

// TestMisjudgedOrphanCannotCommit: if another process wrongly cleans up a
// live write (removes its pending record and stored object), that write
// fails instead of recording an object that is gone; the previous version
// still reads. Control: the same put without the interference succeeds.
func TestMisjudgedOrphanCannotCommit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("crash", "obj", oldData)
	interfere := true
	e.hooks = &Hooks{At: func(p string) {
		if p != "put:stored" || !interfere {
			return
		}
		pend, err := e.r.Catalog().ListPending(ctx)
		if err != nil {
			t.Error(err)
		}
		for _, p := range pend {
			e.r.Store().Delete(ctx, format.StoreName(p.ObjectID))
			e.r.Catalog().AbortPut(ctx, p.ObjectID)
		}
	}}
	e.reopen()
	if _, err := e.r.Put(ctx, "crash", "obj", bytes.NewReader(newData), PutOptions{}); !errors.Is(err, catalog.ErrNotPending) {
		t.Fatalf("put after its pending record was removed: %v", err)
	}
	e.mustGet("crash", "obj", oldData)
	e.mustVerifyClean()
	interfere = false
	e.put("crash", "obj", newData)
	e.mustGet("crash", "obj", newData)
}
