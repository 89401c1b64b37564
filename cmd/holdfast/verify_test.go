package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store"
)

// verifyLine is the monitoring line's grammar (docs/cli.md): every field,
// in order.
var verifyLine = regexp.MustCompile(`^holdfast-verify: status=(clean|damaged|could-not-check|interrupted) complete=(yes|no) ` +
	`mode=(full|quick) sample=[0-9.]+% checked=\d+ ok=\d+ damaged=\d+ missing=\d+ altered=\d+ truncated=\d+ ` +
	`rolled_back=\d+ swapped=\d+ unknown=\d+ pending=\d+ unchecked=\d+ unsampled=\d+ cleaned=\d+ bytes=\d+ duration=[0-9.]+s$`)

// cli runs the holdfast command in this process, in one home.
type cli struct {
	t     *testing.T
	home  string
	hooks *repo.Hooks
}

func newCLI(t *testing.T) *cli {
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	home := filepath.Join(t.TempDir(), "home")
	t.Setenv("HOLDFAST_HOME", home)
	t.Setenv("HOLDFAST_PASSPHRASE", "pw-for-verify-tests")
	return &cli{t: t, home: home}
}

func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb, c.hooks)
	return code, out.String(), errb.String()
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("holdfast %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// storeFile is the local store's file of bucket/key.
func (c *cli) storeFile(obj string) string {
	c.t.Helper()
	var ent jsonEntry
	if err := json.Unmarshal([]byte(c.must("--json", "stat", obj)), &ent); err != nil {
		c.t.Fatal(err)
	}
	return filepath.Join(c.home, "store", ent.Object[:2], ent.Object)
}

// summary checks that exactly one monitoring line was printed, last in
// its stream, and returns its fields.
func summary(t *testing.T, stream string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stream, "\n"), "\n")
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "holdfast-verify:") {
			n++
		}
	}
	last := lines[len(lines)-1]
	if n != 1 || !verifyLine.MatchString(last) {
		t.Fatalf("want one monitoring line, last; got %d in:\n%s", n, stream)
	}
	m := map[string]string{}
	for _, f := range strings.Fields(last)[1:] {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func wantFields(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("summary %s=%s, want %s (%v)", k, got[k], v, got)
		}
	}
}

// failingStore fails reads of the names in down (or all reads, or the
// listing) as an unreachable store does.
type failingStore struct {
	store.Store
	mu     sync.Mutex
	down   map[string]bool
	list   bool
	onRead func(ctx context.Context)
}

func (f *failingStore) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if f.onRead != nil {
		f.onRead(ctx)
	}
	f.mu.Lock()
	down := f.down[name]
	f.mu.Unlock()
	if down {
		return nil, fmt.Errorf("read %s: %w", name, store.ErrUnavailable)
	}
	return f.Store.ReadRange(ctx, name, off, length)
}

func (f *failingStore) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if f.list {
		return fmt.Errorf("list: %w", store.ErrUnavailable)
	}
	return f.Store.List(ctx, prefix, fn)
}

// TestVerifyExitCodes: verify exits 0 clean, 4 damaged, 6 could not check
// (some objects, or the whole store), each with its monitoring line, and
// each next to its control.
func TestVerifyExitCodes(t *testing.T) {
	c := newCLI(t)
	tree := t.TempDir()
	for i := range 30 {
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%02d.txt", i)), bytes.Repeat([]byte{byte('a' + i%26)}, 100+i), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.must("init")
	c.must("put", "-r", tree, "docs/t")

	// Clean.
	code, out, _ := c.run("verify")
	if code != exitOK {
		t.Fatalf("clean verify: exit %d", code)
	}
	wantFields(t, summary(t, out), map[string]string{"status": "clean", "complete": "yes", "checked": "33", "ok": "33", "damaged": "0", "unchecked": "0"})

	// Damaged: one object altered by the provider.
	file := c.storeFile("docs/t/f07.txt")
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[300] ^= 1
	if err := os.WriteFile(file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = c.run("verify")
	if code != exitDamaged || !strings.Contains(out, "altered      docs/t/f07.txt") {
		t.Fatalf("damaged verify: exit %d\n%s", code, out)
	}
	wantFields(t, summary(t, out), map[string]string{"status": "damaged", "complete": "yes", "damaged": "1", "altered": "1", "ok": "32"})
	// The same in JSON: the JSON on standard output, the line on standard error.
	code, out, errs := c.run("--json", "verify")
	var doc struct {
		Verdict  string
		Complete bool
		Summary  repo.VerifySummary
		Findings []repo.Finding
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if code != exitDamaged || doc.Verdict != "damaged" || !doc.Complete || len(doc.Findings) != 1 ||
		doc.Findings[0].Status != repo.StatusAltered || doc.Findings[0].Key != "t/f07.txt" || doc.Summary.Counts[repo.StatusAltered] != 1 {
		t.Fatalf("verify --json: exit %d, %+v", code, doc)
	}
	wantFields(t, summary(t, errs), map[string]string{"status": "damaged", "altered": "1"})
	// Control: put back, clean again.
	if err := os.WriteFile(file, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := c.run("--json", "verify"); code != exitOK || !strings.Contains(out, `"verdict": "clean"`) || !strings.Contains(out, `"findings": []`) {
		t.Fatalf("repaired: exit %d\n%s", code, out)
	}

	// Could not check one object: the store does not answer for it. Not
	// clean, not damaged: exit 6.
	fs := &failingStore{down: map[string]bool{filepath.Base(file): true}}
	c.hooks = &repo.Hooks{WrapStore: func(s store.Store) store.Store { fs.Store = s; return fs }}
	code, out, errs = c.run("verify")
	if code != exitUnchecked || strings.Contains(out, ": clean:") {
		t.Fatalf("one object unreachable: exit %d\n%s%s", code, out, errs)
	}
	wantFields(t, summary(t, out), map[string]string{"status": "could-not-check", "complete": "yes", "unchecked": "1", "damaged": "0"})
	// The whole store unreachable: exit 6, nothing checked.
	fs.list = true
	code, out, _ = c.run("verify", "--quick")
	if code != exitUnchecked {
		t.Fatalf("store unreachable: exit %d", code)
	}
	wantFields(t, summary(t, out), map[string]string{"status": "could-not-check", "complete": "no", "mode": "quick"})
	// Control: the same wrapper, the store answering.
	fs.list = false
	clear(fs.down)
	if code, out, _ := c.run("verify"); code != exitOK {
		t.Fatalf("store answers again: exit %d\n%s", code, out)
	}
}

// TestVerifyFlags: --sample and --jobs are read and reported; bad values
// are usage errors.
func TestVerifyFlags(t *testing.T) {
	c := newCLI(t)
	tree := t.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%02d", i)), []byte(fmt.Sprint(i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.must("init")
	c.must("put", "-r", tree, "bkt/t")
	for _, s := range []string{"20%", "0.2"} {
		code, out, _ := c.run("verify", "--sample", s, "--jobs", "3")
		m := summary(t, out)
		if code != exitOK || m["sample"] != "20%" || m["unsampled"] == "0" || m["checked"] != "53" {
			t.Fatalf("--sample %s: exit %d, %v", s, code, m)
		}
	}
	for _, args := range [][]string{{"--sample", "20"}, {"--sample", "0"}, {"--sample", "x%"}, {"--jobs", "-1"}} {
		if code, _, errs := c.run(append([]string{"verify"}, args...)...); code != exitUsage {
			t.Fatalf("verify %v: exit %d, %s", args, code, errs)
		}
	}
}

// TestVerifyInterruptResume: an interrupt (SIGINT) stops verify with exit
// 130 and status=interrupted; --resume finishes it with the same findings
// and verdict as a whole run (the control).
func TestVerifyInterruptResume(t *testing.T) {
	c := newCLI(t)
	tree := t.TempDir()
	for i := range 40 {
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%02d", i)), bytes.Repeat([]byte{'x'}, 200+i), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.must("init")
	c.must("put", "-r", tree, "bkt/t")
	for _, k := range []string{"bkt/t/f05", "bkt/t/f30"} {
		if err := os.Truncate(c.storeFile(k), 1000); err != nil {
			t.Fatal(err)
		}
	}
	code, whole, _ := c.run("verify", "--jobs", "2")
	if code != exitDamaged {
		t.Fatalf("whole run: exit %d", code)
	}
	findings := func(out string) []string {
		var fs []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "truncated ") {
				fs = append(fs, l)
			}
		}
		return fs
	}
	if len(findings(whole)) != 2 {
		t.Fatalf("whole run:\n%s", whole)
	}

	var reads atomic.Int32
	fs := &failingStore{onRead: func(ctx context.Context) {
		if reads.Add(1) == 20 {
			// The interrupt arrives mid-run; this read waits for it to land.
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			<-ctx.Done()
		}
	}}
	c.hooks = &repo.Hooks{WrapStore: func(s store.Store) store.Store { fs.Store = s; return fs }}
	code, out, _ := c.run("verify", "--jobs", "1")
	switch code {
	case exitInterrupt:
		wantFields(t, summary(t, out), map[string]string{"status": "interrupted", "complete": "no"})
	case exitDamaged:
		// Damage found before the interrupt landed outranks it.
		wantFields(t, summary(t, out), map[string]string{"status": "damaged", "complete": "no"})
	default:
		t.Fatalf("interrupted: exit %d\n%s", code, out)
	}
	c.hooks = nil
	code, out, _ = c.run("verify", "--resume")
	if code != exitDamaged {
		t.Fatalf("resumed: exit %d\n%s", code, out)
	}
	if got, want := findings(out), findings(whole); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("resumed findings %q, whole run %q", got, want)
	}
	wantFields(t, summary(t, out), map[string]string{"status": "damaged", "complete": "yes", "truncated": "2", "checked": "43"})
}
