package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// homeLog is an audit log made as `audit init` makes it: K_0 sealed under
// a keyring, in HOME/audit, checkpoints copied to the default off-box
// copy beside it.
type homeLog struct {
	home string
	kr   *keyring.Keyring
	repo keys.ID
}

func newHomeLog(t *testing.T) *homeLog {
	t.Helper()
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	h := &homeLog{home: t.TempDir()}
	rand.Read(h.repo[:])
	kr, err := keyring.Create(filepath.Join(h.home, "keyring"), []byte("pw"), h.repo, keyring.Calibrate(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close() })
	h.kr = kr
	h.create(t)
	return h
}

func (h *homeLog) create(t *testing.T) {
	t.Helper()
	k0, _ := secret.New()
	defer k0.Wipe()
	rec, err := Seal(context.Background(), h.kr, h.repo, k0, DefaultCheckpoints(h.home))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(Dir(h.home), rec, k0, Options{}); err != nil {
		t.Fatal(err)
	}
}

func (h *homeLog) append(t *testing.T, n int) error {
	t.Helper()
	if err := Locate(h.home, "").Check(); err != nil {
		return err
	}
	w, err := Open(Dir(h.home), Options{})
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := w.Append(Entry{Kind: KindKey, Actor: "cli", Op: "rotate", Status: "ok"}); err != nil {
			return err
		}
	}
	return w.Close()
}

func (h *homeLog) verify() (Report, error) {
	return VerifyKeys(context.Background(), Locate(h.home, ""), h.kr, h.repo)
}

func (h *homeLog) mustVerify(t *testing.T) Report {
	t.Helper()
	rep, err := h.verify()
	if err != nil {
		t.Fatalf("control: the untouched log does not verify: %v", err)
	}
	return rep
}

func wantProblem(t *testing.T, err error, text string) *Damage {
	t.Helper()
	d := damage(t, err)
	for _, p := range d.Problems {
		if strings.Contains(p, text) {
			return d
		}
	}
	t.Fatalf("verify: got %v, want a problem naming %q", err, text)
	return nil
}

// TestRecordDeleted: deleting the sealed record is damage, not "no log":
// verify opens K_0 from the off-box copy's record line, checks the whole
// log with it and names the missing record and the copy it used;
// writers refuse to append. Control: the untouched log verifies from the
// home's record, and writers append.
func TestRecordDeleted(t *testing.T) {
	h := newHomeLog(t)
	if err := h.append(t, 3); err != nil {
		t.Fatalf("control: %v", err)
	}
	rep := h.mustVerify(t)
	if rep.Record != filepath.Join(Dir(h.home), RecordName) {
		t.Fatalf("control: K_0 from %q, want the home's record", rep.Record)
	}
	os.Remove(filepath.Join(Dir(h.home), RecordName))
	rep, err := h.verify()
	d := wantProblem(t, err, "is missing")
	if d.BadEntry != nil || d.Checkpoint != nil {
		t.Fatalf("verify: %v: the log itself is intact", err)
	}
	if !strings.Contains(rep.Record, "the off-box copy") || rep.Entries != 5 {
		t.Fatalf("report %+v: want K_0 from the off-box copy and all 5 entries checked", rep)
	}
	if err := h.append(t, 1); !errors.Is(err, ErrDamaged) {
		t.Fatalf("append without the record: got %v, want damage", err)
	}
	// A writer opened before the deletion refuses too.
	w, _ := Open(Dir(h.home), Options{})
	if err := w.Append(Entry{Kind: KindKey, Op: "rotate"}); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("open writer without the record: got %v, want ErrNoRecord", err)
	}
}

// TestRecordDamaged: a record that does not parse, or does not open, is
// damage; K_0 comes from the off-box copy. Control: it verified before.
func TestRecordDamaged(t *testing.T) {
	for name, damageIt := range map[string]func(b []byte) []byte{
		"garbage": func(b []byte) []byte { return []byte("{") },
		"wrap":    func(b []byte) []byte { return bytes.Replace(b, []byte(`"wrapped":"`), []byte(`"wrapped":"AAAA`), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHomeLog(t)
			h.append(t, 2)
			h.mustVerify(t)
			p := filepath.Join(Dir(h.home), RecordName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, damageIt(b), 0o600)
			rep, err := h.verify()
			wantProblem(t, err, "sealed record")
			if !strings.Contains(rep.Record, "the off-box copy") || rep.Entries != 4 {
				t.Fatalf("report %+v: want K_0 from the off-box copy and all 4 entries checked", rep)
			}
		})
	}
}

// TestRecordPathChanged: a record pointed at another checkpoint file
// still gives K_0: the log is checked, and the path change is damage;
// writers do not follow the new path. Control: it verified before.
func TestRecordPathChanged(t *testing.T) {
	h := newHomeLog(t)
	h.append(t, 2)
	h.mustVerify(t)
	p := filepath.Join(Dir(h.home), RecordName)
	rec, _ := ReadRecord(Dir(h.home))
	elsewhere := filepath.Join(h.home, "empty.log")
	rec.Checkpoints = elsewhere
	b, _ := marshalRecord(rec)
	os.WriteFile(p, b, 0o600)
	rep, err := h.verify()
	d := wantProblem(t, err, "not the path K_0 was sealed with")
	if d.BadEntry != nil || rep.Entries != 4 {
		t.Fatalf("verify %v, report %+v: want the log checked with K_0 (4 entries)", err, rep)
	}
	w, _ := Open(Dir(h.home), Options{})
	if err := w.Append(Entry{Kind: KindKey, Op: "rotate"}); !errors.Is(err, ErrRecordPath) {
		t.Fatalf("append under an edited record: got %v, want ErrRecordPath", err)
	}
	if _, err := os.Stat(elsewhere); err == nil {
		t.Fatal("the writer followed the edited path")
	}
	if _, err := Rewrap(context.Background(), Dir(h.home), h.kr, h.repo, rec, secret.Key{}); err == nil {
		t.Fatal("rewrap sealed an unverified path again")
	}
}

// TestDirDeletedOffBoxLeft: with the audit directory gone but its
// off-box copy there, writers fail and a new `audit init` starts a log
// whose verify warns about (does not fail on) the earlier log's lines,
// the old genesis among them. Control: a home with neither is "no log".
func TestDirDeletedOffBoxLeft(t *testing.T) {
	if err := Locate(t.TempDir(), "").Check(); !errors.Is(err, ErrNoLog) {
		t.Fatalf("control: an empty home: %v, want ErrNoLog", err)
	}
	h := newHomeLog(t)
	h.append(t, 3)
	h.mustVerify(t)
	os.RemoveAll(Dir(h.home))
	if err := h.append(t, 1); !errors.Is(err, ErrDamaged) {
		t.Fatalf("append with the directory gone: %v, want damage", err)
	}
	h.create(t) // audit init again
	h.append(t, 1)
	rep := h.mustVerify(t)
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "earlier log") || !strings.Contains(rep.Warnings[0], "line 2 (seq 0)") {
		t.Fatalf("warnings %q: want the earlier log's lines named", rep.Warnings)
	}
}

// TestOffBoxDuplicates: lines of the off-box copy per seq: a second,
// identical line is fine; a line for a seq the log holds that carries
// the log's MAC but is another line (a fork) is damage, and so is a
// forged one after this log's genesis. Control: the copy as written
// verifies.
func TestOffBoxDuplicates(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 3)
	l.w.Close()
	l.mustVerify(t)
	b, _ := os.ReadFile(l.cp)
	lines := bytes.SplitAfter(b, []byte{'\n'})
	os.WriteFile(l.cp, append(bytes.Clone(b), lines[2]...), 0o600) // checkpoint 4 twice
	l.mustVerify(t)
	// A fork: seq 4 again, other time, the log's key.
	e, _ := parse(bytes.TrimSuffix(lines[2], []byte{'\n'}))
	e.Time = e.Time.Add(time.Hour)
	var fork []byte
	l.k0.Use(func(k []byte) error {
		k = bytes.Clone(k)
		for i := 0; i < 4; i++ {
			k = ratchet(k)
		}
		fork, _ = encode(e, k)
		return nil
	})
	os.WriteFile(l.cp, append(bytes.Clone(b), append(fork, '\n')...), 0o600)
	_, err := l.verify()
	if d := damage(t, err); d.Checkpoint == nil || d.Checkpoint.Seq != 4 || !strings.Contains(d.Checkpoint.Reason, "rewritten") {
		t.Fatalf("verify: %v, want the fork at seq 4 named", err)
	}
	wrong := make([]byte, 32)
	forged, _ := encode(e, wrong)
	os.WriteFile(l.cp, append(bytes.Clone(b), append(forged, '\n')...), 0o600)
	_, err = l.verify()
	if d := damage(t, err); d.Checkpoint == nil || d.Checkpoint.Seq != 4 || !strings.Contains(d.Checkpoint.Reason, "forged") {
		t.Fatalf("verify: %v, want the forged line at seq 4 named", err)
	}
}

// TestVerifyBounded: forged off-box lines far past the log's end cost a
// bounded number of ratchet steps in all (not per line), and lines past
// the end beyond maxBeyond are not MAC-checked: verify ends quickly and
// names them. Control: the copy as written verifies.
func TestVerifyBounded(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 2)
	l.w.Close()
	l.mustVerify(t)
	b, _ := os.ReadFile(l.cp)
	var buf bytes.Buffer
	buf.Write(b)
	wrong := make([]byte, 32)
	for i := 1; i <= 2*maxBeyond; i++ {
		line, _ := encode(Entry{Seq: uint64(i) * (maxAhead / 4), Time: time.Unix(1, 0), Kind: KindCheckpoint, Op: "checkpoint"}, wrong)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	os.WriteFile(l.cp, buf.Bytes(), 0o600)
	start := time.Now()
	_, err := l.verify()
	if d := damage(t, err); d.Checkpoint == nil {
		t.Fatalf("verify: %v, want the forged lines named", err)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Fatalf("verify took %v", took)
	}
}

// TestStrayByte: one byte appended to the log stops the writer (it never
// truncates evidence) and Async reports that auditing is failing, until
// a working append. Control: appends worked before.
func TestStrayByte(t *testing.T) {
	l := newTestLog(t, 100)
	a := NewAsync(l.w, 10, 0, func(error, int) {})
	a.Add(Entry{Kind: KindObject, Op: "GetObject"})
	a.Close()
	if since, err := a.Failing(); !since.IsZero() || err != nil {
		t.Fatalf("control: failing since %v: %v", since, err)
	}
	p := filepath.Join(l.dir, LogName)
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("x"))
	f.Close()
	before, _ := os.ReadFile(p)
	failed := make(chan error, 10)
	a = NewAsync(l.w, 10, 0, func(err error, _ int) { failed <- err })
	a.Add(Entry{Kind: KindObject, Op: "GetObject"})
	if err := <-failed; !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("append after a stray byte: %v, want ErrStateMismatch", err)
	}
	if since, err := a.Failing(); since.IsZero() || !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("Failing: %v %v, want failing", since, err)
	}
	a.Close()
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatal("the writer changed the damaged log")
	}
}

// TestMACEncoding: a MAC in upper-case hex is not the one encoding.
// Control: the line as written verifies.
func TestMACEncoding(t *testing.T) {
	l := newTestLog(t, 100)
	l.fill(t, 2)
	l.mustVerify(t)
	ls := l.lines(t)
	e, _ := parse(bytes.TrimSuffix(ls[1], []byte{'\n'}))
	if !strings.ContainsAny(e.MAC, "abcdef") {
		t.Fatal("a MAC with no letter (1 in 10^13): nothing to change")
	}
	e.MAC = strings.ToUpper(e.MAC)
	line, _ := json.Marshal(withUTC(e))
	ls[1] = append(line, '\n')
	l.setLines(t, ls)
	_, err := l.verify()
	wantBadEntry(t, err, 2, "MAC")
}

// TestStatePathDoesNotRedirectVerify: the writer's state is not
// authenticated, so the off-box path it names must not choose the copy
// verify checks a cut against. An intruder who cuts the log's tail and
// points the state at a copy of the off-box file as it was before the
// cut is found. Control: the same cut with the state untouched is found,
// and the untouched log verifies.
func TestStatePathDoesNotRedirectVerify(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		h := newHomeLog(t)
		// The off-box copy on "another machine".
		os.RemoveAll(Dir(h.home))
		os.Remove(DefaultCheckpoints(h.home))
		offbox := filepath.Join(t.TempDir(), "offbox.log")
		k0, _ := secret.New()
		rec, err := Seal(context.Background(), h.kr, h.repo, k0, offbox)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Create(Dir(h.home), rec, k0, Options{}); err != nil {
			t.Fatal(err)
		}
		k0.Wipe()
		if err := h.append(t, 3); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(Dir(h.home), LogName)
		oldLog, _ := os.ReadFile(logPath)
		oldCopy, _ := os.ReadFile(offbox)
		if err := h.append(t, 3); err != nil {
			t.Fatal(err)
		}
		h.mustVerify(t)
		// The intruder: the log cut back, a stale copy of the off-box
		// file beside it.
		os.WriteFile(logPath, oldLog, 0o600)
		if redirect {
			fake := filepath.Join(h.home, "fake.log")
			os.WriteFile(fake, oldCopy, 0o600)
			sp := filepath.Join(Dir(h.home), StateName)
			b, _ := os.ReadFile(sp)
			var st map[string]any
			json.Unmarshal(b, &st)
			st["checkpoints"] = fake
			b, _ = json.Marshal(st)
			os.WriteFile(sp, b, 0o600)
		}
		rep, err := h.verify()
		d := damage(t, err)
		if d.Checkpoint == nil || d.Checkpoint.File != offbox || d.Checkpoint.Seq != 8 || rep.Checkpoints != offbox {
			t.Fatalf("redirect=%v: verify: %v (report %+v), want checkpoint seq 8 of %s named as not reached", redirect, err, rep, offbox)
		}
		if redirect {
			wantProblem(t, err, "the writer's state names the off-box copy")
		}
	}
}

// TestReady: Ready writes nothing and fails where an append would: a
// stray byte after the last entry, a deleted record. Control: the
// intact log is ready, and the log is unchanged by the check.
func TestReady(t *testing.T) {
	h := newHomeLog(t)
	w, _ := Open(Dir(h.home), Options{})
	p := filepath.Join(Dir(h.home), LogName)
	before, _ := os.ReadFile(p)
	if err := w.Ready(); err != nil {
		t.Fatalf("control: the intact log is not ready: %v", err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Fatal("Ready wrote to the log")
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("x"))
	f.Close()
	if err := w.Ready(); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("Ready after a stray byte: %v, want ErrStateMismatch", err)
	}
	os.WriteFile(p, before, 0o600)
	if err := w.Ready(); err != nil {
		t.Fatalf("control: the log put back is not ready: %v", err)
	}
	os.Remove(filepath.Join(Dir(h.home), RecordName))
	if err := w.Ready(); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Ready without the record: %v, want ErrNoRecord", err)
	}
}
