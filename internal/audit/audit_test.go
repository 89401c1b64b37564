package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// testLog is an audit log in a temporary directory, with its K_0.
type testLog struct {
	dir, cp string
	k0      secret.Key
	w       *Writer
	mu      sync.Mutex // the clock is read from Async's goroutines too
	clock   time.Time
}

func newTestLog(t *testing.T, every int) *testLog {
	t.Helper()
	return newTestLogAt(t, every, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// newTestLogAt is newTestLog whose clock starts at start.
func newTestLogAt(t *testing.T, every int, start time.Time) *testLog {
	t.Helper()
	k0, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k0.Wipe)
	base := t.TempDir()
	l := &testLog{dir: filepath.Join(base, DirName), cp: filepath.Join(base, "offbox", "checkpoints.log"), k0: k0,
		clock: start}
	if err := os.MkdirAll(filepath.Dir(l.cp), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := Record{Format: recordFormat, Repo: "00", Checkpoints: l.cp}
	l.w, err = Create(l.dir, rec, k0, Options{Every: every, Now: l.now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *testLog) now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clock = l.clock.Add(time.Second)
	return l.clock
}

// readAll is Scan into a slice.
func readAll(dir string) ([]Entry, error) {
	var es []Entry
	err := Scan(dir, func(e Entry) error { es = append(es, e); return nil })
	return es, err
}

// fill appends n object entries, one call each.
func (l *testLog) fill(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.w.Append(Entry{Kind: KindObject, Actor: "AKIDTEST", Op: "PutObject", Subject: fmt.Sprintf("b/k%03d", i), Status: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
}

func (l *testLog) verify() (Report, error) { return Verify(l.dir, l.cp, l.k0) }

// mustVerify is every test's positive control: the log as it stands
// verifies.
func (l *testLog) mustVerify(t *testing.T) Report {
	t.Helper()
	rep, err := l.verify()
	if err != nil {
		t.Fatalf("control: the untouched log does not verify: %v", err)
	}
	return rep
}

func (l *testLog) lines(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, LogName))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte{'\n'})[:bytes.Count(b, []byte{'\n'})]
}

func (l *testLog) setLines(t *testing.T, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, LogName), bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func damage(t *testing.T, err error) *Damage {
	t.Helper()
	var d *Damage
	if !errors.As(err, &d) || !errors.Is(err, ErrDamaged) {
		t.Fatalf("verify: got %v, want a *Damage", err)
	}
	return d
}

func wantBadEntry(t *testing.T, err error, line int, reason string) {
	t.Helper()
	d := damage(t, err)
	if d.BadEntry == nil || d.BadEntry.Line != line || !strings.Contains(d.BadEntry.Reason, reason) {
		t.Fatalf("verify: got %v, want the first bad entry at line %d (%q)", err, line, reason)
	}
	if d.BadEntry.Seq != uint64(line-1) {
		t.Errorf("bad entry seq %d, want %d", d.BadEntry.Seq, line-1)
	}
}

// TestTamperDetected: each way of changing the log is named by verify at
// the first bad line. Control: the same log verifies before the change.
func TestTamperDetected(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, l *testLog, ls [][]byte) [][]byte
		line   int // first bad line
		reason string
	}{
		{"edit", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte("b/k003"), []byte("b/k999"), 1)
			return ls
		}, 5, "MAC"},
		{"edit status", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[6] = bytes.Replace(ls[6], []byte(`"status":"ok"`), []byte(`"status":"AccessDenied"`), 1)
			return ls
		}, 7, "MAC"},
		{"edit by hand (spacing)", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`,"kind"`), []byte(`, "kind"`), 1)
			return ls
		}, 5, "encoding"},
		{"delete", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			return append(ls[:4], ls[5:]...)
		}, 5, "seq 5 where 4 belongs"},
		{"delete first", func(t *testing.T, l *testLog, ls [][]byte) [][]byte { return ls[1:] }, 1, "seq 1 where 0 belongs"},
		{"reorder", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[4], ls[5] = ls[5], ls[4]
			return ls
		}, 5, "seq 5 where 4 belongs"},
		{"swap two lines", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[2], ls[8] = ls[8], ls[2]
			return ls
		}, 3, "seq 8 where 2 belongs"},
		{"truncate one line", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			ls[4] = append(ls[4][:len(ls[4])/2:len(ls[4])/2], '\n')
			return ls
		}, 5, "not an entry"},
		{"cut mid-line at the end", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			last := len(ls) - 1
			ls[last] = ls[last][:len(ls[last])/2]
			return ls
		}, 13, "not a whole entry"},
		{"forge with a wrong key", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			e, _ := parse(bytes.TrimSuffix(ls[4], []byte{'\n'}))
			e.Subject = "b/forged"
			wrong := make([]byte, 32)
			rand.Read(wrong)
			line, err := encode(e, wrong)
			if err != nil {
				t.Fatal(err)
			}
			ls[4] = append(line, '\n')
			return ls
		}, 5, "MAC"},
		{"forge a line at the end", func(t *testing.T, l *testLog, ls [][]byte) [][]byte {
			last, _ := parse(bytes.TrimSuffix(ls[len(ls)-1], []byte{'\n'}))
			wrong := make([]byte, 32)
			rand.Read(wrong)
			line, err := encode(Entry{Seq: last.Seq + 1, Time: last.Time, Kind: KindKey, Op: "rotate",
				Prev: hashLine(bytes.TrimSuffix(ls[len(ls)-1], []byte{'\n'}))}, wrong)
			if err != nil {
				t.Fatal(err)
			}
			return append(ls, append(line, '\n'))
		}, 14, "MAC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newTestLog(t, 100)
			l.fill(t, 11)
			if err := l.w.Close(); err != nil {
				t.Fatal(err)
			}
			rep := l.mustVerify(t) // control
			if rep.Entries != 13 || rep.LastSeq != 12 || rep.OffBox != 2 || rep.NewestOffBox != 12 {
				t.Fatalf("control report %+v: want 13 entries (genesis, 11, checkpoint), 2 off-box checkpoints", rep)
			}
			l.setLines(t, c.tamper(t, l, l.lines(t)))
			_, err := l.verify()
			wantBadEntry(t, err, c.line, c.reason)
		})
	}
}

// TestTruncatedTail: cutting whole lines off the end leaves a chain that
// holds, but the off-box checkpoint written at Close is out of reach.
// Control: the uncut log verifies, and an uncut log whose last checkpoint
// precedes later entries verifies too.
func TestTruncatedTail(t *testing.T) {
	for _, cut := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			l := newTestLog(t, 100)
			l.fill(t, 8)
			if err := l.w.Close(); err != nil {
				t.Fatal(err)
			}
			l.mustVerify(t)
			ls := l.lines(t)
			l.setLines(t, ls[:len(ls)-cut])
			_, err := l.verify()
			d := damage(t, err)
			if d.BadEntry != nil || d.Checkpoint == nil || d.Checkpoint.Seq != 9 || !strings.Contains(d.Checkpoint.Reason, "tail was cut") {
				t.Fatalf("verify: got %v, want checkpoint seq 9 out of reach", err)
			}
			if d.Checkpoint.Line != 3 { // after the record line and genesis
				t.Errorf("checkpoint named at line %d of the off-box copy, want 3", d.Checkpoint.Line)
			}
		})
	}
	t.Run("everything but genesis", func(t *testing.T) {
		l := newTestLog(t, 3)
		l.fill(t, 7) // checkpoints at 4 and 8
		l.mustVerify(t)
		l.setLines(t, l.lines(t)[:1])
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil || d.Checkpoint.Seq != 8 {
			t.Fatalf("verify: got %v, want the newest checkpoint (8) out of reach", err)
		}
	})
	t.Run("everything", func(t *testing.T) {
		l := newTestLog(t, 100)
		l.fill(t, 2)
		l.mustVerify(t)
		l.setLines(t, nil)
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil || d.Checkpoint.Seq != 0 {
			t.Fatalf("verify: got %v, want genesis out of reach", err)
		}
	})
}

// TestRewrittenTail: whoever holds an old state file (K_n) can rewrite
// the log from seq n on, with good MACs; the off-box checkpoint written
// after n is another line, and verify says so. Control: before the
// rewrite the log verifies, and a replayed state over an untouched log
// only rolls forward over the lines it finds (the log stays intact).
func TestRewrittenTail(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 3)
	old, err := os.ReadFile(filepath.Join(l.dir, StateName))
	if err != nil {
		t.Fatal(err)
	}
	oldLines := len(l.lines(t))
	l.fill(t, 3)
	if err := l.w.Close(); err != nil { // checkpoint seq 7
		t.Fatal(err)
	}
	l.mustVerify(t)

	// Replay the old state over the untouched log: the writer rolls
	// forward over its own lines, and the log still verifies.
	if err := os.WriteFile(filepath.Join(l.dir, StateName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	l.fill(t, 1)
	l.mustVerify(t)

	// Replay the old state and cut the log back to it: appends go on
	// with good MACs, but the off-box checkpoint is not the log's line.
	if err := os.WriteFile(filepath.Join(l.dir, StateName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	l.setLines(t, l.lines(t)[:oldLines])
	l.fill(t, 6)
	_, err = l.verify()
	d := damage(t, err)
	if d.BadEntry != nil || d.Checkpoint == nil || d.Checkpoint.Seq != 7 || !strings.Contains(d.Checkpoint.Reason, "rewritten") {
		t.Fatalf("verify: got %v, want checkpoint 7 rewritten", err)
	}
}

// TestStateMismatch: a writer whose state does not continue the log
// refuses to append (the log was cut, or an old state is back with no
// lines to roll over). Control: the same writer appended before.
func TestStateMismatch(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 4)
	ls := l.lines(t)
	l.setLines(t, ls[:len(ls)-2])
	err := l.w.Append(Entry{Kind: KindKey, Op: "rotate"})
	if !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("append after a cut: got %v, want ErrStateMismatch", err)
	}
	// A line edited under the state's head: no roll-forward either.
	l2 := newTestLog(t, 100)
	l2.fill(t, 2)
	st, _ := os.ReadFile(filepath.Join(l2.dir, StateName))
	l2.fill(t, 1)
	os.WriteFile(filepath.Join(l2.dir, StateName), st, 0o600)
	ls = l2.lines(t)
	ls[len(ls)-1] = bytes.Replace(ls[len(ls)-1], []byte("b/k000"), []byte("b/k777"), 1)
	l2.setLines(t, ls)
	if err := l2.w.Append(Entry{Kind: KindKey, Op: "rotate"}); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("append over an edited unrecorded line: got %v, want ErrStateMismatch", err)
	}
}

// TestCrashBetweenLogAndState: lines written but the state not saved
// (the old state left behind) roll forward; the log verifies and the
// next append continues the chain.
func TestCrashBetweenLogAndState(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 2)
	st, _ := os.ReadFile(filepath.Join(l.dir, StateName))
	l.fill(t, 1)
	os.WriteFile(filepath.Join(l.dir, StateName), st, 0o600)
	l.fill(t, 2)
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := l.mustVerify(t); rep.Entries != 7 {
		t.Fatalf("%d entries, want 7", rep.Entries)
	}
}

// TestCheckpoints: a checkpoint after every Every entries and at Close,
// each in the log and off the box, byte for byte; Close with nothing new
// writes none.
func TestCheckpoints(t *testing.T) {
	l := newTestLog(t, 3)
	l.fill(t, 7)
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, line := range l.lines(t) {
		e, _ := parse(bytes.TrimSuffix(line, []byte{'\n'}))
		kinds = append(kinds, string(e.Kind[0]))
	}
	if got := strings.Join(kinds, ""); got != "cooocooococ" {
		t.Fatalf("kinds %q, want cooocooococ", got)
	}
	rep := l.mustVerify(t)
	if rep.OffBox != 4 || rep.NewestOffBox != 10 {
		t.Fatalf("report %+v: want 4 off-box checkpoints, newest 10", rep)
	}
}

// TestOffBoxTampered: a forged, edited, missing or emptied off-box copy
// is damage. Control: the copy as written verifies.
func TestOffBoxTampered(t *testing.T) {
	setup := func(t *testing.T) (*testLog, []byte) {
		l := newTestLog(t, 100)
		l.fill(t, 3)
		if err := l.w.Close(); err != nil {
			t.Fatal(err)
		}
		l.mustVerify(t)
		b, err := os.ReadFile(l.cp)
		if err != nil {
			t.Fatal(err)
		}
		return l, b
	}
	t.Run("forged beyond the end", func(t *testing.T) {
		l, b := setup(t)
		wrong := make([]byte, 32)
		rand.Read(wrong)
		line, _ := encode(Entry{Seq: 40, Time: time.Now(), Kind: KindCheckpoint, Op: "checkpoint", Prev: "00"}, wrong)
		os.WriteFile(l.cp, append(b, append(line, '\n')...), 0o600)
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil || d.Checkpoint.Seq != 40 || !strings.Contains(d.Checkpoint.Reason, "forged") {
			t.Fatalf("verify: got %v, want the forged checkpoint named", err)
		}
	})
	t.Run("edited", func(t *testing.T) {
		l, b := setup(t)
		os.WriteFile(l.cp, bytes.Replace(b, []byte(`"seq":4`), []byte(`"seq":5`), 1), 0o600)
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil {
			t.Fatalf("verify: got %v, want the edited checkpoint named", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		l, _ := setup(t)
		os.Remove(l.cp)
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil || !strings.Contains(d.Checkpoint.Reason, "missing") {
			t.Fatalf("verify: got %v, want the missing copy named", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		l, _ := setup(t)
		os.WriteFile(l.cp, nil, 0o600)
		_, err := l.verify()
		if d := damage(t, err); d.Checkpoint == nil || !strings.Contains(d.Checkpoint.Reason, "empty") {
			t.Fatalf("verify: got %v, want the empty copy named", err)
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		l, b := setup(t)
		nl := bytes.IndexByte(b, '\n') + 1
		first := b[:nl+bytes.IndexByte(b[nl:], '\n')+1] // the record line and genesis
		os.WriteFile(l.cp, first, 0o600)
		rep, err := l.verify() // the log itself is intact: a warning
		if err != nil || len(rep.Warnings) != 1 {
			t.Fatalf("verify: %v, warnings %q: want one warning", err, rep.Warnings)
		}
	})
}

// TestWrongK0: another K_0 fails at the genesis line. Control: the right
// one verifies.
func TestWrongK0(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 2)
	l.mustVerify(t)
	other, _ := secret.New()
	defer other.Wipe()
	_, err := Verify(l.dir, l.cp, other)
	wantBadEntry(t, err, 1, "MAC")
}

// TestConcurrentWriters: writers in several goroutines (as several
// processes would, each with its own descriptor and flock) keep one
// chain.
func TestConcurrentWriters(t *testing.T) {
	l := newTestLog(t, 7)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		w, err := Open(l.dir, Options{Every: 7})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := w.Append(Entry{Kind: KindKey, Actor: "cli", Op: "unwrap-counts", Detail: fmt.Sprint(g, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.w.Close()
	entries, err := readAll(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Kind == KindKey {
			n++
		}
	}
	if n != 100 {
		t.Fatalf("%d key entries, want 100", n)
	}
	l.mustVerify(t)
}

// TestAsync: entries queued from many goroutines all land, and Close
// writes the last checkpoint.
func TestAsync(t *testing.T) {
	l := newTestLog(t, 50)
	var lost int
	var mu sync.Mutex
	a := NewAsync(l.w, 10000, time.Hour, func(err error, n int) { mu.Lock(); lost += n; mu.Unlock(); t.Error(err) })
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				a.Add(Entry{Kind: KindObject, Actor: "AK", Op: "GetObject", Subject: "b/k", Status: "ok"})
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := readAll(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	objs := 0
	for _, e := range entries {
		if e.Kind == KindObject {
			objs++
		}
	}
	if objs != 800 || lost != 0 || entries[len(entries)-1].Kind != KindCheckpoint {
		t.Fatalf("%d object entries (lost %d), last %q: want 800, none lost, a checkpoint last", objs, lost, entries[len(entries)-1].Kind)
	}
	l.mustVerify(t)
}

// TestSealRecord: K_0 sealed under a keyring opens with it; a record
// pointed at another checkpoint file, of another repository, or with a
// changed wrap does not; after a rotation Rewrap moves it under the new
// primary version. Control: the record as sealed opens.
func TestSealRecord(t *testing.T) {
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	ctx := context.Background()
	var repo keys.ID
	rand.Read(repo[:])
	dir := t.TempDir()
	kr, err := keyring.Create(filepath.Join(dir, "keyring"), []byte("pw"), repo, keyring.Calibrate(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	k0, _ := secret.New()
	defer k0.Wipe()
	rec, err := Seal(ctx, kr, repo, k0, filepath.Join(dir, "cp.log"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unseal(ctx, kr, repo, rec)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	if !got.Equal(k0) {
		t.Fatal("unsealed another key")
	}
	got.Wipe()
	moved := rec
	moved.Checkpoints = filepath.Join(dir, "elsewhere.log")
	if _, err := Unseal(ctx, kr, repo, moved); !errors.Is(err, ErrRecord) {
		t.Fatalf("moved checkpoints: got %v, want ErrRecord", err)
	}
	var other keys.ID
	rand.Read(other[:])
	if _, err := Unseal(ctx, kr, other, rec); !errors.Is(err, ErrRecord) {
		t.Fatalf("other repository: got %v, want ErrRecord", err)
	}
	flipped := rec
	flipped.Wrapped = bytes.Clone(rec.Wrapped)
	flipped.Wrapped[len(flipped.Wrapped)-1] ^= 1
	if _, err := Unseal(ctx, kr, repo, flipped); !errors.Is(err, ErrRecord) {
		t.Fatalf("changed wrap: got %v, want ErrRecord", err)
	}

	// Rotation, then rewrap: the record is under the new version.
	adir := filepath.Join(dir, DirName)
	if _, err := Create(adir, rec, k0, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if done, err := Rewrap(ctx, adir, kr, repo, rec, k0); err != nil || !done {
		t.Fatalf("rewrap: %v, %v", done, err)
	}
	nrec, err := ReadRecord(adir)
	if err != nil {
		t.Fatal(err)
	}
	if nrec.KEKVersion != kr.Primary() || nrec.KEKVersion == rec.KEKVersion {
		t.Fatalf("record under version %d, want %d", nrec.KEKVersion, kr.Primary())
	}
	if k, err := Unseal(ctx, kr, repo, nrec); err != nil {
		t.Fatal(err)
	} else {
		k.Wipe()
	}
	if _, err := Verify(adir, rec.Checkpoints, k0); err != nil {
		t.Fatal(err)
	}
}

// TestNoSecretsInLog: neither K_0, the state's key nor any ratchet key
// appears in the log or the off-box copy.
func TestNoSecretsInLog(t *testing.T) {
	l := newTestLog(t, 2)
	l.fill(t, 5)
	l.w.Close()
	logb, _ := os.ReadFile(filepath.Join(l.dir, LogName))
	cpb, _ := os.ReadFile(l.cp)
	var st state
	b, _ := os.ReadFile(filepath.Join(l.dir, StateName))
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	_ = l.k0.Use(func(k []byte) error {
		cur := bytes.Clone(k)
		for i := 0; i < 20; i++ {
			for _, enc := range [][]byte{cur, []byte(fmt.Sprintf("%x", cur))} {
				if bytes.Contains(logb, enc) || bytes.Contains(cpb, enc) {
					t.Errorf("ratchet key %d found in the log", i)
				}
			}
			cur = ratchet(cur)
		}
		return nil
	})
	fi, _ := os.Stat(filepath.Join(l.dir, StateName))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestRollForwardFar: a state left behind by a large append (more than
// the writer's first, small read of the log's end) still rolls forward.
func TestRollForwardFar(t *testing.T) {
	l := newTestLog(t, 10000)
	l.fill(t, 1)
	st, _ := os.ReadFile(filepath.Join(l.dir, StateName))
	batch := make([]Entry, 800) // about 200 KB
	for i := range batch {
		batch[i] = Entry{Kind: KindObject, Actor: "AK", Op: "GetObject", Subject: fmt.Sprintf("b/%0200d", i), Status: "ok"}
	}
	if err := l.w.Append(batch...); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(l.dir, StateName), st, 0o600)
	l.fill(t, 1)
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := l.mustVerify(t); rep.Entries != 804 {
		t.Fatalf("%d entries, want 804 (genesis, 802, checkpoint)", rep.Entries)
	}
}

// FuzzParse: any line either fails to parse or is the one encoding of
// what it parses to. Seeds: the lines of a real log.
func FuzzParse(f *testing.F) {
	k := make([]byte, 32)
	seeds := 0
	for _, e := range []Entry{
		{Seq: 0, Time: time.Unix(1, 2), Kind: KindCheckpoint, Op: "genesis", Detail: "audit log created"},
		{Seq: 1, Time: time.Unix(3, 4), Kind: KindObject, Actor: "AK", Op: "PutObject", Subject: "b/k", Status: "ok", Prev: "ab"},
		{Seq: 2, Time: time.Unix(5, 6), Kind: KindKey, Actor: "cli", Op: "rotate", Status: "ok", Detail: "x\u2028y\"", Prev: "cd"},
	} {
		line, err := encode(e, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(line)
		seeds++
	}
	if seeds == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, why := parse(line)
		if why != "" {
			return
		}
		again, err := json.Marshal(withUTC(e))
		if err != nil || !bytes.Equal(again, line) {
			t.Fatalf("parsed %q but it encodes as %q", line, again)
		}
		_ = macOK(e, k)
	})
}
