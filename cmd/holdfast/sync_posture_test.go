package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
)

// TestSyncStopsWhenPostureFails: a sync keeps applying the posture policy
// while it runs. Here the policy file changes mid-sync to one this host
// fails (it requires a confidential VM) and SIGHUP asks for a re-check:
// the sync stops with exit 8 naming the check, having wiped its keys, and
// a rerun under the original policy carries on and completes. Control:
// the same sync, with the same SIGHUP at the same point but the policy
// unchanged, completes.
func TestSyncStopsWhenPostureFails(t *testing.T) {
	c := newCLI(t)
	policy := filepath.Join(t.TempDir(), "policy")
	writePolicy := func(body string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("profile baseline\n")
	t.Setenv("HOLDFAST_POLICY", policy)
	c.must("init")
	tree := func(name string) string {
		d := filepath.Join(t.TempDir(), name)
		for i := range 30 {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d", i)), []byte(strings.Repeat("x", 100+i)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	// hupAtFirstWrite changes the policy (to body, if not empty) at the
	// sync's first write and waits for the re-check SIGHUP asks for.
	hupAtFirstWrite := func(body string) *error {
		var outcome error
		checked := make(chan error, 1)
		var once sync.Once
		c.hooks = &repo.Hooks{
			PostureChecked: func(err error) { checked <- err },
			At: func(p string) {
				if p != "put:pending" && p != "putmany:stored" {
					return
				}
				once.Do(func() {
					if body != "" {
						writePolicy(body)
					}
					if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
						t.Error(err)
					}
					outcome = <-checked
				})
			},
		}
		return &outcome
	}
	files := func(bucket string) int {
		code, out, _ := c.run("ls", bucket)
		if code != 0 {
			return 0
		}
		return strings.Count(out, "\n")
	}

	// Control: a re-check mid-sync under the same policy changes nothing.
	outcome := hupAtFirstWrite("")
	if code, _, errs := c.run("sync", tree("a"), "bkt/a"); code != 0 || *outcome != nil {
		t.Fatalf("sync with the policy met: exit %d (re-check: %v)\n%s", code, *outcome, errs)
	}
	if n := files("bkt/a"); n != 30 {
		t.Fatalf("control: %d files synced, want 30", n)
	}

	// The policy now requires what this host lacks: the sync stops.
	b := tree("b")
	outcome = hupAtFirstWrite("profile baseline\ncvm.type require\n")
	code, _, errs := c.run("sync", b, "bkt/b")
	if !errors.Is(*outcome, posture.ErrSealed) {
		t.Errorf("the re-check: %v, want sealed", *outcome)
	}
	if code != exitPosture || !strings.Contains(errs, "cvm.type") || !strings.Contains(errs, "stopped") {
		t.Fatalf("sync when the posture fails: exit %d\n%s", code, errs)
	}
	if n := files("bkt/b"); n == 30 {
		t.Fatalf("the stopped sync wrote all %d files", n)
	}

	// Back to a policy the host meets: the rerun carries on and completes.
	writePolicy("profile baseline\n")
	c.hooks = nil
	c.must("sync", b, "bkt/b")
	if n := files("bkt/b"); n != 30 {
		t.Fatalf("after the rerun: %d files, want 30", n)
	}
	c.must("verify")
}
