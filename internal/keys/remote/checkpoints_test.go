package remote

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
)

func cpLine(t *testing.T, seq uint64) string {
	t.Helper()
	b, err := json.Marshal(audit.Entry{Seq: seq, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: audit.KindCheckpoint,
		Op: "checkpoint", Prev: strings.Repeat("ab", 32), MAC: strings.Repeat("cd", 32)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckpointCopy: a checkpoint is kept once, in seq order, by any
// number of keepers of one file; what is not a checkpoint line is not
// kept; the file is rotated to FILE.1 past MaxCheckpointCopy, and every
// checkpoint is in one of the two.
func TestCheckpointCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), CheckpointFileName)
	a, b := &checkpoints{path: path}, &checkpoints{path: path}
	a.keep(cpLine(t, 0))
	b.keep(cpLine(t, 0)) // another process, the same checkpoint
	a.keep(`{"seq":1,"kind":"key"}`)
	a.keep("not json")
	got, err := os.ReadFile(path)
	if err != nil || string(got) != cpLine(t, 0)+"\n" {
		t.Fatalf("after one checkpoint, twice, and two other lines: %q %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	b.keep(cpLine(t, 5))
	a.keep(cpLine(t, 3)) // older than the file's last: not kept
	if got, _ := os.ReadFile(path); string(got) != cpLine(t, 0)+"\n"+cpLine(t, 5)+"\n" {
		t.Fatalf("an older checkpoint was kept after a newer one: %q", got)
	}
	n := MaxCheckpointCopy/len(cpLine(t, 6)) + 50
	for i := range n {
		a.keep(cpLine(t, uint64(6+i)))
	}
	cur, _ := os.ReadFile(path)
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatalf("not rotated after %d lines: %v", n, err)
	}
	if len(cur) > MaxCheckpointCopy || len(old) > MaxCheckpointCopy+len(cpLine(t, 0))+1 {
		t.Fatalf("the copy grew past its bound: %d and %d bytes", len(cur), len(old))
	}
	all := strings.Split(strings.TrimSpace(string(old))+"\n"+strings.TrimSpace(string(cur)), "\n")
	if last := all[len(all)-1]; last != cpLine(t, uint64(5+n)) {
		t.Fatalf("the newest checkpoint is not the file's last line: %q", last)
	}
	for i := 1; i < len(all); i++ {
		s0, _ := audit.ParseCheckpoint([]byte(all[i-1]))
		s1, ok := audit.ParseCheckpoint([]byte(all[i]))
		if !ok || s1 <= s0 {
			t.Fatalf("line %d of the two files: seq %d after %d", i+1, s1, s0)
		}
	}
	if len(all) != n+2 { // one rotation: every checkpoint kept is in one of the two
		t.Fatalf("%d checkpoints in the two files, want %d", len(all), n+2)
	}
}
