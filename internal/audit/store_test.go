package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/secret"
)

// memSink is a CheckpointSink in memory: the repository's store in
// these tests (internal/repo tests the real one).
type memSink struct {
	mu    sync.Mutex
	lines [][]byte
	fail  error
	tries int
}

func (s *memSink) PutAuditCheckpoint(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.fail != nil {
		return s.fail
	}
	s.lines = append(s.lines, bytes.Clone(line))
	return nil
}

func (s *memSink) stored() []StoredCheckpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredCheckpoint
	for i, l := range s.lines {
		out = append(out, StoredCheckpoint{Name: fmt.Sprintf("obj%02d", i), Line: bytes.Clone(l)})
	}
	return out
}

var day = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newSinkLog is newTestLog whose writer copies its checkpoints to a
// memSink.
func newSinkLog(t *testing.T, every int, start time.Time) (*testLog, *memSink) {
	t.Helper()
	l := newTestLogAt(t, every, start)
	s := &memSink{}
	l.w = newWriter(l.dir, l.cp, Options{Every: every, Now: l.now, Sink: s})
	return l, s
}

func (l *testLog) verifyStore(cps []StoredCheckpoint) (Report, error) {
	return VerifyWith(l.dir, l.cp, l.k0, VerifyOptions{Store: cps, StoreRead: true})
}

// An intruder on the box cuts the log's tail and the off-box copy's tail
// together: the store's checkpoints still show the cut, named "in the
// store". Control: the uncut log (and the uncut off-box copy) verify.
func TestStoreCheckpointsFindTheCut(t *testing.T) {
	l, s := newSinkLog(t, 3, day)
	l.fill(t, 7) // checkpoints at seq 4 and 8, then seq 9 and the closing one
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(s.lines) < 2 {
		t.Fatalf("the store got %d checkpoints", len(s.lines))
	}
	offBox, err := os.ReadFile(l.cp)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := l.verifyStore(s.stored())
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	newest := rep.LastSeq
	if rep.StoreCheckpoints != len(s.lines) || rep.NewestStore != newest || !rep.StoreChecked {
		t.Fatalf("control: report %+v", rep)
	}
	// Cut both: the log back to its first 5 lines (seq 0-4, checkpoint
	// 4 the last), the off-box copy back to what it held then.
	ls := l.lines(t)
	l.setLines(t, ls[:5])
	cpLines := bytes.SplitAfter(offBox, []byte{'\n'})
	if err := os.WriteFile(l.cp, bytes.Join(cpLines[:3], nil), 0o600); err != nil { // record, genesis, seq 4
		t.Fatal(err)
	}
	// Without the store: nothing to see but the warning-free intact log.
	if _, err := l.verify(); err != nil {
		t.Fatalf("cut with the off-box copy, without the store: %v (the cut is what the store is for)", err)
	}
	_, err = l.verifyStore(s.stored())
	d := damage(t, err)
	if d.BadEntry != nil || d.Checkpoint == nil || d.Checkpoint.Seq != newest || d.Checkpoint.Store == "" ||
		!strings.Contains(d.Checkpoint.Reason, "tail was cut") || !strings.Contains(d.Error(), "in the store, object") {
		t.Fatalf("verify: got %v, want store checkpoint seq %d out of reach", err, newest)
	}
}

// A store checkpoint that is not the log's: forged (another K_0's MAC)
// is damage; one that cannot be read is damage; an earlier log's (older
// than this log's genesis) is a warning. Control: the store's own copies.
func TestStoreCheckpointsJudged(t *testing.T) {
	l, s := newSinkLog(t, 2, day)
	l.fill(t, 4)
	if err := l.w.Close(); err != nil {
		t.Fatal(err)
	}
	good := s.stored()
	if _, err := l.verifyStore(good); err != nil {
		t.Fatalf("control: %v", err)
	}
	// Another log (another K_0), made a day later, writes checkpoints
	// with this log's seqs.
	other, os2 := newSinkLog(t, 2, day.Add(24*time.Hour))
	other.fill(t, 4)
	if err := other.w.Close(); err != nil {
		t.Fatal(err)
	}
	foreign := os2.stored()
	last := foreign[len(foreign)-1]
	t.Run("forged", func(t *testing.T) {
		// Not older than this log's genesis: not an earlier log's.
		_, err := l.verifyStore(append(append([]StoredCheckpoint{}, good...), StoredCheckpoint{Name: "forged", Line: last.Line}))
		d := damage(t, err)
		if d.Checkpoint == nil || d.Checkpoint.Store != "forged" || !strings.Contains(d.Checkpoint.Reason, "MAC") {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		_, err := l.verifyStore(append(append([]StoredCheckpoint{}, good...), StoredCheckpoint{Name: "gone", Err: errors.New("missing")}))
		d := damage(t, err)
		if len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "gone") {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("not a checkpoint", func(t *testing.T) {
		_, err := l.verifyStore(append(append([]StoredCheckpoint{}, good...), StoredCheckpoint{Name: "odd", Line: l.lines(t)[1][:len(l.lines(t)[1])-1]}))
		d := damage(t, err)
		if len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "not a checkpoint") {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("an earlier log's", func(t *testing.T) {
		// To the other log, this one's checkpoints are an earlier log's.
		rep, err := other.verifyStore(append(os2.stored(), StoredCheckpoint{Name: "earlier", Line: good[len(good)-1].Line}))
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "earlier log") {
			t.Fatalf("warnings %q", rep.Warnings)
		}
	})
}

// A store copy that fails loses nothing: the entries and the checkpoint
// are in the log and the off-box copy, the failure is reported, and the
// next checkpoint sends again (the control: the working sink takes each
// one at once).
func TestStoreCheckpointFailure(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%v", failing), func(t *testing.T) {
			l := newTestLog(t, 100)
			s := &memSink{}
			var reported []error
			l.w = newWriter(l.dir, l.cp, Options{Now: l.now, Sink: s, OnSinkError: func(err error) { reported = append(reported, err) }})
			if failing {
				s.fail = errors.New("store down")
			}
			l.fill(t, 3)
			if err := l.w.Checkpoint(); err != nil {
				t.Fatalf("a checkpoint whose store copy failed: %v", err)
			}
			rep := l.mustVerify(t)
			if rep.Entries != 5 || rep.NewestOffBox != 4 {
				t.Fatalf("log %+v", rep)
			}
			if !failing {
				if len(reported) != 0 || len(s.lines) != 1 {
					t.Fatalf("control: %d stored, %v", len(s.lines), reported)
				}
				return
			}
			if len(reported) != 1 || !errors.Is(reported[0], ErrStoreCheckpoint) || len(s.lines) != 0 {
				t.Fatalf("failure: %d stored, reported %v", len(s.lines), reported)
			}
			// The store comes back: a checkpoint with nothing new sends
			// the one that failed.
			s.mu.Lock()
			s.fail = nil
			s.mu.Unlock()
			if err := l.w.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			if len(s.lines) != 1 || !bytes.Equal(s.lines[0], bytes.TrimSuffix(l.lines(t)[4], []byte{'\n'})) {
				t.Fatalf("after the store came back: %q", s.lines)
			}
			if _, err := l.verifyStore(s.stored()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without OnSinkError the failure is the append's error, never silent;
// the log holds the entries all the same.
func TestStoreCheckpointFailureReturned(t *testing.T) {
	l := newTestLog(t, 100)
	l.w = newWriter(l.dir, l.cp, Options{Now: l.now, Sink: &memSink{fail: errors.New("store down")}})
	l.fill(t, 1)
	if err := l.w.Close(); !errors.Is(err, ErrStoreCheckpoint) {
		t.Fatalf("close: %v", err)
	}
	if rep := l.mustVerify(t); rep.Entries != 3 {
		t.Fatalf("%d entries", rep.Entries)
	}
}

// Create copies the genesis checkpoint to the sink.
func TestCreateCopiesGenesis(t *testing.T) {
	base := t.TempDir()
	k0, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	defer k0.Wipe()
	s := &memSink{}
	cp := filepath.Join(base, "cp.log")
	if _, err := Create(filepath.Join(base, DirName), Record{Format: recordFormat, Repo: "00", Checkpoints: cp}, k0, Options{Sink: s}); err != nil {
		t.Fatal(err)
	}
	if len(s.lines) != 1 || !bytes.Contains(s.lines[0], []byte(`"op":"genesis"`)) {
		t.Fatalf("the store got %q", s.lines)
	}
	if _, err := VerifyWith(filepath.Join(base, DirName), cp, k0, VerifyOptions{Store: s.stored(), StoreRead: true}); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint asked for with nothing new is not copied twice by one
// writer (serve's interval after an every-N checkpoint); a new writer
// (audit checkpoint) copies it once.
func TestStoreCheckpointNotCopiedTwice(t *testing.T) {
	l, s := newSinkLog(t, 2, day)
	l.fill(t, 2) // the every-2 checkpoint is the last line
	if len(s.lines) != 1 {
		t.Fatalf("control: %d copies after the every-N checkpoint", len(s.lines))
	}
	if err := l.w.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if len(s.lines) != 1 {
		t.Fatalf("%d copies after a checkpoint with nothing new", len(s.lines))
	}
	w2 := newWriter(l.dir, l.cp, Options{Now: l.now, Sink: s})
	if err := w2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if len(s.lines) != 2 || !bytes.Equal(s.lines[0], s.lines[1]) {
		t.Fatalf("a new writer's checkpoint: %q", s.lines)
	}
}
