package audit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestOffBoxWriteFailure: a checkpoint the off-box copy could not take
// whole (its filesystem full) leaves no part of a line there: the next
// checkpoint is a whole line of its own and the log verifies. Control:
// the same appends without the failure.
func TestOffBoxWriteFailure(t *testing.T) {
	for _, fail := range []bool{false, true} {
		l := newTestLog(t, 100)
		l.fill(t, 2)
		if err := l.w.Close(); err != nil {
			t.Fatal(err)
		}
		// The off-box copy made the biggest file of the log's (the
		// genesis checkpoint again and again: duplicates are fine), so
		// that a file size limit cuts its writes and no other.
		b, _ := os.ReadFile(l.cp)
		genesis := bytes.SplitAfter(b, []byte{'\n'})[1]
		f, _ := os.OpenFile(l.cp, os.O_APPEND|os.O_WRONLY, 0)
		for i := 0; i < 4000; i++ {
			f.Write(genesis)
		}
		f.Close()
		l.mustVerify(t)
		fi, _ := os.Stat(l.cp)
		l.fill(t, 2)
		if fail {
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
			lim := old
			lim.Cur = uint64(fi.Size()) + 40
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
				t.Fatal(err)
			}
			err := l.w.Checkpoint()
			syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
			if !errors.Is(err, ErrCheckpointCopy) {
				t.Fatalf("checkpoint with the off-box copy full: %v, want ErrCheckpointCopy", err)
			}
		} else if err := l.w.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		l.fill(t, 2)
		if err := l.w.Close(); err != nil {
			t.Fatalf("fail=%v: the next checkpoint: %v", fail, err)
		}
		rep, err := l.verify()
		if err != nil {
			t.Fatalf("fail=%v: verify: %v", fail, err)
		}
		if rep.NewestOffBox != rep.LastSeq {
			t.Fatalf("fail=%v: the off-box copy's newest checkpoint is seq %d, the log's %d", fail, rep.NewestOffBox, rep.LastSeq)
		}
	}
}

// TestOffBoxPartialLine: a partial line at the off-box copy's end (a
// crash while it was written) is named by verify, but the checkpoint
// written after it is a whole line of its own, which the log reaches.
// Control: the copy without the partial line.
func TestOffBoxPartialLine(t *testing.T) {
	for _, partial := range []bool{false, true} {
		l := newTestLog(t, 100)
		l.fill(t, 2)
		if err := l.w.Close(); err != nil {
			t.Fatal(err)
		}
		if partial {
			f, _ := os.OpenFile(l.cp, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte(`{"seq":3,"time":"2026-01`))
			f.Close()
		}
		l.fill(t, 2)
		if err := l.w.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err := l.verify()
		if !partial && err != nil {
			t.Fatalf("control: %v", err)
		}
		if partial {
			if d := damage(t, err); d.Checkpoint == nil || !strings.Contains(d.Checkpoint.Reason, "damaged") {
				t.Fatalf("verify: %v, want the partial line named", err)
			}
		}
		if rep.NewestOffBox != rep.LastSeq {
			t.Fatalf("partial=%v: the off-box copy's newest checkpoint is seq %d, the log's %d", partial, rep.NewestOffBox, rep.LastSeq)
		}
	}
}
