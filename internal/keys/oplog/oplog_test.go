package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

var testRepo = keys.ID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}

// fill appends n records to a new log in dir and returns its path.
func fill(t *testing.T, dir string, n int) string {
	t.Helper()
	p := Path(dir)
	l := New(p)
	for i := 1; i <= n; i++ {
		if err := l.Record(keys.Op{Op: "backup", Repo: testRepo, Source: keys.SourceKeyring, Versions: []uint32{1, uint32(i)},
			Detail: fmt.Sprintf("record %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func lines(t *testing.T, p string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

// TestRecordAndRead: records come back as written, in order, with seq
// counting from 1 and each prev the hash of the line before; the file is
// private and one line per record; Head is the last line's hash.
func TestRecordAndRead(t *testing.T) {
	dir := t.TempDir()
	when := time.Date(2025, 3, 4, 5, 6, 7, 890, time.FixedZone("CET", 3600))
	l := New(Path(dir))
	if err := l.Ready(); err != nil {
		t.Fatalf("a log not made yet is ready in a writable directory: %v", err)
	}
	ops := []keys.Op{
		{Time: when, Op: "create", Repo: testRepo, Source: keys.SourceKeyring, Versions: []uint32{1}, Detail: "store /srv/store"},
		{Op: "rotate", Repo: testRepo, Source: keys.SourcePKCS11, Versions: []uint32{2}, Detail: "root key v2 primary"},
		{Op: "unwrap-counts", Repo: testRepo, Source: keys.SourceKeyServer, Detail: "root-unwraps=3 bucket-key-cache-hits=120"},
	}
	for _, op := range ops {
		if err := l.Record(op); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	c, err := Read(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Records) != 3 {
		t.Fatalf("%d records, want 3", len(c.Records))
	}
	ls := lines(t, l.Path())
	prev := ""
	for i, r := range c.Records {
		if r.Seq != uint64(i+1) || r.Prev != prev || r.Op != ops[i].Op || r.Detail != ops[i].Detail ||
			r.Repo != "0123456789abcdeffedcba9876543210" || !reflect.DeepEqual(r.Versions, ops[i].Versions) {
			t.Errorf("record %d: %+v", i+1, r)
		}
		if r.Time.Location() != time.UTC || r.Time.IsZero() {
			t.Errorf("record %d: time %v, want UTC", i+1, r.Time)
		}
		prev = hashLine(bytes.TrimSuffix(ls[i], []byte("\n")))
	}
	if !c.Records[0].Time.Equal(when) {
		t.Errorf("time %v, want %v", c.Records[0].Time, when)
	}
	if want := `{"seq":1,"time":"2025-03-04T04:06:07.00000089Z","op":"create","repo":"0123456789abcdeffedcba9876543210","source":"keyring","versions":[1],"detail":"store /srv/store","prev":""}` + "\n"; string(ls[0]) != want {
		t.Errorf("line 1:\n%s\nwant\n%s", ls[0], want)
	}
	if got := []string{c.Records[0].Source, c.Records[1].Source, c.Records[2].Source}; strings.Join(got, ",") != "keyring,pkcs11,keyserver" {
		t.Errorf("sources %v", got)
	}
	if c.Head != prev {
		t.Errorf("head %s, want the last line's hash %s", c.Head, prev)
	}
	if err := l.Ready(); err != nil {
		t.Errorf("an intact log is not ready: %v", err)
	}
}

// TestOpHoldsNoSecret: keys.Op, all a record is made of, has exactly the
// fields below, none a secret. A new field must be looked at here.
func TestOpHoldsNoSecret(t *testing.T) {
	var got []string
	ty := reflect.TypeFor[keys.Op]()
	for i := range ty.NumField() {
		got = append(got, ty.Field(i).Name+" "+ty.Field(i).Type.String())
	}
	want := "Time time.Time, Op string, Repo keys.ID, Source keys.SourceKind, Versions []uint32, Detail string"
	if strings.Join(got, ", ") != want {
		t.Fatalf("keys.Op is %s, want %s: make sure no new field can carry key material, a share, a PIN or a passphrase, then update this test",
			strings.Join(got, ", "), want)
	}
}

// TestMissing: a log never written reads as fs.ErrNotExist; an empty
// file is an empty intact log.
func TestMissing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(Path(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing log: %v", err)
	}
	if err := os.WriteFile(Path(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Read(Path(dir))
	if err != nil || len(c.Records) != 0 || c.Head != "" {
		t.Fatalf("empty log: %+v, %v", c, err)
	}
}

// TestTamper: an edited line, a removed line, two swapped lines, lines
// removed from the start, a line re-encoded, and a cut last line are each
// found at the first line whose link fails; the untouched log passes
// first, every time.
func TestTamper(t *testing.T) {
	cases := []struct {
		name   string
		change func(ls [][]byte) [][]byte
		line   int
		reason string
	}{
		{"edited line 2", func(ls [][]byte) [][]byte {
			ls[1] = bytes.Replace(ls[1], []byte("record 2"), []byte("record X"), 1)
			return ls
		}, 3, "prev is not the SHA-256 of line 2"},
		{"line 2 removed", func(ls [][]byte) [][]byte { return append(ls[:1:1], ls[2:]...) }, 2, "seq 3 where 2 belongs"},
		{"lines 2 and 3 swapped", func(ls [][]byte) [][]byte {
			ls[1], ls[2] = ls[2], ls[1]
			return ls
		}, 2, "seq 3 where 2 belongs"},
		{"line 1 removed and the rest renumbered", func(ls [][]byte) [][]byte {
			ls = ls[1:]
			for i := range ls {
				ls[i] = bytes.Replace(ls[i], []byte(fmt.Sprintf(`"seq":%d,`, i+2)), []byte(fmt.Sprintf(`"seq":%d,`, i+1)), 1)
			}
			return ls
		}, 1, "names a line before it"},
		{"line 4 re-encoded with a space", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"op":`), []byte(`"op": `), 1)
			return ls
		}, 4, "not in the log's encoding"},
		{"line 4 with a field added", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`{"seq"`), []byte(`{"key":"00","seq"`), 1)
			return ls
		}, 4, "unknown field"},
		{"last line cut", func(ls [][]byte) [][]byte {
			ls[4] = ls[4][:len(ls[4])-10]
			return ls
		}, 5, "not a whole record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fill(t, t.TempDir(), 5)
			c, err := Read(p)
			if err != nil || len(c.Records) != 5 {
				t.Fatalf("the untouched log: %d records, %v", len(c.Records), err)
			}
			if err := os.WriteFile(p, bytes.Join(tc.change(lines(t, p)), nil), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err = Read(p)
			var be *BrokenError
			if !errors.As(err, &be) || !errors.Is(err, ErrBroken) || be.Line != tc.line || !strings.Contains(be.Reason, tc.reason) {
				t.Fatalf("got %v, want line %d: %q", err, tc.line, tc.reason)
			}
			if len(c.Records) != tc.line-1 {
				t.Errorf("%d records before the break, want %d", len(c.Records), tc.line-1)
			}
		})
	}
}

// TestLastLineNeedsAnchor: the chain cannot vouch for the last line (an
// edit of it, or its removal, leaves an intact chain), but the head
// changes: what an anchor keeping the head detects.
func TestLastLineNeedsAnchor(t *testing.T) {
	p := fill(t, t.TempDir(), 3)
	before, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(t, p)
	if err := os.WriteFile(p, bytes.Join(ls[:2], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := Read(p)
	if err != nil || len(after.Records) != 2 {
		t.Fatalf("without its last line: %d records, %v", len(after.Records), err)
	}
	if after.Head == before.Head || before.Head == "" {
		t.Fatalf("head did not change: %s", after.Head)
	}
}

// TestRefusesToAppendAfterCut: a log whose last line is cut takes no
// record (the next line could not name it) and Ready says so; the same
// log whole takes one.
func TestRefusesToAppendAfterCut(t *testing.T) {
	p := fill(t, t.TempDir(), 2)
	l := New(p)
	op := keys.Op{Op: "passwd", Repo: testRepo, Source: keys.SourceKeyring}
	whole, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, whole[:len(whole)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(); !errors.Is(err, ErrBroken) {
		t.Fatalf("Ready on a cut log: %v", err)
	}
	if err := l.Record(op); !errors.Is(err, ErrBroken) {
		t.Fatalf("Record on a cut log: %v", err)
	}
	if err := os.WriteFile(p, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(op); err != nil {
		t.Fatal(err)
	}
	if c, err := Read(p); err != nil || len(c.Records) != 3 {
		t.Fatalf("%d records, %v", len(c.Records), err)
	}
}

// TestNotAFile: a directory or a symbolic link where the log belongs
// takes no record (and is not ready); a file there does.
func TestNotAFile(t *testing.T) {
	op := keys.Op{Op: "passwd", Repo: testRepo, Source: keys.SourceKeyring}
	for _, what := range []string{"directory", "symlink"} {
		t.Run(what, func(t *testing.T) {
			dir := t.TempDir()
			p := Path(dir)
			target := filepath.Join(dir, "elsewhere")
			if what == "directory" {
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			if err := New(p).Ready(); err == nil {
				t.Error("Ready: no error")
			}
			if err := New(p).Record(op); err == nil {
				t.Fatal("Record: no error")
			}
			if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the symbolic link was followed: %v", err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := New(p).Record(op); err != nil {
				t.Fatalf("with the %s gone: %v", what, err)
			}
		})
	}
}

// TestConcurrentGoroutines: appends from many goroutines make one chain
// with every record in it.
func TestConcurrentGoroutines(t *testing.T) {
	p := Path(t.TempDir())
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := New(p)
			for i := range each {
				errs <- l.Record(keys.Op{Op: "unwrap-counts", Repo: testRepo, Source: keys.SourceKeyring, Detail: fmt.Sprintf("w%d-%d", w, i)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, p, workers*each)
}

// checkAll reads p, which must be intact, with n records of distinct
// details.
func checkAll(t *testing.T, p string, n int) {
	t.Helper()
	c, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range c.Records {
		seen[r.Detail] = true
	}
	if len(c.Records) != n || len(seen) != n {
		t.Fatalf("%d records, %d distinct, want %d", len(c.Records), len(seen), n)
	}
}

// helperEnv makes the test binary a process that appends records
// (TestConcurrentProcesses).
const helperEnv = "HOLDFAST_OPLOG_TEST_APPEND"

// TestConcurrentProcesses: three processes appending to the same log at
// once (each with a goroutine pair) make one chain with every record in
// it: the flock serialises them.
func TestConcurrentProcesses(t *testing.T) {
	if spec := os.Getenv(helperEnv); spec != "" {
		appendFromHelper(t, spec)
		return
	}
	p := Path(t.TempDir())
	const procs, each = 3, 40
	var cmds []*exec.Cmd
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d", helperEnv, p, i, each))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("process %d:\n%s", i, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, p, procs*each*2)
}

func appendFromHelper(t *testing.T, spec string) {
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		t.Fatalf("bad %s %q", helperEnv, spec)
	}
	each, err := strconv.Atoi(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := New(parts[0])
			for i := range each {
				if err := l.Record(keys.Op{Op: "unwrap-counts", Repo: testRepo, Source: keys.SourceKeyring,
					Detail: fmt.Sprintf("p%s-g%d-%d", parts[1], g, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
